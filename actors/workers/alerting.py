"""Alert evaluation inside an LLM replica: the rules of the streams this replica owns, checked on every new
snapshot, all rules of a snapshot in one batch over one prefill of the memory (actors/workers/rule_scoring.py).

The controller says which streams this replica owns and their rules (`set_rules`, idempotent, re-sent
whenever it changes and every few seconds) and collects the results (`drain`). Snapshots are taken from the
replica's snapshot store, which keeps only the newest one per stream: a replica slower than the chunks
evaluates the newest snapshot and counts the versions it never saw as skipped; nothing queues. Results wait
for the controller in a bounded deque (MAX_RESULTS; the oldest are dropped and counted, should the controller
be away that long).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from actors.errors import PipelineError
from actors.workers.loop import LoopThread

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often the loop looks for new snapshots of its streams
MAX_RESULTS = 4096  # evaluation results held for the controller


class AlertEvaluator:
    """Evaluates the owned streams' rules on new snapshots; `store` is the replica's SnapshotStore."""

    def __init__(self, vlm: Any, store: Any, exit_on_crash: bool = False) -> None:
        self.vlm = vlm
        self.store = store
        self.scorer: Any = None  # a RuleScorer, built on the first rule (torch: imported only in the LLM)
        self._lock = threading.Lock()
        self._rules: dict[str, list[dict[str, str]]] = {}  # stream id -> [{"id", "prompt"}]
        self._seen: dict[str, int] = {}  # stream id -> newest snapshot version evaluated
        self._results: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RESULTS)
        self.stats = {"evaluations": 0, "snapshots": 0, "skipped_snapshots": 0, "results_dropped": 0,
                      "evaluation_seconds_sum": 0.0}
        self._loop = LoopThread("llm-alerts", self._run, exit_on_crash)

    def set_rules(self, rules: dict[str, list[dict[str, str]]]) -> None:
        """The streams this replica owns now, each with its rules ({"id", "prompt"}), replacing the last set."""
        with self._lock:
            self._rules = {sid: list(r) for sid, r in rules.items() if r}
            for sid in set(self._seen) - set(self._rules):
                del self._seen[sid]  # owned again later: start from its newest snapshot, no skips counted

    def drain(self) -> list[dict[str, Any]]:
        """The results since the last call, oldest first."""
        with self._lock:
            out = list(self._results)
            self._results.clear()
        return out

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "streams": len(self._rules), "rules": sum(len(r) for r in self._rules.values()),
                    "loop_error": self._loop.error}

    def close(self) -> None:
        self._loop.stop()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_S):
            with self._lock:
                work = dict(self._rules)
            for stream_id, rules in sorted(work.items()):
                if stop.is_set():
                    return
                self.evaluate(stream_id, rules)

    def evaluate(self, stream_id: str, rules: list[dict[str, str]]) -> dict[str, Any] | None:
        """Check `rules` on the stream's newest snapshot if it is newer than the last one checked; returns the
        result (also queued for the controller), or None when there was nothing new."""
        try:
            snapshot = self.store.get(stream_id)
        except PipelineError:  # not known here yet, or no snapshot yet: try again next poll
            return None
        with self._lock:
            seen = self._seen.get(stream_id)
        if seen is not None and snapshot.version <= seen:
            return None
        started = time.perf_counter()
        if self.scorer is None:
            from actors.workers.rule_scoring import RuleScorer  # torch: never in the controller's process

            self.scorer = RuleScorer(self.vlm)
        margins = self.scorer.margins(self.vlm.memory_tokens(snapshot), [r["prompt"] for r in rules])
        latency = time.perf_counter() - started
        skipped = 0 if seen is None else max(snapshot.version - seen - 1, 0)
        result = {"stream_id": stream_id, "version": int(snapshot.version), "t_start": float(snapshot.t_start),
                  "t_end": float(snapshot.t_end), "answers": {r["id"]: [m > 0, m] for r, m in zip(rules, margins)},
                  "skipped": skipped, "latency_s": latency}
        with self._lock:
            if stream_id not in self._rules:
                return None  # ownership moved away meanwhile
            self._seen[stream_id] = int(snapshot.version)
            if len(self._results) == self._results.maxlen:
                self.stats["results_dropped"] += 1
            self._results.append(result)
            self.stats["evaluations"] += len(rules)
            self.stats["snapshots"] += 1
            self.stats["skipped_snapshots"] += skipped
            self.stats["evaluation_seconds_sum"] += latency
        return result
