"""Stream hosts: which host processes the controller runs, on which node, and which streams each one holds.

With `streams_per_host` = N >= 1 a stream's source and memory run in a stream host (actors/workers/host.py)
instead of two actors of its own. A new stream goes to a host pinned to its encoder replica's node (where
its actors went before) that holds fewer than N streams, the fullest first (fewest processes); when there is
none a new host is started there. A host whose last stream leaves (removed, moved, or gone with its process)
is killed. The table stores each stream's host by name, so a restarted controller adopts them as it adopts
replicas.

`pick_host` is the policy (plain data, no Ray); `HostPool` keeps the hosts under its own lock, since streams
are added outside the controller's control lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

log = logging.getLogger(__name__)


@dataclass
class Host:
    """A stream host as the controller knows it: its actor, the node it is pinned to, its streams."""

    name: str
    handle: Any  # StreamHostActor handle
    node_id: str | None  # its replica's node when started (None: not pinned, e.g. `stream_resources`)
    streams: set[str] = field(default_factory=set)


def pick_host(hosts: list[Host], node_id: str | None, per_host: int) -> str | None:
    """The host a new stream on `node_id` should join: one pinned to that node with fewer than `per_host`
    streams, the fullest first (ties: name order); None when a new host is needed."""
    fits = [h for h in hosts if h.node_id == node_id and len(h.streams) < per_host]
    if not fits:
        return None
    return min(fits, key=lambda h: (-len(h.streams), h.name)).name


class HostPool:
    """The controller's stream hosts, `per_host` streams each at most. Thread-safe."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._hosts: dict[str, Host] = {}

    def place(self, stream_id: str, node_id: str | None, create: Callable[[], tuple[str, Any]]) -> Host:
        """Reserve a place for `stream_id` on a host of `node_id`, starting one with `create()` -> (name,
        handle) when every host there is full."""
        with self._lock:
            name = pick_host(list(self._hosts.values()), node_id, self.per_host)
            if name is None:
                name, handle = create()
                self._hosts[name] = Host(name, handle, node_id)
                log.info("hosts: started %s for the streams of node %s", name, node_id)
            host = self._hosts[name]
            host.streams.add(stream_id)
            return host

    def adopt(self, name: str, stream_id: str, node_id: str | None, handle: Any) -> None:
        """Take over a running host found by name (a restarted controller) with one of its streams."""
        with self._lock:
            self._hosts.setdefault(name, Host(name, handle, node_id)).streams.add(stream_id)

    def release(self, stream_id: str, name: str) -> None:
        """`stream_id` left host `name`; a host left without streams is killed (no restart)."""
        with self._lock:
            host = self._hosts.get(name)
            if host is None:
                return
            host.streams.discard(stream_id)
            if host.streams:
                return
            del self._hosts[name]
        log.info("hosts: %s holds no stream any more, stopping it", name)
        ray.kill(host.handle, no_restart=True)

    def kill_all(self) -> None:
        """Kill every host (the pipeline's shutdown)."""
        with self._lock:
            hosts = list(self._hosts.values())
            self._hosts.clear()
        for host in hosts:
            ray.kill(host.handle, no_restart=True)

    def counts(self) -> dict[str, int]:
        """Host name -> streams it holds (telemetry, tests)."""
        with self._lock:
            return {name: len(h.streams) for name, h in sorted(self._hosts.items())}
