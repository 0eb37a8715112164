"""The live pipeline on a local Ray cluster: real ZeroMQ, real tiny model, real files, real faults."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import ray
from ray.exceptions import RayActorError

from actors.config import EncoderConfig, LLMConfig, PipelineConfig, TransportConfig
from configs.schema import ConfigError
from actors.errors import PipelineUnavailable, StreamExists, StreamNotFound, StreamNotReady
from actors.workers.memory import checkpoint_file, state_digest
from actors.client.pipeline import start_pipeline
from vlm import ModelConfig
from tests.helpers import wait_for, write_video

pytestmark = pytest.mark.ray
STARTUP_S = 180.0  # actor processes + imports on a busy 2-core machine
FLOW_S = 90.0


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "squares.mp4", seconds=8.0)


@pytest.fixture(scope="module")
def pipeline(ray_local, tmp_path_factory: pytest.TempPathFactory):
    config = PipelineConfig(
        transport=TransportConfig(hwm=8, send_timeout_ms=500),
        model=ModelConfig(path="tiny", max_new_tokens=8),
        encoder=EncoderConfig(batch_frames=16, max_wait_ms=20),
        llm=LLMConfig(max_concurrent=3),
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
    )
    client = start_pipeline(config)
    yield client, config
    client.shutdown()


def status(client, stream_id: str) -> dict:
    return client.stream_status(stream_id).to_dict()


def answer(client, stream_id: str, question: str = "What moves?") -> tuple[str, dict]:
    events = list(client.ask(stream_id, question, max_tokens=6))
    assert events[-1]["type"] == "done" and all(e["type"] == "delta" for e in events[:-1])
    return "".join(e["text"] for e in events[:-1]), events[-1]


def test_file_stream_flows_through_all_actors_and_is_answered(pipeline, video: Path) -> None:
    """Given an 8 s file sampled at 2 Hz (16 frames, 4 chunks), when it is added, then every chunk is
    encoded and compressed, and a question is answered from that stream's snapshot and span."""
    client, _ = pipeline
    client.add_stream({"stream_id": "file", "url": str(video), "live": False})
    final = wait_for(lambda: (s := status(client, "file"))["chunks_compressed"] == 4 and s, STARTUP_S,
                     "all 4 chunks compressed")
    assert final["frames_sampled"] == 16 and final["tokens_seen"] == 16 * 14 * 14
    assert final["tokens_held"] <= 32 and final["compression_ratio"] >= 16 * 14 * 14 / 32
    assert final["t_start"] == 0.0 and final["t_end"] == pytest.approx(7.5)
    assert final["lag_s"] is not None and set(final["stage_s"]) >= {"encode", "compress", "transport"}
    text, done = wait_for(lambda: _answer_or_none(client, "file"), FLOW_S, "an answer")
    assert done["span"] == {"t_start": 0.0, "t_end": pytest.approx(7.5)}
    assert done["snapshot_version"] == final["snapshot_version"]
    assert done["usage"]["visual_tokens"] == final["tokens_held"] and done["usage"]["completion_tokens"] >= 1
    assert isinstance(text, str)
    # several questions at once: both generators run side by side, each on one consistent snapshot
    llm = client.llm()
    gens = [llm.ask.remote("file", [{"role": "user", "content": q}], 6, 0.0) for q in ("Who?", "Where?")]
    finals = [[ray.get(ref) for ref in gen][-1] for gen in gens]
    assert [f["snapshot_version"] for f in finals] == [final["snapshot_version"]] * 2
    client.remove_stream("file")


def test_two_streams_keep_separate_memories_and_removal_releases_actors(pipeline, tmp_path: Path) -> None:
    client, config = pipeline
    for sid, seed in (("left", 1), ("right", 2)):
        client.add_stream({"stream_id": sid, "url": str(write_video(tmp_path / f"{sid}.mp4",
                                         seconds=4.0, seed=seed)), "live": False})
    for sid in ("left", "right"):
        wait_for(lambda sid=sid: status(client, sid)["chunks_compressed"] == 2, STARTUP_S, f"{sid} done")
    handles = {sid: client.stream_handles(sid) for sid in ("left", "right")}
    digests = {sid: ray.get(h["memory"].state_digest.remote()) for sid, h in handles.items()}
    assert digests["left"] != digests["right"]
    for sid in ("left", "right"):  # each memory is exactly its own checkpoint
        assert digests[sid] == state_digest(checkpoint_file(config.checkpoint_dir, sid).read_bytes())
    assert {s.stream_id for s in client.list_streams()} >= {"left", "right"}

    client.remove_stream("left")
    for handle in handles["left"].values():
        with pytest.raises(RayActorError):
            ray.get(handle.status.remote(), timeout=30)
    assert not checkpoint_file(config.checkpoint_dir, "left").exists()
    with pytest.raises(StreamNotFound):
        wait_for(lambda: answer(client, "left") and False, 10, "StreamNotFound")
    _, done = answer(client, "right")  # the other stream is untouched
    assert done["span"]["t_end"] == pytest.approx(3.5)
    client.remove_stream("right")


def test_killed_compressor_restores_its_checkpoint_and_the_stream_continues(pipeline, tmp_path: Path) -> None:
    """kill -9 the memory actor mid-stream: Ray restarts it, it restores exactly the checkpoint (base + key
    map), gets re-wired, and the stream goes on from there."""
    client, config = pipeline
    video = write_video(tmp_path / "long.mp4", seconds=12.0, seed=3)
    client.add_stream({"stream_id": "crash", "url": str(video), "live": False})
    handles = client.stream_handles("crash")
    wait_for(lambda: (status(client, "crash")["chunks_compressed"] or 0) >= 2, STARTUP_S, "2 chunks")
    ray.get(handles["source"].pause.remote())
    path = checkpoint_file(config.checkpoint_dir, "crash")
    # Quiet: every chunk sent is compressed, and the state equals the checkpoint on disk.
    wait_for(lambda: (s := status(client, "crash"))["chunks_sent"] == s["chunks_compressed"], FLOW_S,
             "the chunks in flight")
    settled = wait_for(lambda: _settled(handles["memory"], path), FLOW_S, "the memory to settle")
    before = status(client, "crash")
    old_pid = ray.get(handles["memory"].pid.remote())
    os.kill(old_pid, signal.SIGKILL)

    new_pid = wait_for(lambda: _pid_or_none(handles["memory"]) not in (None, old_pid) and
                       _pid_or_none(handles["memory"]), FLOW_S, "the restarted memory actor")
    assert new_pid != old_pid
    after = status(client, "crash")
    assert after["restored"] is True
    assert ray.get(handles["memory"].state_digest.remote()) == settled  # base + key map = the checkpoint
    assert after["tokens_seen"] == before["tokens_seen"]
    assert after["snapshot_version"] == before["snapshot_version"]
    assert after["chunks_compressed"] == before["chunks_compressed"]  # counted from the restored state, not 0

    ray.get(handles["source"].resume.remote())
    final = wait_for(lambda: (s := status(client, "crash"))["tokens_seen"] == 24 * 196 and s, FLOW_S,
                     "the rest of the stream after the restart")
    assert final["t_end"] == pytest.approx(11.5)
    assert final["chunks_compressed"] == 6  # 24 frames in chunks of 4, across the restart
    _, done = answer(client, "crash")
    assert done["span"]["t_end"] == pytest.approx(11.5)
    client.remove_stream("crash")


def test_killed_source_goes_on_from_the_memory_not_from_the_start(pipeline, tmp_path: Path) -> None:
    """kill -9 the source actor of a file played live, mid-file: Ray restarts it, it asks the stream's memory
    where the stream stands and goes on from there. Every frame is compressed once; none comes again from the file's
    start (the memory would refuse those as time going backwards) and no chunk number is skipped."""
    client, _ = pipeline
    FRAMES = 40  # 20 s sampled at 2 frames/s, played at its own pace: the pause lands mid-file
    video = write_video(tmp_path / "resume.mp4", seconds=20.0, seed=5)
    client.add_stream({"stream_id": "resume", "url": str(video), "live": True})
    handles = client.stream_handles("resume")
    wait_for(lambda: (status(client, "resume")["chunks_compressed"] or 0) >= 2, STARTUP_S, "2 chunks")
    ray.get(handles["source"].pause.remote())
    wait_for(lambda: (s := status(client, "resume"))["chunks_sent"] == s["chunks_compressed"], FLOW_S,
             "the chunks in flight")
    before = status(client, "resume")
    assert before["tokens_seen"] < FRAMES * 196  # the kill lands mid-file
    os.kill(ray.get(handles["source"].pid.remote()), signal.SIGKILL)

    final = wait_for(lambda: (s := status(client, "resume"))["tokens_seen"] == FRAMES * 196 and s, FLOW_S,
                     "the rest of the file after the source restarted")
    assert final["t_end"] == pytest.approx(19.5) and final["chunks_compressed"] == FRAMES // 4
    assert final["bad_messages"] == 0 and final["sequence_gaps"] == 0
    client.remove_stream("resume")


def _settled(memory, path: Path) -> str | None:
    first = ray.get(memory.state_digest.remote())
    if not path.exists() or state_digest(path.read_bytes()) != first:
        return None
    return first if ray.get(memory.state_digest.remote()) == first else None


def _pid_or_none(handle) -> int | None:
    try:
        return ray.get(handle.pid.remote(), timeout=5)
    except (RayActorError, ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
        return None


def test_killed_llm_answers_again_after_restart(pipeline, tmp_path: Path) -> None:
    client, _ = pipeline
    video = write_video(tmp_path / "short.mp4", seconds=2.0, seed=4)
    client.add_stream({"stream_id": "q", "url": str(video), "live": False})
    wait_for(lambda: _answer_or_none(client, "q"), STARTUP_S, "a first answer")
    llm = client.llm()
    old_pid = ray.get(llm.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: _pid_or_none(llm) not in (None, old_pid), FLOW_S, "the restarted LLM")
    # The restarted LLM learns the stream again from the client and gets the re-published snapshot.
    _, done = wait_for(lambda: _answer_or_none(client, "q"), FLOW_S, "an answer after the restart")
    assert done["span"]["t_end"] == pytest.approx(1.5)
    client.remove_stream("q")


def _answer_or_none(client, stream_id: str):
    """An answer, or None while the stream has no snapshot yet or the LLM is catching up (retry)."""
    try:
        return answer(client, stream_id)
    except (StreamNotReady, StreamNotFound, PipelineUnavailable):
        return None


def test_bad_spec_and_duplicates_are_rejected(pipeline, video: Path) -> None:
    client, _ = pipeline
    with pytest.raises(ConfigError, match="stream.sample_rate_hz: expected > 0"):
        client.add_stream({"stream_id": "x", "url": str(video), "sample_rate_hz": 0})
    client.add_stream({"stream_id": "dup", "url": str(video), "live": False})
    with pytest.raises(StreamExists, match="already exists"):
        client.add_stream({"stream_id": "dup", "url": str(video)})
    with pytest.raises(StreamNotFound, match="stream 'nope'"):
        client.remove_stream("nope")
    client.remove_stream("dup")


@pytest.mark.rtsp
def test_rtsp_stream_keeps_running_through_a_server_kill_and_resumes(pipeline) -> None:
    """A live RTSP camera (real gst-rtsp-server on loopback) flows through all actors; the server is
    killed: the pipeline keeps answering from the memory, and the stream resumes when the server returns."""
    from testkit.rtsp_server import RtspServer, rtsp_server_available

    ok, why = rtsp_server_available()
    if not ok:
        pytest.skip(why)
    client, _ = pipeline
    with RtspServer(width=320, height=240, fps=15) as server:
        client.add_stream({
            "stream_id": "cam", "url": server.url, "sample_rate_hz": 2.0,
            "source": {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "reconnect_initial_s": 0.2,
                       "reconnect_max_s": 1.0}})
        wait_for(lambda: (status(client, "cam")["chunks_compressed"] or 0) >= 2, STARTUP_S, "RTSP chunks")
        server.kill()
        down = wait_for(lambda: (s := status(client, "cam"))["reconnect_attempts"] and s, FLOW_S, "a reconnect")
        assert down["state"] in ("reconnecting", "connecting", "streaming")
        _, done = answer(client, "cam")  # the memory still answers while the camera is away
        assert done["snapshot_version"] >= 2
        server.restart()
        resumed = wait_for(lambda: (s := status(client, "cam"))["chunks_compressed"] >= down["chunks_compressed"]
                           + 2 and s, FLOW_S, "chunks after the server came back")
        assert resumed["t_end"] > down["t_end"]
        client.remove_stream("cam")
