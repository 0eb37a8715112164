"""The stream host's Ray shell: one actor process for many streams' sources and memories (actors/workers/host.py).

Unlike the per-stream actors it never exits on one stream's crash: its supervisor builds that stream's worker
again in place, so the process (and every other stream in it) lives on. Ray restarts it only if the process
itself dies; each memory then restores its checkpoint.
"""

from __future__ import annotations

import ray

from actors.config import TransportConfig
from actors.workers.host import StreamHost
from actors.workers.remote import Located


@ray.remote
class StreamHostActor(StreamHost, Located):
    def __init__(self, checkpoint_dir: str, transport: TransportConfig) -> None:
        StreamHost.__init__(self, checkpoint_dir, transport)
