"""The controller's replica-pool half: scaling by hand and by the autoscaler, and which replica serves which
stream (re-assigned when a replica is lost, rebalanced when one comes back or is added).

`PoolControl` is mixed into `actors.control.controller.Controller` and works on its state, declared in
`actors.control.state.ControllerState`: the pools (`encoders`, `llms`), the stream table (`_streams` under
`_lock`), the control lock `_control` (held by every caller that changes the pools), the events, the table
store (`_save`) and the wiring (`_wire`). It holds no state of its own, so the controller stays one object Ray restarts
and re-adopts as a whole.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.config import MAX_REPLICAS
from actors.errors import ScaleRefused
from actors.control.placement import Replica, assign, rebalance
from actors.control.pools import START_TIMEOUT_S, ReplicaPool
from actors.control.state import ControllerState
from actors.workers.remote import EncoderActor, LLMActor
from actors.status import ROLES, ReplicaStatus, ScaleEvent
from configs.schema import check

log = logging.getLogger(__name__)


class PoolControl(ControllerState):
    """Scaling and assignment methods of the controller (see the module docstring for the state they use)."""

    def _count(self, role: str) -> int:
        wanted = self.config.encoder.replicas if role == "encoder" else self.config.llm.replicas
        if wanted == "auto":
            return max(1, min(int(ray.cluster_resources().get("GPU", 0)), MAX_REPLICAS))
        return int(wanted)

    def _new_encoder(self, name: str) -> Any:
        c = self.config
        return EncoderActor.options(
            name=name, namespace=self.namespace, lifetime="detached", max_restarts=c.ray.max_restarts,
            num_cpus=c.encoder.num_cpus, num_gpus=c.encoder.num_gpus, resources=c.encoder.resources or None,
            scheduling_strategy="SPREAD",
        ).remote(c.model, c.encoder, c.transport, str(c.checkpoint_path / f"{name}.port"))

    def _new_llm(self, name: str) -> Any:
        c = self.config
        return LLMActor.options(
            name=name, namespace=self.namespace, lifetime="detached", max_restarts=c.ray.max_restarts,
            max_concurrency=c.llm.max_concurrent, num_cpus=c.llm.num_cpus, num_gpus=c.llm.num_gpus,
            resources=c.llm.resources or None, scheduling_strategy="SPREAD",
        ).remote(c.model, c.llm, c.transport)

    def replicas(self) -> list[ReplicaStatus]:
        """Every encoder and LLM replica with its telemetry (role, then name order)."""
        per_encoder = collections.Counter(self._view()[0].values())
        llm_streams = {m.name: int(m.stats.get("streams", 0)) for m in self.llms.members.values()}
        return self.encoders.status(dict(per_encoder)) + self.llms.status(llm_streams)

    def scale_events(self) -> list[ScaleEvent]:
        """The pools' recent changes, oldest first."""
        return list(self._events.copy())  # deque.copy is one C call: safe while the reconcile thread appends

    def scale_event_totals(self) -> dict[tuple[str, str], int]:
        """Events since this controller process began, by (role, action): a counter for /metrics that the
        bounded history above cannot give (it drops old events). Starts again at 0 after a restart."""
        return self._event_totals  # replaced whole by each event (below), never changed in place

    def scale(self, role: str, count: int) -> list[ReplicaStatus]:
        """Run `count` replicas of `role`: new ones are started (and take streams, for encoders), surplus ones
        hand their streams over and are removed. Raises ConfigError for a bad role or count, ScaleRefused when
        the cluster has no free resources for the new replicas."""
        check(role in ROLES, "role", f"one of {list(ROLES)}", role)
        check(isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_REPLICAS, "replicas",
              f"an integer 1..{MAX_REPLICAS}", count)
        with self._control:
            pool = self.encoders if role == "encoder" else self.llms
            if count > len(pool.members):
                self._grow(pool, count - len(pool.members), "requested")
            elif count < len(pool.members):
                self._shrink(pool, len(pool.members) - count, "requested")
        return self.replicas()

    def _grow(self, pool: ReplicaPool, n: int, reason: str) -> None:
        self._check_free(pool.role, n)
        names = [self.table.new_name(f"tokdyn-{pool.role}") for _ in range(n)]
        pool.start(names, START_TIMEOUT_S)
        for name in names:
            self._event(pool.role, "add", name, len(pool.members), reason)
        self._save()
        if pool is self.encoders:
            self._rebalance()
        self._wire()

    def _shrink(self, pool: ReplicaPool, n: int, reason: str) -> None:
        """Remove `n` replicas: lost ones first, then the least loaded; their streams move before they go."""
        served = collections.Counter(self._view()[0].values())
        lost = set(pool.lost())
        victims = sorted(pool.members, key=lambda name: (name not in lost, served.get(name, 0), name))[:n]
        keep = [r for r in pool.placements() if r.name not in victims]
        if pool is self.encoders:
            if not keep:
                raise ScaleRefused("expected an alive encoder replica to keep serving the streams, got none: "
                                   "retry when one answers")
            self._reassign(keep, reason)
        for name in victims:
            pool.remove(name)
            self._event(pool.role, "remove", name, len(pool.members), reason)
        self._save()
        self._wire()

    def _check_free(self, role: str, n: int) -> None:
        c = self.config.encoder if role == "encoder" else self.config.llm
        need = {k: v * n for k, v in {"CPU": c.num_cpus, "GPU": c.num_gpus, **c.resources}.items() if v > 0}
        free = ray.available_resources()
        short = [k for k, v in need.items() if free.get(k, 0.0) + 1e-9 < v]
        if short:
            raise ScaleRefused(f"not enough free resources for {n} more {role} replica(s): they need {need}, the "
                               f"cluster has { {k: round(free.get(k, 0.0), 3) for k in short} } free")

    def _event(self, role: str, action: str, replica: str, replicas: int, reason: str) -> None:
        self._events.append(ScaleEvent(time.time(), role, action, replica, replicas, reason))
        key = (role, action)  # callers hold _control: one writer; readers on other threads get a whole dict
        self._event_totals = {**self._event_totals, key: self._event_totals.get(key, 0) + 1}
        log.info("%s replica %s: %s (%s); %d now", role, replica, action, reason, replicas)

    def _view(self) -> tuple[dict[str, str], dict[str, float], dict[str, str | None]]:
        """The stream table as the placement policy sees it: stream id -> its replica, its sampled frames/s,
        the node its memory runs on (streams being added left out)."""
        with self._lock:
            streams = {sid: s for sid, s in self._streams.items() if s is not None}
        return ({sid: s.entry.encoder for sid, s in streams.items()},
                {sid: s.entry.spec.sample_rate_hz for sid, s in streams.items()},
                {sid: s.node_id for sid, s in streams.items()})

    def _reassign(self, alive: list[Replica], reason: str) -> None:
        """Streams of replicas not in `alive` go to alive ones (placement.assign)."""
        current, fps, nodes = self._view()
        self._apply_assignments(assign(current, fps, nodes, alive), reason)

    def _rebalance(self) -> None:
        alive = self.encoders.placements()
        current, fps, _ = self._view()
        self._apply_assignments(rebalance(assign(current, fps, {}, alive), fps, alive), "rebalance")

    def _apply_assignments(self, new: dict[str, str], reason: str) -> None:
        moved = []
        with self._lock:
            for sid, replica in new.items():
                actors = self._streams.get(sid)
                if actors is not None and actors.entry.encoder != replica:
                    actors.entry.encoder = replica
                    moved.append((sid, replica))
        for sid, replica in moved:
            self._event("encoder", "reassign", replica, len(self.encoders.members), f"{sid}: {reason}")
        if moved:
            self._save()

    def _autoscale(self, action: str, reason: str) -> None:
        try:
            if action == "add":
                self._grow(self.encoders, 1, f"autoscale: {reason}")
            else:
                self._shrink(self.encoders, 1, f"autoscale: {reason}")
        except ScaleRefused as exc:
            self._event("encoder", f"{action} refused", "-", len(self.encoders.members), f"autoscale: {exc}")
        except (RayError, GetTimeoutError) as exc:  # the new replica did not start in time: say so, go on
            self._event("encoder", f"{action} failed", "-", len(self.encoders.members),
                        f"autoscale: {type(exc).__name__}")
        self.autoscaler.acted()


