"""Streams placed on stream hosts (`streams_per_host`, actors/control/hosts.py): the packing policy, the table,
and, through the real pipeline, two streams in one host process that advance independently while one of them
crashes or is removed, and both come back when the host's process is killed."""

from __future__ import annotations

import os
import signal

import pytest
import ray

from actors.client.pipeline import start_pipeline
from actors.config import EncoderConfig, LLMConfig, PipelineConfig, StreamSpec, TransportConfig
from actors.control.hosts import Host, pick_host
from actors.control.table import StreamEntry, Table
from actors.workers.host_remote import HOST_ENV
from actors.workers.memory import checkpoint_file
from tests.helpers import wait_for
from vlm import ModelConfig

STARTUP_S = 180.0  # actor processes + imports on a busy 2-core machine
FLOW_S = 90.0
LIVE = {"url": "synthetic://?width=64&height=48&fps=4", "live": True, "sample_rate_hz": 2.0, "frames_per_chunk": 2}


def test_pick_host_packs_the_fullest_host_of_the_node_and_starts_one_when_all_are_full() -> None:
    hosts = [Host("h1", None, "n1", {"a"}), Host("h2", None, "n1", {"b", "c"}), Host("h3", None, "n2", set())]
    assert pick_host(hosts, "n1", 3) == "h2"  # the fullest that still fits: fewest processes
    assert pick_host(hosts, "n1", 2) == "h1"
    assert pick_host(hosts, "n2", 2) == "h3"  # only its own node's hosts
    assert pick_host(hosts, "n1", 1) is None  # all full: start one
    assert pick_host(hosts, "n3", 4) is None


def test_the_table_keeps_a_streams_host_and_reads_tables_from_before_hosts() -> None:
    table = Table(3, ["tokdyn-encoder-1"], ["tokdyn-llm-2"],
                  {"cam": StreamEntry(StreamSpec("cam", "synthetic://"), "tokdyn-encoder-1", 1.5, "", "", "tokdyn-host-3")})
    assert Table.from_json(table.to_json()) == table
    old = table.to_json().replace(b', "host": "tokdyn-host-3"', b"")
    assert Table.from_json(old).streams["cam"].host == ""


@pytest.fixture(scope="module")
def hosted(ray_local, tmp_path_factory: pytest.TempPathFactory):
    config = PipelineConfig(
        transport=TransportConfig(hwm=8, send_timeout_ms=500), model=ModelConfig(path="tiny", max_new_tokens=4),
        encoder=EncoderConfig(batch_frames=16, max_wait_ms=20), llm=LLMConfig(max_concurrent=2),
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")), streams_per_host=4)
    client = start_pipeline(config)
    yield client, config
    client.shutdown()


def chunks(client, sid: str) -> int:
    return client.stream_status(sid).chunks_compressed or 0


def advancing(client, sids: list[str], what: str) -> dict[str, int]:
    """Wait until every stream in `sids` compressed 2 more chunks than now; returns the counts then."""
    before = {sid: chunks(client, sid) for sid in sids}
    return wait_for(lambda: (now := {sid: chunks(client, sid) for sid in sids}) and
                    all(now[sid] >= before[sid] + 2 for sid in sids) and now, FLOW_S, what)


def _pid_or_none(client, sid: str) -> int | None:
    """The process of `sid`'s memory now (None while it is being placed again or does not answer)."""
    try:
        return ray.get(client.stream_handles(sid)["memory"].pid.remote(), timeout=10)
    except Exception:  # restarting, moving, or the controller busy: not there yet
        return None


def _break_memory(host, stream_id: str) -> None:
    """Inside the host's process: the stream's next memory update raises (a bug in one stream)."""
    def boom(*args, **kwargs):
        raise RuntimeError("a bug in one stream's update")

    host.worker(stream_id, "memory").compressor.update = boom


def test_two_streams_on_one_host_advance_alone_through_a_crash_a_removal_and_a_killed_host(hosted) -> None:
    client, config = hosted
    # given two live streams, placed on one host process
    for sid in ("a", "b"):
        client.add_stream({"stream_id": sid, **LIVE})
    handles = {sid: client.stream_handles(sid) for sid in ("a", "b")}
    host = handles["a"]["memory"].host
    pids = {ray.get(h[role].pid.remote()) for h in handles.values() for role in ("source", "memory")}
    assert len(pids) == 1  # one process for both streams' sources and memories
    environ = dict(item.split("=", 1) for item in
                   open(f"/proc/{next(iter(pids))}/environ").read().split("\0") if "=" in item)
    assert {k: environ.get(k) for k in HOST_ENV} == HOST_ENV  # glibc settings that halve memory per stream
    wait_for(lambda: chunks(client, "a") >= 2 and chunks(client, "b") >= 2, STARTUP_S, "both streams compressing")

    # when a's memory crashes on its next chunk, then b keeps advancing and a is built again alone
    ray.get(host.__ray_call__.remote(_break_memory, "a"))
    wait_for(lambda: ray.get(host.restarts.remote())["a"]["memory"] == 1, FLOW_S, "a's memory built again")
    advancing(client, ["a", "b"], "both streams advancing after a's crash")
    assert ray.get(host.restarts.remote())["b"] == {"source": 0, "memory": 0}
    assert client.stream_status("a").restored is True  # from its checkpoint, in the same process
    assert ray.get(host.pid.remote()) in pids

    # when a is removed, then b goes on in the same process and a's checkpoint is gone
    client.remove_stream("a")
    advancing(client, ["b"], "b advancing after a's removal")
    assert ray.get(host.stream_ids.remote()) == ["b"] and ray.get(host.pid.remote()) in pids
    assert not checkpoint_file(config.checkpoint_dir, "a").exists()

    # when the host's process is killed, then b is started again (on a new host) from its checkpoint
    before = chunks(client, "b")
    os.kill(next(iter(pids)), signal.SIGKILL)
    wait_for(lambda: _pid_or_none(client, "b") not in (None, *pids), FLOW_S, "b placed again")
    # (counted from before the kill: right after the move its status may still read 0 chunks, then jump to the
    # restored count, which a count taken then would take for progress)
    wait_for(lambda: chunks(client, "b") >= before + 2, FLOW_S,
             "b advancing past its checkpoint after its host was killed")
    assert client.stream_status("b").restored is True
    client.remove_stream("b")
