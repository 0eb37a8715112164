"""Replica pools: the placement, autoscale, routing and table logic on their own, then the whole pool on a
3-node Ray cluster whose nodes declare GPUs (tests/actors/control/pools_run.py, in its own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.control.autoscale import Autoscaler
from actors.config import AutoscaleConfig, stream_spec
from actors.control.placement import Replica, assign, loads, pick, rebalance
from actors.control.pools import LOST_AFTER_S, Member
from actors.client.routing import SUSPECT_S, LLMRouter
from actors.status import ALIVE, ReplicaStatus
from actors.control.kv import MemoryStore
from actors.control.table import StreamEntry, Table, TableError, TableStore

ROOT = Path(__file__).resolve().parents[3]
TWO = [Replica("e1", "n1"), Replica("e2", "n2")]


# --- placement ---------------------------------------------------------------------------------------------

def test_pick_prefers_the_least_loaded_replica_then_one_on_the_streams_node() -> None:
    assert pick(2.0, None, TWO, {"e1": 4.0, "e2": 2.0}) == "e2"
    assert pick(2.0, "n1", TWO, {"e1": 4.0, "e2": 2.0}) == "e1"  # within one stream's load: stay local
    assert pick(2.0, "n1", TWO, {"e1": 6.0, "e2": 2.0}) == "e2"  # beyond it: balance wins
    with pytest.raises(ValueError, match="at least one alive encoder replica"):
        pick(1.0, None, [], {})


def test_load_is_sampled_frames_per_second_not_stream_count() -> None:
    fps = {"a": 10.0, "b": 1.0, "c": 1.0}
    out = assign({"a": "gone", "b": "gone", "c": "gone"}, fps, {}, TWO)
    assert loads(out, fps, TWO) in ({"e1": 10.0, "e2": 2.0}, {"e1": 2.0, "e2": 10.0})


@given(st.dictionaries(st.sampled_from("abcdefghij"), st.sampled_from([0.5, 1.0, 2.0, 5.0]), min_size=1),
       st.lists(st.sampled_from(["e1", "e2", "dead"]), min_size=10, max_size=10))
def test_assign_keeps_live_assignments_and_places_every_orphan(fps: dict, owners: list) -> None:
    current = {sid: owners[i] for i, sid in enumerate(sorted(fps))}
    out = assign(current, fps, {}, TWO)
    assert set(out) == set(current) and set(out.values()) <= {"e1", "e2"}
    assert all(out[sid] == name for sid, name in current.items() if name != "dead")


@given(st.dictionaries(st.sampled_from("abcdefghij"), st.sampled_from([0.5, 1.0, 2.0, 5.0]), min_size=1))
def test_rebalance_narrows_the_spread_to_at_most_one_stream(fps: dict) -> None:
    everything_on_one = {sid: "e1" for sid in fps}
    out = rebalance(everything_on_one, fps, TWO)
    load = loads(out, fps, TWO)
    assert abs(load["e1"] - load["e2"]) <= max(fps.values())
    assert rebalance(out, fps, TWO) == out  # balanced: nothing more moves


# --- autoscale ---------------------------------------------------------------------------------------------

def _pool(n: int, fps: float) -> list[ReplicaStatus]:
    return [ReplicaStatus("encoder", f"e{i}", "n", ALIVE, frames_per_s=fps / n) for i in range(n)]


def test_autoscale_adds_after_lag_held_for_the_window_and_then_cools_down() -> None:
    config = AutoscaleConfig(enabled=True, max_lag_s=5, window_s=10, cooldown_s=60, max_replicas=3)
    scaler = Autoscaler(config)
    scaler.acted(now=0.0)
    assert scaler.decide(_pool(1, 8), [9.0], now=100.0) is None  # lagging, not for long enough yet
    action, why = scaler.decide(_pool(1, 8), [9.0], now=110.0)
    assert action == "add" and "lag 9.0 s" in why
    scaler.acted(now=110.0)
    assert scaler.decide(_pool(2, 8), [9.0], now=150.0) is None  # cooling down
    assert scaler.decide(_pool(3, 8), [9.0], now=400.0) is None  # at max_replicas


def test_autoscale_removes_an_idle_replica_but_never_below_the_minimum() -> None:
    scaler = Autoscaler(AutoscaleConfig(enabled=True, idle_fraction=0.3, window_s=5, cooldown_s=0, min_replicas=1))
    scaler.acted(now=0.0)
    assert scaler.decide(_pool(2, 20), [0.5], now=1.0) is None  # busy: the peak is 20 frames/s
    assert scaler.decide(_pool(2, 2), [0.5], now=2.0) is None  # idle, not for the window yet
    assert scaler.decide(_pool(2, 2), [], unheard=1, now=8.0) is None  # a memory restarting: its load unknown
    assert scaler.decide(_pool(2, 2), [0.5], now=9.0) is None  # ... which started the window again
    assert scaler.decide(_pool(2, 2), [0.5], now=14.0)[0] == "remove"
    alone = Autoscaler(AutoscaleConfig(enabled=True, cooldown_s=0, window_s=0))
    alone.acted(now=0.0)
    assert alone.decide(_pool(1, 0), [], now=9.0) is None
    assert Autoscaler(AutoscaleConfig()).decide(_pool(1, 0), [99.0]) is None  # off by default


# --- routing -----------------------------------------------------------------------------------------------

def test_a_replica_on_a_node_ray_declared_dead_is_lost_at_once_not_after_the_silence() -> None:
    now = time.monotonic()
    member = Member("tokdyn-encoder-1", handle=None, node_id="node-b", answered_at=now)
    assert member.up(now) and not member.lost(now)
    member.node_dead = True  # what probe() sets for a member whose node is in Ray's dead list
    assert member.lost(now) and not member.up(now)
    assert not Member("tokdyn-encoder-2", handle=None, answered_at=now).lost(now + LOST_AFTER_S / 2)


def test_router_sends_each_question_to_the_replica_with_fewest_in_flight() -> None:
    router = LLMRouter(lambda: {})
    router.update({"a": "A", "b": "B"}, now=0.0)
    first, second = router.pick(now=0.0)[0], router.pick(now=0.0)[0]
    assert {first, second} == {"a", "b"}  # one each
    router.done(first, now=0.0)
    assert router.pick(now=0.0)[0] == first  # the one that finished is the least busy
    assert router.in_flight() == {"a": 1, "b": 1}


def test_router_skips_a_replica_that_failed_unless_none_other_is_left() -> None:
    router = LLMRouter(lambda: {})
    router.update({"a": "A", "b": "B"}, now=0.0)
    name, _ = router.pick(now=0.0)
    router.done(name, unavailable=True, now=0.0)
    other = ({"a", "b"} - {name}).pop()
    assert all(router.pick(now=1.0)[0] == other for _ in range(3))
    assert name in {router.pick(now=SUSPECT_S + 2)[0] for _ in range(5)}  # suspicion expires
    router.update({}, now=10.0)
    with pytest.raises(LookupError):
        router.pick(now=10.0)


# --- the table ---------------------------------------------------------------------------------------------

def test_table_round_trips_and_refuses_what_it_did_not_write() -> None:
    table = Table(encoders=["tokdyn-encoder-1"], llms=["tokdyn-llm-2"])
    spec = stream_spec({"stream_id": "cam", "url": "rtsp://user:pw@cam/1", "compressor": {"budget": 16}})
    table.streams["cam"] = StreamEntry(spec, "tokdyn-encoder-1", 1.5, "tokdyn-source-cam-3", "tokdyn-memory-cam-4")
    table.next_id = 4
    again = Table.from_json(table.to_json())
    assert again == table and again.new_name("x") == "x-5"
    store = TableStore(MemoryStore())  # the controller's, over the GCS store's interface
    assert store.load() is None
    store.save(table)
    assert store.load() == table
    store.delete()
    assert store.load() is None
    for bad in (b"not json", b'{"format": 2}', b'{"format": 1, "next_id": 0}', b"[]"):
        with pytest.raises(TableError, match="pipeline table: expected"):
            Table.from_json(bad)


# --- the pool on a cluster ---------------------------------------------------------------------------------

@pytest.mark.ray
def test_pools_spread_fail_over_rebalance_and_survive_a_controller_restart() -> None:
    """Three nodes (a head, A and B with one GPU each), encoder.replicas auto, two LLM replicas, six streams."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.actors.control.pools_run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    phases = {p["phase"]: p for p in map(json.loads, (line for line in done.stdout.splitlines()
                                                      if line.startswith('{"phase"')))}
    assert done.returncode == 0, done.stderr[-3000:]

    start = phases["start"]
    assert start["encoder_nodes"] == start["gpu_nodes"] and start["llms"] == 2  # one replica per GPU node
    assert start["controller_on_head"]  # a worker node's loss never takes the control plane with it
    assert sorted(phases["spread"]["per_replica"].values()) == [3, 3] and phases["spread"]["colocated"]
    share = phases["llm_share"]
    assert share["ok"] == 16 and all(n > 0 for n in share["answered"].values())  # both replicas answered

    lost = phases["node_lost"]
    assert len(lost["on_b"]) == 3 and len(lost["replicas_used"]) == 1  # all on the survivor
    assert all(lost["restored"].values())  # B's streams resumed from their checkpoints ...
    assert all(lost["kept"].values())  # ... and no stream has fewer tokens than before the loss
    assert not any(lost["refused"].values())  # their new sources went on from the memories, not from 0

    added = phases["node_added"]
    assert added["new_node"] in added["per_node"] and sorted(added["per_node"].values()) == [3, 3]

    restarted = phases["controller_restarted"]
    assert restarted["new_pid"] and restarted["listed"] == [f"cam{i}" for i in range(6)]
    assert restarted["advanced"]  # every stream went on while the controller was down
    assert restarted["after"] == ["cam0", "cam1", "cam2", "cam3", "cam4", "cam6"]  # managed after the restart
