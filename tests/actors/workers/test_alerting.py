"""An LLM replica's alert evaluator (no Ray): newest snapshot only, skips counted, bounded results."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from actors.errors import StreamNotReady
from actors.workers.alerting import AlertEvaluator
from vlm import ModelConfig
from vlm.registry import load_vlm


class Store:
    """The newest snapshot per stream, as the replica's SnapshotStore keeps it."""

    def __init__(self) -> None:
        self.newest: dict[str, SimpleNamespace] = {}

    def put(self, stream_id: str, version: int) -> None:
        self.newest[stream_id] = SimpleNamespace(version=version, t_start=0.0, t_end=float(version))

    def get(self, stream_id: str) -> SimpleNamespace:
        if stream_id not in self.newest:
            raise StreamNotReady(f"stream {stream_id!r}: no snapshot yet")
        return self.newest[stream_id]


def test_evaluates_each_new_snapshot_once_and_skips_to_the_newest():
    vlm = load_vlm(ModelConfig(path="tiny"))
    vlm.memory_tokens = lambda snapshot: torch.randn(8, vlm.hidden_size).to(vlm.dtype)
    store = Store()
    evaluator = AlertEvaluator(vlm, store)
    evaluator.close()  # drive it by hand: no thread behind the test's back
    rules = [{"id": "alert-1", "prompt": "Is a star visible?"}, {"id": "alert-2", "prompt": "Is it red?"}]
    evaluator.set_rules({"cam": rules})
    assert evaluator.evaluate("cam", rules) is None  # no snapshot yet
    store.put("cam", 3)
    first = evaluator.evaluate("cam", rules)
    assert first["version"] == 3 and first["skipped"] == 0 and set(first["answers"]) == {"alert-1", "alert-2"}
    assert evaluator.evaluate("cam", rules) is None  # nothing new
    store.put("cam", 7)  # a slow replica: versions 4, 5, 6 were never seen
    assert evaluator.evaluate("cam", rules)["skipped"] == 3
    assert [r["version"] for r in evaluator.drain()] == [3, 7] and evaluator.drain() == []
    assert evaluator.status()["skipped_snapshots"] == 3 and evaluator.status()["evaluations"] == 4
    evaluator.set_rules({})  # ownership moved to another replica
    store.put("cam", 8)
    assert evaluator.evaluate("cam", rules) is None and evaluator.drain() == []
