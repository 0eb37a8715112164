"""Where the controller keeps what must outlive its process: one small key-value interface, two stores.

`GcsStore` is Ray's GCS key-value store of one Ray namespace: it lives as long as the cluster, exactly the
life of the detached actors the controller's documents name (as Ray Serve keeps its controller's checkpoint).
Ray exposes it only through `ray.experimental.internal_kv`; this is the one module that calls it, so a Ray
upgrade that moves it is a change here. `MemoryStore` keeps the same documents in a dict (tests, tools).
"""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """Documents by key, each written whole."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStore:
    """A Store in a dict (tests, tools)."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.docs.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.docs[key] = value

    def delete(self, key: str) -> None:
        self.docs.pop(key, None)


class GcsStore:
    """A Store in Ray's GCS key-value store, one Ray namespace (a process connected to the cluster)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def get(self, key: str) -> bytes | None:
        from ray.experimental import internal_kv  # imported when used: tests of the documents need no Ray

        return internal_kv._internal_kv_get(key, namespace=self.namespace)

    def put(self, key: str, value: bytes) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=self.namespace)

    def delete(self, key: str) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_del(key, namespace=self.namespace)
