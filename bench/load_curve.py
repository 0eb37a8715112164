"""bench/scale.py's part 5: the encoder autoscaler under a load curve, on part 4's 2-node local cluster.

One encoder replica to start, `encoder.autoscale` on (AUTOSCALE: lag bound = bench/pipeline.py's 2 s, held 5 s,
30 s cooldown, 1..2 replicas); streams as in part 4 (a 640x480 30 fps H.264 file played live, 2 frames/s in
chunks of 4). The load: LOW streams, then STEP more every RAMP_EVERY_S up to HIGH (more than one replica
sustains here: part 4 (b)), held, then back to LOW at once. A thread samples every second: the streams, the
alive encoder replicas, the worst stream lag and the pool's frames/s; the controller's scale events give the
decisions. Figures: seconds from the start of the last unbroken window of samples over the lag bound to the
autoscaler's "add" (its reaction: the window, rounds, and the new replica's start, as the event is recorded
once it runs), from the rise to the add, the worst lag before the add and the median worst lag in the
AFTER_ADD_S / 2 before the fall, and seconds from the fall to its "remove". Both nodes share this machine's
2 cores: a second replica adds no compute here, so whether the lag falls after the add is not the pool's
figure; the decisions and their timing are.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path

from actors.client.client import PipelineClient
from actors.config import AutoscaleConfig
from actors.errors import PipelineUnavailable
from actors.status import ALIVE, ScaleEvent
from bench.common import print_table
from bench.pipeline import LAG_LIMIT_S, add_streams, wait_first_chunks
from bench.replica_pool import NODES, pool_pipeline

LOW, STEP, HIGH = 2, 4, 22
AUTOSCALE = AutoscaleConfig(enabled=True, max_lag_s=LAG_LIMIT_S, window_s=5.0, cooldown_s=30.0, min_replicas=1,
                            max_replicas=NODES)
LOW_S = 20.0  # the first quiet phase
RAMP_EVERY_S = 15.0  # between two steps of the rise (after the step's streams were added)
ADD_TIMEOUT_S = 240.0  # at HIGH: the autoscaler's add within this, or the figure is "none"
AFTER_ADD_S = 60.0  # observed after the add (the new replica loads and takes streams)
FALL_TIMEOUT_S = 180.0  # back to LOW: the autoscaler's remove within this (cooldown + window + rounds)
SAMPLE_S = 1.0


class Curve:
    """The samples (taken by a thread) and phase marks of one run; `t` is seconds since the curve began, on
    the wall clock as the controller's events."""

    def __init__(self, client: PipelineClient) -> None:
        self.client = client
        self.t0 = time.time()
        self.phase = "low"
        self.samples: list[dict] = []
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_every_second, name="curve-sampler", daemon=True)

    def __enter__(self) -> Curve:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def now(self) -> float:
        return round(time.time() - self.t0, 1)

    def mark(self, phase: str) -> float:
        self.phase, self.marks[phase] = phase, self.now()
        return self.marks[phase]

    def _sample_every_second(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self._sample()
            except PipelineUnavailable as exc:  # the controller busy past its call timeout: a gap in the curve
                self.samples.append({"t": self.now(), "phase": self.phase, "error": str(exc)})

    def _sample(self) -> None:
        statuses = self.client.list_streams()
        lags = [s.lag_s for s in statuses if s.lag_s is not None]
        pool = [r for r in self.client.replicas() if r.role == "encoder" and r.state == ALIVE]
        self.samples.append({"t": self.now(), "phase": self.phase, "streams": len(statuses), "replicas": len(pool),
                             "worst_lag_s": max(lags, default=None),
                             "frames_per_s": sum(r.frames_per_s or 0.0 for r in pool)})

    def wait_event(self, action: str, timeout_s: float) -> ScaleEvent | None:
        """The autoscaler's first `action` event since the curve began, waited for up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = next((e for e in self.client.scale_events() if e.at >= self.t0 and e.action == action
                          and e.reason.startswith("autoscale")), None)
            if event is not None:
                return event
            time.sleep(SAMPLE_S)  # polling the controller's events, with the deadline above
        return None

    def lags(self, start: float, end: float) -> list[float]:
        return [s["worst_lag_s"] for s in self.samples if start <= s["t"] < end and s.get("worst_lag_s") is not None]


def run_curve(client: PipelineClient, clip: Path) -> dict:
    """LOW -> HIGH in steps -> LOW streams; see the module docstring."""
    ids = [f"cam{i}" for i in range(HIGH)]
    add_streams(client, clip, ids[:LOW])
    wait_first_chunks(client, ids[:LOW])
    with Curve(client) as curve:
        time.sleep(LOW_S)
        rise = curve.mark("rise")
        for n in range(LOW, HIGH, STEP):
            add_streams(client, clip, ids[n:n + STEP])
            time.sleep(RAMP_EVERY_S)  # the step's load, seen by the sampler and the autoscaler
        curve.mark("high")
        added = curve.wait_event("add", ADD_TIMEOUT_S)
        if added is not None:
            time.sleep(AFTER_ADD_S)
        fall = curve.mark("fall")
        for sid in ids[LOW:]:
            client.remove_stream(sid)
        removed = curve.wait_event("remove", FALL_TIMEOUT_S)
        curve.mark("end")
    add_t = round(added.at - curve.t0, 1) if added else None
    over = held_over_since(curve.samples, add_t, AUTOSCALE.max_lag_s, AUTOSCALE.window_s) if added else None
    after = curve.lags(fall - AFTER_ADD_S / 2, fall) if added else []
    return {
        "low": LOW, "step": STEP, "high": HIGH, "ramp_every_s": RAMP_EVERY_S,
        "autoscale": dataclasses.asdict(AUTOSCALE), "marks": curve.marks, "lag_over_bound_since_s": over,
        "add_at_s": add_t, "add_after_lag_over_s": round(add_t - over, 1) if over is not None else None,
        "add_after_rise_s": round(add_t - rise, 1) if added else None,
        "add_reason": added.reason if added else None,
        "worst_lag_before_add_s": max(curve.lags(rise, add_t if added else fall), default=None),
        "worst_lag_after_add_median_s": statistics.median(after) if after else None,
        "remove_after_fall_s": round(removed.at - curve.t0 - fall, 1) if removed else None,
        "remove_reason": removed.reason if removed else None,
        "events": [e.to_dict() for e in client.scale_events() if e.at >= curve.t0],
        "samples": curve.samples,
    }


def held_over_since(samples: list[dict], until_t: float, bound_s: float, hold_s: float) -> float | None:
    """Start (curve seconds) of the last unbroken run of samples whose worst lag is over `bound_s` for at
    least `hold_s`, before `until_t`: the stretch the autoscaler acted on (a sample under the bound starts
    its window again). None if there is none. Samples without a lag (a gap) neither extend nor break a run."""
    since, found = None, None
    for sample in samples:  # in time order
        lag = sample.get("worst_lag_s")
        if sample["t"] > until_t:
            break
        if lag is None:
            continue
        since = (sample["t"] if since is None else since) if lag > bound_s else None
        if since is not None and sample["t"] - since >= hold_s:
            found = since
    return found


def load_curve_part() -> dict:
    """Part 5 on a fresh 2-node cluster."""
    with pool_pipeline(AUTOSCALE) as (client, clip, _):
        return run_curve(client, clip)


def print_load_curve(result: dict) -> None:
    def fmt(value: float | None, unit: str = " s") -> str:
        return "none" if value is None else f"{value:.1f}{unit}"

    every = max(1, len(result["samples"]) // 24)
    rows = [(s["t"], s["phase"], s.get("streams"), s.get("replicas"), s.get("worst_lag_s"), s.get("frames_per_s"))
            for s in result["samples"][::every]]
    print_table([("t s", ".0f"), ("phase", ""), ("streams", "d"), ("replicas", "d"), ("worst lag s", ".1f"),
                 ("pool frames/s", ".1f")], rows)
    a = result["autoscale"]
    print(f"autoscale (lag > {a['max_lag_s']:g} s for {a['window_s']:g} s, cooldown {a['cooldown_s']:g} s, "
          f"{a['min_replicas']}..{a['max_replicas']} replicas), {result['low']} -> {result['high']} (+{result['step']} "
          f"every {result['ramp_every_s']:g} s) -> {result['low']} streams:")
    print(f"  rise at {result['marks']['rise']:.0f} s, {result['high']} streams at {result['marks']['high']:.0f} s; "
          f"worst lag held over the bound since {fmt(result['lag_over_bound_since_s'])}; add at "
          f"{fmt(result['add_at_s'])}: {fmt(result['add_after_lag_over_s'])} after that, "
          f"{fmt(result['add_after_rise_s'])} after the rise ({result['add_reason']})")
    print(f"  worst lag before the add {fmt(result['worst_lag_before_add_s'])}; median worst lag in the "
          f"{AFTER_ADD_S / 2:.0f} s before the fall {fmt(result['worst_lag_after_add_median_s'])}")
    print(f"  remove {fmt(result['remove_after_fall_s'])} after the fall ({result['remove_reason']})")
