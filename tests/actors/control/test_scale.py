"""Scaling a running pipeline on the local Ray cluster: replicas added and removed by hand and by the autoscaler,
streams re-assigned with them and never stopping, requests the cluster cannot host refused, a second start
adopting the running pipeline."""

from __future__ import annotations

import collections
import os
import signal

import pytest
import ray

from actors.config import AutoscaleConfig, EncoderConfig, LLMConfig, PipelineConfig
from actors.errors import PipelineUnavailable, ScaleRefused
from actors.client.pipeline import start_pipeline
from configs.schema import ConfigError
from tests.helpers import wait_for
from vlm import ModelConfig

pytestmark = pytest.mark.ray
STARTUP_S = 180.0
LIVE = {"url": "synthetic://?width=64&height=48&fps=4", "live": True, "sample_rate_hz": 2.0, "frames_per_chunk": 2}


def _chunks(client, sid: str) -> int:
    return client.stream_status(sid).chunks_compressed or 0


def _outcome(client) -> str:
    try:
        return list(client.ask("b", "What moves?", max_tokens=2))[-1]["type"]
    except PipelineUnavailable:
        return "unavailable"


def _encoders(client) -> list:
    return [r for r in client.replicas() if r.role == "encoder"]


def test_scale_by_hand_moves_streams_and_refuses_what_the_cluster_cannot_host(ray_local, tmp_path) -> None:
    config = PipelineConfig(model=ModelConfig(path="tiny", max_new_tokens=4),
                            encoder=EncoderConfig(num_cpus=0.5), checkpoint_dir=str(tmp_path))
    client = start_pipeline(config)
    try:
        for sid in ("a", "b"):
            client.add_stream({"stream_id": sid, **LIVE})
        wait_for(lambda: all(_chunks(client, sid) > 0 for sid in "ab"), STARTUP_S, "both streams compressing")
        assert len(set(client.assignments().values())) == 1

        after = client.scale("encoder", 2)
        assert len([r for r in after if r.role == "encoder"]) == 2
        assert len(set(client.assignments().values())) == 2  # rebalanced: one stream each
        before = {sid: _chunks(client, sid) for sid in "ab"}
        wait_for(lambda: all(_chunks(client, sid) > before[sid] for sid in "ab"), STARTUP_S,
                 "both streams advancing on their replicas")
        served = {r.name: r.streams for r in _encoders(client)}
        assert sorted(served.values()) == [1, 1]

        client.scale("encoder", 1)
        (survivor,) = _encoders(client)
        assert set(client.assignments().values()) == {survivor.name} and survivor.streams == 2
        before = {sid: _chunks(client, sid) for sid in "ab"}
        wait_for(lambda: all(_chunks(client, sid) > before[sid] for sid in "ab"), STARTUP_S,
                 "both streams advancing on the one replica left")

        again = start_pipeline(config)  # a second `tokdyn serve` on this cluster adopts, starts nothing
        assert again.adopted and not client.adopted
        assert again.assignments() == client.assignments() and len(_encoders(again)) == 1

        with pytest.raises(ScaleRefused, match="not enough free resources .* encoder"):
            client.scale("encoder", 64)  # 32 CPUs' worth of replicas on a 4-CPU cluster: nothing started
        assert len(_encoders(client)) == 1
        with pytest.raises(ConfigError, match="role: expected one of"):
            client.scale("decoder", 2)
        with pytest.raises(ConfigError, match="replicas: expected an integer 1..64"):
            client.scale("llm", 0)

        client.scale("llm", 2)
        llms = {r.name for r in client.replicas() if r.role == "llm"}
        wait_for(lambda: all(r.streams == 2 for r in client.replicas() if r.role == "llm"), STARTUP_S,
                 "both LLM replicas holding both streams' snapshots")
        answered = [list(client.ask("a", "What moves?", max_tokens=2))[-1]["type"] for _ in range(4)]
        assert answered == ["done"] * 4 and len(llms) == 2
        # One LLM replica's process dies: at most the question sent to it fails (503, retry); the rest go on.
        victim = ray.get_actor(sorted(llms)[0], namespace=config.ray.namespace)
        os.kill(ray.get(victim.pid.remote()), signal.SIGKILL)
        outcomes = [_outcome(client) for _ in range(6)]
        assert outcomes.count("done") >= 5 and set(outcomes) <= {"done", "unavailable"}
        actions = [(e.role, e.action, e.reason) for e in client.scale_events()]
        assert actions.count(("encoder", "add", "requested")) == 1
        assert actions.count(("encoder", "remove", "requested")) == 1
        assert ("llm", "add", "requested") in actions
        assert any(action == "reassign" for _, action, _ in actions)
        totals = client.scale_event_totals()  # what /metrics counts: every event, not only those still listed
        assert totals == dict(collections.Counter((role, action) for role, action, _ in actions))
    finally:
        client.shutdown()


def test_autoscale_adds_a_replica_while_streams_lag_removes_it_once_idle_and_records_why(ray_local,
                                                                                         tmp_path) -> None:
    # Every live stream lags a few ms at least: a 1 ms bound held for 0 s asks for a replica at once; while
    # the stream plays it stays "slow", so nothing is removed until it is gone and the pool's frames/s fall.
    autoscale = AutoscaleConfig(enabled=True, max_lag_s=0.001, window_s=0, cooldown_s=0, max_replicas=2)
    config = PipelineConfig(model=ModelConfig(path="tiny", max_new_tokens=4),
                            encoder=EncoderConfig(autoscale=autoscale), llm=LLMConfig(),
                            checkpoint_dir=str(tmp_path))
    client = start_pipeline(config)
    try:
        client.add_stream({"stream_id": "cam", **LIVE})
        wait_for(lambda: len(_encoders(client)) == 2, STARTUP_S, "the autoscaler's second replica")
        (event,) = [e for e in client.scale_events() if e.action == "add"]
        assert event.role == "encoder" and event.reason.startswith("autoscale: lag") and event.replicas == 2
        assert len(_encoders(client)) == 2  # max_replicas holds: no third one
        assert ray.get(ray.get_actor(event.replica, namespace=config.ray.namespace).info.remote())["image_size"]
        # when the load goes away, the pool shrinks back to min_replicas, and says why
        client.remove_stream("cam")
        wait_for(lambda: len(_encoders(client)) == 1, STARTUP_S, "the autoscaler to remove the idle replica")
        (removed,) = [e for e in client.scale_events() if e.action == "remove"]
        assert removed.reason.startswith("autoscale: ") and "busiest" in removed.reason and removed.replicas == 1
    finally:
        client.shutdown()


def test_shutdown_without_the_controller_still_stops_every_detached_actor(ray_local, tmp_path) -> None:
    config = PipelineConfig(model=ModelConfig(path="tiny", max_new_tokens=4), checkpoint_dir=str(tmp_path))
    client = start_pipeline(config)
    client.add_stream({"stream_id": "cam", **LIVE})
    names = [r.name for r in client.replicas()]
    handles = client.stream_handles("cam")
    ray.kill(client.controller, no_restart=True)  # gone for good: nobody will stop the detached actors ...
    client.shutdown(timeout_s=5)  # ... but the table in Ray's store names them all
    for name in names:
        wait_for(lambda name=name: _gone(name, config.ray.namespace), 60, f"{name} killed")
    for handle in handles.values():
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(handle.where.remote(), timeout=60)


def _gone(name: str, namespace: str) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False
