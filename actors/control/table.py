"""The controller's durable state: which replicas and streams the pipeline has, kept in Ray's GCS key-value store.

A restarted controller (Ray restarts it after its process dies) reads this table and re-adopts the actors it
names; they are detached, so they outlived the old controller and never stopped. The GCS store lives as long
as the cluster does (as Ray Serve keeps its controller's checkpoint), which is exactly the life of the
actors the table names: a fresh cluster starts from the config instead.

One JSON document per Ray namespace, rewritten whole on every change (a few KB for hundreds of streams)::

    {"format": 1, "next_id": int, "encoders": [actor name, ...], "llms": [actor name, ...],
     "streams": {stream_id: {"spec": StreamSpec as a dict, "encoder": replica name, "added_at": wall clock,
                             "source": actor name, "memory": actor name, "host": stream host name}}}

A stream placed on a stream host (`streams_per_host` >= 1) names its host and no actors of its own ("").
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from actors.config import StreamSpec, stream_spec
from actors.control.kv import GcsStore, Store

FORMAT = 1
KEY = "tokdyn-pipeline-table"


class TableError(ValueError):
    """The stored table is not one this controller wrote (another format, or damaged)."""


@dataclass
class StreamEntry:
    spec: StreamSpec
    encoder: str  # name of the encoder replica that serves it
    added_at: float
    source: str  # actor names (detached: found again by name after a controller restart); "" when hosted
    memory: str
    host: str = ""  # the stream host that runs both (actors/control/hosts.py); "" when it has its own actors


@dataclass
class Table:
    next_id: int = 0  # actor names get a fresh number, so a replaced actor never collides with its old name
    encoders: list[str] = field(default_factory=list)
    llms: list[str] = field(default_factory=list)
    streams: dict[str, StreamEntry] = field(default_factory=dict)

    def new_name(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}-{self.next_id}"

    def to_json(self) -> bytes:
        streams = {sid: {"spec": dataclasses.asdict(e.spec), "encoder": e.encoder, "added_at": e.added_at,
                         "source": e.source, "memory": e.memory, "host": e.host} for sid, e in self.streams.items()}
        return json.dumps({"format": FORMAT, "next_id": self.next_id, "encoders": self.encoders,
                           "llms": self.llms, "streams": streams}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Table:
        """Raises TableError naming what is wrong."""
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise TableError(f"pipeline table: expected format {FORMAT}, got {doc.get('format')!r}")
            streams = {sid: StreamEntry(stream_spec(e["spec"]), str(e["encoder"]), float(e["added_at"]),
                                        str(e["source"]), str(e["memory"]), str(e.get("host", "")))
                       for sid, e in doc["streams"].items()}
            return cls(int(doc["next_id"]), [str(n) for n in doc["encoders"]], [str(n) for n in doc["llms"]],
                       streams)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, TableError):
                raise
            raise TableError(f"pipeline table: expected the controller's JSON document, got one that fails with "
                             f"{type(exc).__name__}: {exc}") from None


class TableStore:
    """Load / save / delete the table in a `Store` (actors/control/kv.py; Ray's GCS store of one namespace)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> Table | None:
        data = self.store.get(KEY)
        return None if data is None else Table.from_json(data)

    def save(self, table: Table) -> None:
        self.store.put(KEY, table.to_json())

    def delete(self) -> None:
        self.store.delete(KEY)


def stop_all(namespace: str) -> int:
    """Kill every actor the pipeline table of `namespace` names and delete the table; returns how many were
    killed. For a shutdown while the controller cannot do it (restarting, or gone): its actors are detached
    and would otherwise outlive it. Kill the controller first, or a restart re-adopts them."""
    import ray

    store = TableStore(GcsStore(namespace))
    table = store.load()
    killed = 0
    if table is not None:
        names = table.encoders + table.llms + list(dict.fromkeys(
            n for e in table.streams.values() for n in (e.source, e.memory, e.host) if n))
        for name in names:
            try:
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
                killed += 1
            except ValueError:  # already gone
                continue
    store.delete()
    return killed

