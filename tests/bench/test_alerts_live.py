"""bench/alerts.py --live: scene cameras with alert rules through the real pipeline, at the smallest size."""

from __future__ import annotations

import json

import pytest

from bench.alerts import main

pytestmark = pytest.mark.ray  # starts (and stops) its own local Ray cluster and pipeline


def test_live_section_reports_evaluations_detection_and_a_verdict(tmp_path):
    """Given 1 scene camera with 2 rules (position, direction) on a fresh pipeline, when the live section runs a
    10 s window, then the JSON has the live figures: rules were evaluated on the stream's snapshots, never more
    than once per rule and snapshot, detection figures are numbers when there were events (None when not), and
    a sustained verdict with its checks."""
    path = tmp_path / "live.json"
    main(["--live", "1", "--rules", "2", "--window", "10", "--json", str(path)])
    live = json.loads(path.read_text())["live"]

    assert (live["streams"], live["rules_per_stream"], live["window_s"]) == (1, 2, 10.0)
    assert live["chunks"] > 0 and live["evaluations"] > 0
    # each rule answers a snapshot once; one in flight at the window's start may land inside it
    assert 0 < live["evaluated_per_chunk"] <= (live["chunks"] + 1) / live["chunks"]
    assert 0 <= live["skipped_snapshots"] <= live["chunks"]
    assert live["mean_evaluation_ms"] > 0
    assert live["events_lost"] == 0

    assert set(live["kinds"]) == {"position", "direction"}
    for kind in live["kinds"].values():
        assert (kind["precision"] is None) == (kind["firings"] == 0)
        assert kind["precision"] is None or 0 <= kind["precision"] <= 1
        assert kind["recall"] is None or 0 <= kind["recall"] <= 1
        if kind["median_latency_s"] is not None:
            assert 0 <= kind["median_latency_s"] <= kind["p90_latency_s"]
    pooled = live["detection_latency_s"]
    assert (pooled["median"] is None) == (pooled["n"] == 0)

    (t0, t1), = [stream["scored_media_s"] for stream in live["per_stream"].values()]
    assert 0 <= t0 < t1
    assert isinstance(live["sustained"], bool)
    checks = live["sustained_checks"]
    assert live["sustained"] == (checks["lag_pace_drops"] and checks["skipped_ok"] and checks["answered_ok"])
    assert live["target"]["verdict"] == "not this size"
