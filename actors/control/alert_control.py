"""The controller's alert half: rules in the durable book, an owner replica per stream, results collected.

Each stream with rules has exactly one owner among the alive LLM replicas (the one owning the fewest streams
when it needs one); a replica that stops being alive (pools.LOST_AFTER_S of silence, or its node died) loses
its streams to the others at the next round. Every ROUND_S the alert thread sends each alive replica the
rules of the streams it owns (when that changed, when its process is new, and every RESEND_S anyway),
collects its evaluation results, feeds them to the book (the rising edge, deduplicated per snapshot version,
so an old and a new owner answering the same snapshot fire once) and hands new events with a webhook to the
sender. Rules and events are in the GCS store (actors/control/alerts.py), so they survive every restart.

`AlertControl` is mixed into `actors.control.controller.Controller`; its state (`alerts`, `webhooks`,
`_alert_owners`, `_alert_drains`) is declared in `actors.control.state.ControllerState`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from actors.control.state import ControllerState
from actors.control.webhooks import send_test_event

log = logging.getLogger(__name__)

ROUND_S = 0.25  # how often results are collected and ownership checked
RESEND_S = 5.0  # how often every owner is sent its rules anyway (a lost call cannot leave a stream unchecked)


class AlertControl(ControllerState):
    """Alert operations of the controller (see the module docstring)."""

    # --- operations (the API and CLI, through PipelineClient) -------------------------------------------

    def add_alert(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a rule; its public view (with the webhook secret, shown once). Raises ConfigError naming the
        field, StreamNotFound for an unknown stream; nothing changes then."""
        return self.alerts.add(spec, self.stream_ids())

    def list_alerts(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        return self.alerts.list(stream_id)

    def get_alert(self, rule_id: str) -> dict[str, Any]:
        """One rule with its state, last evaluation and counts. Raises AlertNotFound."""
        return self.alerts.get(rule_id)

    def delete_alert(self, rule_id: str) -> None:
        """Raises AlertNotFound."""
        self.alerts.delete(rule_id)

    def test_alert(self, rule_id: str) -> dict[str, Any]:
        """Send the rule's webhook a signed test event now; whether it answered 2xx. Raises AlertNotFound,
        ConfigError (no webhook)."""
        return send_test_event(rule_id, *self.alerts.test_event(rule_id))

    def alert_events(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Retained firings with id > `after`, oldest first (SSE resume with Last-Event-ID)."""
        return self.alerts.events_after(after, max(1, min(limit, 1000)))

    def alert_stats(self) -> dict[str, Any]:
        """Totals for /metrics: evaluations, firings, skipped snapshots, deliveries, failures, latency sum."""
        return {**self.alerts.stats(), "owners": dict(self._alert_owners)}

    # --- the alert round -------------------------------------------------------------------------------

    def _start_alerts(self) -> None:
        """Re-queue deliveries a previous controller left pending (at least once)."""
        for event, url, secret in self.alerts.pending_deliveries():
            self.webhooks.send(event["rule_id"], url, secret, event)

    def _alerts_forever(self, stop: threading.Event) -> None:
        sent: dict[str, tuple] = {}  # replica name -> (pid, rules) last sent
        resend_at = 0.0
        while not stop.wait(ROUND_S):
            try:
                if time.monotonic() >= resend_at:
                    sent.clear()
                    resend_at = time.monotonic() + RESEND_S
                self.alert_round(sent)
            except (RayError, GetTimeoutError) as exc:  # a replica gone mid-round: the next round retries
                log.warning("alerts: round failed (%s: %s), retrying", type(exc).__name__, exc)

    def _assign_owners(self, streams: list[str], alive: list[str]) -> dict[str, str]:
        """Stream id -> owner replica: kept while alive, else the alive replica owning the fewest."""
        owners = {sid: r for sid, r in self._alert_owners.items() if sid in streams and r in alive}
        for sid in streams:
            if sid not in owners and alive:
                load = {name: 0 for name in alive}
                for owner in owners.values():
                    load[owner] += 1
                owners[sid] = min(alive, key=lambda name: (load[name], name))
        self._alert_owners = owners
        return owners

    def alert_round(self, sent: dict[str, tuple]) -> list[dict[str, Any]]:
        """One round: owners, rules sent where changed, results collected and applied; returns new events."""
        replicas = {m.name: m for m in self.llms.alive()}
        rules = self.alerts.by_stream()
        owners = self._assign_owners(sorted(rules), sorted(replicas))
        for name, member in replicas.items():
            mine = {sid: r for sid, r in rules.items() if owners.get(sid) == name}
            if sent.get(name) != (member.pid, mine):
                member.handle.set_alert_rules.remote(mine)  # fire and forget: idempotent, re-sent
                sent[name] = (member.pid, mine)
        results = self._collect(replicas)
        events = self.alerts.apply(results) if results else []
        for event in events:
            hook = self.alerts.webhook_of(event["rule_id"])
            if hook is not None:
                self.webhooks.send(event["rule_id"], hook[0], hook[1], event)
        return events

    def _collect(self, replicas: dict[str, Any]) -> list[dict[str, Any]]:
        """Results drained from every alive replica. A drain call that has not answered yet stays pending
        into the next round (never a second one beside it), so a slow answer is late, not lost."""
        for name, member in replicas.items():
            if name not in self._alert_drains:
                self._alert_drains[name] = member.handle.drain_alert_results.remote()
        refs = list(self._alert_drains.values())
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=1.0)[0]) if refs else set()
        results = []
        for name, ref in list(self._alert_drains.items()):
            if ref not in ready:
                if name not in replicas:
                    del self._alert_drains[name]  # lost: whatever it held is answered again by the new owner
                continue
            del self._alert_drains[name]
            try:
                results += ray.get(ref, timeout=0)
            except (RayError, GetTimeoutError) as exc:
                log.debug("alerts: %s did not answer: %s", name, exc)
        return results
