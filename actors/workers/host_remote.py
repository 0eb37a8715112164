"""The stream host's Ray shell: one actor process for many streams' sources and memories (actors/workers/host.py),
and `HostedHandle`, which lets the controller, the client and the API call one hosted stream's worker as if it
were an actor of its own.

Unlike the per-stream actors it never exits on one stream's crash: its supervisor builds that stream's worker
again in place, so the process (and every other stream in it) lives on. If the process itself dies, Ray
restarts it empty (its constructor knows no streams): `locate` then says the stream is not hosted, and the
controller starts the stream again, its memory restoring its checkpoint (actors/control/wiring.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from actors.config import TransportConfig
from actors.workers.host import StreamHost
from actors.workers.remote import Located

HOST_CONCURRENCY = 16  # calls served at once: one stream's slow call (a close) never queues another's status
# glibc settings of a host process (bench/host_memory.py measures both ways in one run): two arenas instead of
# one per thread, and large blocks (decoded frames, chunks) always mmapped and returned on free: by default the
# mmap threshold grows to the largest block freed, so every stream's frames stayed in the heap for good
# (per additional 720p stream 51.5 MB -> 25.8 MB).
HOST_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}


@ray.remote
class StreamHostActor(StreamHost, Located):
    def __init__(self, checkpoint_dir: str, transport: TransportConfig) -> None:
        StreamHost.__init__(self, checkpoint_dir, transport)

    def locate(self, stream_id: str) -> dict[str, Any]:
        """`where()` plus whether `stream_id` is hosted here (False after a restart of this process)."""
        return {**self.where(), "hosted": stream_id in self.stream_ids()}


@dataclass(frozen=True)
class HostedHandle:
    """One hosted stream's `role` ("source" or "memory") worker, called like an actor handle:
    `handle.status.remote()` is `host.call.remote(stream_id, role, "status")`; `where` and `pid` answer for
    the host's process (`where` adds "hosted"). Picklable: the controller hands it to clients."""

    host: Any  # the StreamHostActor's handle
    stream_id: str
    role: str

    def __getattr__(self, method: str) -> HostedMethod:
        if method.startswith("_"):  # pickling and copying look these up: not worker methods
            raise AttributeError(method)
        return HostedMethod(self, method)


@dataclass(frozen=True)
class HostedMethod:
    """A bound method of a `HostedHandle`: `.remote(*args, **kwargs)` returns the call's ObjectRef."""

    handle: HostedHandle
    method: str

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        h = self.handle
        if self.method == "where":
            return h.host.locate.remote(h.stream_id)
        if self.method == "pid":
            return h.host.pid.remote()
        return h.host.call.remote(h.stream_id, h.role, self.method, *args, **kwargs)
