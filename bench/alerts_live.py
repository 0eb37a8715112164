"""The live section of bench/alerts.py (`--live N --rules R`): alert rules evaluated by the real pipeline.

N scene cameras (`scene://?seed=900000+i`, 320x240 at 10 fps, played live: the offline section's scenes) go
through a local Ray pipeline started as bench/pipeline.py starts it (`bench_config`, stream hosts of 16) with
the shipped model; each stream samples 2 frames/s in chunks of 4 into the streaming Token Dynamics memory at
K = 32 (one snapshot per chunk). Each stream gets its R rules (min_consecutive 1, cooldown 0) as soon as it is
added: the scored kinds of `rules_for` in order, then extra yes/no prompts that only add load. Once every
stream has chunks and every rule has been answered once, the streams are watched for `window` seconds
(bench/pipeline.py's `run_step`: lag, pace, drops; the evaluation and skip counters are read at its ends), and
then the LLM is given time to answer the window's last snapshots. Every firing is read with `alert_events`
throughout.

Detection is scored per stream over the media span (t0, t1]: t0 = the later of the rules being in and the
memory's first frame, t1 = where the memory stood at the window's end (so the span holds the start-up as well
as the window, and the scenes' early events). Firings are the events whose snapshot end lies in it; truth,
precision and latency are bench/alerts.py's (`onsets`, `score`), recall and latency over the events whose
onset lies in [t0, t1 - one chunk] (a later onset has no snapshot in the span after it). Sustained:
bench/alerts.py's module docstring.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray

from actors.client.client import PipelineClient
from actors.client.pipeline import start_pipeline
from actors.errors import PipelineUnavailable
from bench.alerts import (BUDGET, EXTRA_PROMPTS, FRAMES_PER_CHUNK, KINDS, RATE_HZ, SCENE_SEED, detection_figures,
                          onsets, rules_for, score)
from bench.common import BenchRun, print_table
from bench.pipeline import FIRST_CHUNK_TIMEOUT_S, bench_config, run_step, wait_first_chunks
from scenes.scene import SceneSpec, make_scene
from vlm import ModelConfig

STREAMS_PER_HOST = 16
CHUNK_S = FRAMES_PER_CHUNK / RATE_HZ  # media seconds per chunk and snapshot
FIRST_ANSWER_TIMEOUT_S = 180.0  # first chunks to every rule answered once: snapshots reach the LLM, busy CPU
DRAIN_S = 30.0  # after the window, for the LLM to answer the snapshots the window ended with
# A live camera's media clock runs from its source's first frame, so a scene must outlast the start-up (first
# chunks, first answers), the window and the drain; frames are rendered only when played, so length is free.
START_MARGIN_S = FIRST_CHUNK_TIMEOUT_S + FIRST_ANSWER_TIMEOUT_S + DRAIN_S + 60.0
POLL_S = 1.0  # alert_events polling period
PAGE = 1000  # events per alert_events call (the controller's cap)
SKIPPED_MAX = 0.10  # skipped snapshots / chunks produced, at most, for a sustained run
ANSWERED_MIN = 0.90  # snapshots answered / chunks produced, at least (a stalled evaluator skips nothing)
TARGET = {"streams": 16, "rules": 8, "median_latency_s": 4.0}  # issue 21


class RuleInfo(NamedTuple):
    """What a rule added by this bench checks: its stream, its kind ("extra": load only) and truth(t) or None."""

    stream_id: str
    kind: str
    truth: Callable[[float], bool] | None


class EventLog:
    """Every firing with an id above `after`, read with `alert_events` every POLL_S by a thread: the controller
    retains only its newest 1,000, and N x R rules with cooldown 0 can fire more than that in a window."""

    def __init__(self, client: PipelineClient, after: int) -> None:
        self.client = client
        self.first = after  # events after this id belong to the run
        self.after = after
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-events", daemon=True)
        self._thread.start()

    def read(self) -> None:
        """Take every retained event after the last one taken."""
        while True:
            page = self.client.alert_events(self.after, PAGE)
            self.events += page
            if page:
                self.after = page[-1]["id"]
            if len(page) < PAGE:
                return

    def close(self) -> list[dict[str, Any]]:
        """Stop polling, take what is left; every event read."""
        self._stop.set()
        self._thread.join()
        self.read()
        return self.events

    def lost(self) -> int:
        """Event ids in the run that were never read (dropped from retention before a poll came)."""
        return self.after - self.first - len(self.events)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.read()
            except PipelineUnavailable:  # a controller too busy to answer in time: the next poll catches up
                continue


def rule_prompts(scene: Any, rules: int) -> list[tuple[str, str, Callable[[float], bool] | None]]:
    """(kind, prompt, truth) of a stream's first `rules` rules: the scored kinds, then EXTRA_PROMPTS (no truth)."""
    scored = rules_for(scene)
    out = [(kind, *scored[kind]) for kind in KINDS[:rules]]
    return out + [("extra", prompt, None) for prompt in EXTRA_PROMPTS[:max(rules - len(KINDS), 0)]]


def wait_rules(client: PipelineClient, done: Callable[[dict[str, Any]], bool], rule_ids: set[str],
               timeout_s: float) -> bool:
    """Poll the rules `rule_ids` until `done(rule view)` holds for each; whether it did within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not all(done(r) for r in client.list_alerts() if r["id"] in rule_ids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)  # polling a condition, with the deadline above
    return True


def evaluations_by_stream(client: PipelineClient, rules: dict[str, RuleInfo]) -> dict[str, int]:
    """Stream id -> its rules' evaluations so far (the controller's per-rule counters)."""
    out: dict[str, int] = {}
    for view in client.list_alerts():
        if view["id"] in rules:
            out[view["stream_id"]] = out.get(view["stream_id"], 0) + view["counts"]["evaluations"]
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile of `values`, None for none."""
    return float(np.percentile(values, q)) if values else None


def score_window(events: list[dict[str, Any]], rules: dict[str, RuleInfo],
                 spans: dict[str, tuple[float, float]]) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """Per scored kind: precision, recall, median and p90 detection latency, firings and events over every
    stream's window span (t0, t1]; and every detection latency (media seconds)."""
    fired: dict[str, list[float]] = {rule_id: [] for rule_id in rules}
    for event in events:
        t0, t1 = spans[event["stream_id"]]
        if event["rule_id"] in fired and t0 < event["span"]["t_end"] <= t1:
            fired[event["rule_id"]].append(event["span"]["t_end"])
    totals: dict[str, dict[str, Any]] = {}
    for rule_id, info in rules.items():
        if info.truth is None:
            continue
        t0, t1 = spans[info.stream_id]
        held = onsets(info.truth, t1 + CHUNK_S)  # every event a firing in the window may belong to
        window = [(on, off) for on, off in held if t0 <= on <= t1 - CHUNK_S]
        times = sorted(fired[rule_id])
        correct = score(times, held, CHUNK_S)[0]
        _, detected, latency = score(times, window, CHUNK_S)
        agg = totals.setdefault(info.kind, {"fired": 0, "correct": 0, "events": 0, "detected": 0, "latency": []})
        for key, value in (("fired", len(times)), ("correct", correct), ("events", len(window)),
                           ("detected", detected), ("latency", latency)):
            agg[key] += value
    table = {kind: {**detection_figures(a["fired"], a["correct"], a["events"], a["detected"], a["latency"]),
                    "p90_latency_s": percentile(a["latency"], 90)} for kind, a in totals.items()}
    return table, [t for a in totals.values() for t in a["latency"]]


def start_stream(client: PipelineClient, stream_id: str, spec: SceneSpec,
                 rules: int) -> tuple[dict[str, RuleInfo], float]:
    """Add the stream and at once its rules; (rule id -> RuleInfo, the media time its memory had reached when
    the rules were in: 0 before its first chunk)."""
    client.add_stream({"stream_id": stream_id, "url": spec.to_url(), "sample_rate_hz": RATE_HZ,
                       "frames_per_chunk": FRAMES_PER_CHUNK, "live": True,
                       "compressor": {"method": "token_dynamics", "budget": BUDGET}})
    added = {}
    for kind, prompt, truth in rule_prompts(make_scene(spec), rules):
        view = client.add_alert({"stream_id": stream_id, "prompt": prompt, "cooldown_s": 0, "min_consecutive": 1})
        added[view["id"]] = RuleInfo(stream_id, kind, truth)
    return added, client.stream_status(stream_id).t_end or 0.0


def measure(client: PipelineClient, streams: int, rules: int, window_s: float) -> dict[str, Any]:
    """Add the streams with their rules, watch the window, read the firings and counters; the live figures."""
    specs = {f"cam{i}": SceneSpec(seed=SCENE_SEED + i, seconds=window_s + START_MARGIN_S) for i in range(streams)}
    ids = list(specs)
    log = EventLog(client, client.alert_stats()["last_event_id"])
    try:
        with ThreadPoolExecutor(streams) as pool:  # concurrently: actor start-ups overlap
            started = dict(zip(ids, pool.map(lambda sid: start_stream(client, sid, specs[sid], rules), ids)))
        added = {rule_id: info for rules_of, _ in started.values() for rule_id, info in rules_of.items()}
        print(f"  {streams} stream(s) added with {rules} rule(s) each", flush=True)
        wait_first_chunks(client, ids)
        # scored from the later of the rules and the memory's first frame (a live source that started before
        # the pipeline took its frames dropped them: events then were never in any snapshot)
        t0 = {s: max(started[s][1], client.stream_status(s).t_start or 0.0) for s in ids}
        if not wait_rules(client, lambda r: r["last_evaluation"] is not None, set(added), FIRST_ANSWER_TIMEOUT_S):
            raise TimeoutError(f"rules not all answered once within {FIRST_ANSWER_TIMEOUT_S} s")
        print(f"  every stream has chunks, every rule an answer: watching {window_s:g} s", flush=True)
        stats0, evals0 = client.alert_stats(), evaluations_by_stream(client, added)
        first = {s: client.stream_status(s) for s in ids}
        step = run_step(client, ids, window_s, None)
        last = {s: client.stream_status(s) for s in ids}
        evals1, stats1 = evaluations_by_stream(client, added), client.alert_stats()
        # the window's last snapshots are answered after it: their firings count, later ones do not
        drained = wait_rules(client, lambda r: r["last_evaluation"]["snapshot_version"] >=
                             (last[r["stream_id"]].snapshot_version or 0), set(added), DRAIN_S)
    finally:
        events = log.close()

    spans = {s: (t0[s], last[s].t_end or 0.0) for s in ids}
    chunks = {s: (last[s].chunks_compressed or 0) - (first[s].chunks_compressed or 0) for s in ids}
    per_stream = {s: {"scored_media_s": [round(v, 2) for v in spans[s]], "chunks": chunks[s],
                      "snapshots_evaluated": (evals1.get(s, 0) - evals0.get(s, 0)) / rules} for s in ids}
    delta = {k: stats1[k] - stats0[k] for k in ("evaluations", "skipped_snapshots", "evaluated_snapshots",
                                                 "evaluation_seconds_sum")}
    total_chunks = sum(chunks.values())
    skipped_fraction = delta["skipped_snapshots"] / total_chunks if total_chunks else None
    kinds, latencies = score_window(events, added, spans)
    median_latency = statistics.median(latencies) if latencies else None
    skipped_ok = skipped_fraction is not None and skipped_fraction <= SKIPPED_MAX
    # a chunk at each end of a stream's window may be answered just outside it: one per stream of slack
    answered_ok = total_chunks > 0 and delta["evaluated_snapshots"] + streams >= ANSWERED_MIN * total_chunks
    sustained = step["sustained"] and skipped_ok and answered_ok
    at_size = streams >= TARGET["streams"] and rules >= TARGET["rules"]
    met = sustained and median_latency is not None and median_latency <= TARGET["median_latency_s"]
    return {
        "streams": streams, "rules_per_stream": rules, "window_s": window_s, "model": "embedded",
        "streams_per_host": STREAMS_PER_HOST,
        "stream": f"scene://?seed={SCENE_SEED}+i&seconds={window_s + START_MARGIN_S:g} (320x240 at 10 fps) live, "
                  f"{RATE_HZ:g} frames/s sampled, {FRAMES_PER_CHUNK} frames/chunk, token_dynamics K = {BUDGET}",
        "chunks": total_chunks, "chunks_per_stream": total_chunks / streams,
        "snapshots_evaluated_per_stream": statistics.mean(p["snapshots_evaluated"] for p in per_stream.values()),
        "evaluations": delta["evaluations"],
        # each stream's snapshots are answered once for all its rules: 1.0 = every chunk answered
        "evaluated_per_chunk": delta["evaluations"] / (rules * total_chunks) if total_chunks else None,
        "skipped_snapshots": delta["skipped_snapshots"], "skipped_fraction": skipped_fraction,
        # the controller keeps a sum and a count only, so no median or p90: seconds per snapshot (all its rules)
        "mean_evaluation_ms": (1000 * delta["evaluation_seconds_sum"] / delta["evaluated_snapshots"]
                               if delta["evaluated_snapshots"] else None),
        "per_stream": per_stream, "pipeline": step, "events_read": len(events), "events_lost": log.lost(),
        "drained": drained, "kinds": kinds,
        "detection_latency_s": {"median": median_latency, "p90": percentile(latencies, 90), "n": len(latencies)},
        "sustained": sustained,
        "sustained_checks": {"lag_pace_drops": step["sustained"], "skipped_at_most": SKIPPED_MAX,
                             "skipped_ok": skipped_ok, "answered_at_least": ANSWERED_MIN, "answered_ok": answered_ok},
        "target": {**TARGET, "verdict": ("PASS" if met else "FAIL") if at_size else "not this size"},
    }


def report(live: dict[str, Any]) -> None:
    """Print the live figures: load, per kind, the verdicts."""
    step = live["pipeline"]
    print_table([("streams", "d"), ("rules", "d"), ("window s", ".0f"), ("chunks/stream", ".1f"),
                 ("evals/chunk", ".2f"), ("skipped", "d"), ("skipped %", ".1f"), ("eval ms (mean)", ".0f"),
                 ("max lag s", ".2f"), ("min pace", ".2f"), ("drops", "d"), ("sustained", "")],
                [(live["streams"], live["rules_per_stream"], live["window_s"], live["chunks_per_stream"],
                  live["evaluated_per_chunk"], live["skipped_snapshots"],
                  None if live["skipped_fraction"] is None else 100 * live["skipped_fraction"],
                  live["mean_evaluation_ms"], step["max_lag_s"], step["min_pace"], step["dropped"],
                  "yes" if live["sustained"] else "no")])
    print()
    pooled = live["detection_latency_s"]
    print_table([("kind", ""), ("precision", ".2f"), ("recall", ".2f"), ("latency s", ".1f"), ("p90 s", ".1f"),
                 ("firings", "d"), ("events", "d")],
                [(k, r["precision"], r["recall"], r["median_latency_s"], r["p90_latency_s"], r["firings"],
                  r["events"]) for k, r in live["kinds"].items()]
                + [("all kinds", None, None, pooled["median"], pooled["p90"], None, None)])
    target = live["target"]
    print(f"\nsustained: {'yes' if live['sustained'] else 'no'} (lag < 2 s, pace >= 0.8, no drops: "
          f"{live['sustained_checks']['lag_pace_drops']}; skipped <= {SKIPPED_MAX:.0%} of chunks: "
          f"{live['sustained_checks']['skipped_ok']}; answered >= {ANSWERED_MIN:.0%}: "
          f"{live['sustained_checks']['answered_ok']}); events read {live['events_read']}, lost "
          f"{live['events_lost']}, drained {live['drained']}")
    print(f"issue 21 target ({target['streams']} streams x {target['rules']} rules sustained, median detection "
          f"latency <= {target['median_latency_s']:g} media s): {target['verdict']}")


def live(streams: int, rules: int, window_s: float, quick: bool, json_path: str | Path | None) -> dict[str, Any]:
    """Run the live section on a fresh local pipeline (always shut down, and Ray with it when this started it);
    prints the tables and returns the report (also written to `json_path`)."""
    run = BenchRun("alerts_live", quick)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local cluster on 127.0.0.1
    started_ray = not ray.is_initialized()
    try:
        with tempfile.TemporaryDirectory(prefix="tokdyn-alerts-") as tmp:
            config = bench_config(Path(tmp), STREAMS_PER_HOST)
            # an own namespace: start_pipeline adopts a pipeline already running in its namespace, which this
            # bench would then measure and shut down
            config = dataclasses.replace(config, model=ModelConfig(path="embedded"),
                                         ray=dataclasses.replace(config.ray, namespace=f"bench-alerts-{os.getpid()}"))
            client = start_pipeline(config)
            try:
                results = measure(client, streams, rules, window_s)
            finally:
                client.shutdown()
    finally:
        if started_ray:
            ray.shutdown()
    report(results)
    return run.finish({"live": results}, json_path)
