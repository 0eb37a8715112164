"""File, HTTP and synthetic sources: timestamps, content, sampling grid, faults, policies, redaction."""

from __future__ import annotations

import functools
import http.server
import random
import threading
import time

import numpy as np
import pytest

from stream.config import SourceConfig, redact_text, redact_url
from stream.frames import SourceState
from stream.sampling import Sampler, chunks
from stream.sources import SourceError, backoff_delay, open_source
from stream.synthetic import COLOURS, SyntheticVideo, write_video

from .helpers import SMALL, reference_selection


@pytest.mark.parametrize("suffix, codec", [("mp4", "h264"), ("webm", "vp9"), ("mkv", "h264"), ("avi", "mpeg4")])
def test_file_frames_timestamps_and_content(video_files, suffix, codec):
    """Given a PyAV-written file, when it is read, then every frame comes back with the written timestamp,
    the right size and the squares where the synthetic video put them."""
    path, written = video_files[suffix]
    source = open_source(str(path))
    frames = list(source)
    assert [f.pts for f in frames] == pytest.approx(written, abs=1e-9)
    assert np.allclose(written, np.arange(60) / 30, atol=1e-3)  # mkv/webm store milliseconds
    assert [f.index for f in frames] == list(range(60))
    status = source.status()
    assert (status.state, status.codec, status.width, status.height) == (SourceState.ENDED, codec, 160, 120)
    assert status.fps == pytest.approx(30, rel=0.01) and status.decoded == 60 and status.dropped == 0
    centre = SMALL.side // 2
    for f in frames[::15]:
        corners = SMALL.positions(round(f.pts * 30) / 30)
        for i, ((x, y), colour) in enumerate(zip(corners, COLOURS)):
            cx, cy = x + centre, y + centre
            if any(0 <= cx - ox < SMALL.side and 0 <= cy - oy < SMALL.side for ox, oy in corners[i + 1:]):
                continue  # a later square is drawn over this one's centre
            pixel = f.image[cy, cx].astype(int)
            assert np.abs(pixel - colour).max() < 60, (suffix, f.pts, pixel, colour)


@pytest.mark.parametrize("suffix", ["mp4", "webm", "avi"])
def test_file_sampled_timestamps_on_the_grid(video_files, suffix):
    path, written = video_files[suffix]
    got = np.concatenate([c.timestamps for c in chunks(str(path), rate_hz=3, frames_per_chunk=4, size=32)])
    np.testing.assert_allclose(got, reference_selection(written, 3), atol=1e-9)
    np.testing.assert_allclose(got, np.ceil(np.arange(6) * 10 - 1e-9) / 30, atol=1e-3)  # k/3 s falls on frame 10k


def test_variable_frame_rate_file(tmp_path):
    """A VFR mkv (gaps of 20..120 ms): timestamps come back as written, sampling follows the grid."""
    rng = np.random.default_rng(3)
    stamps = np.round(np.cumsum(np.r_[0, rng.uniform(0.02, 0.12, 59)]), 3)
    video = SyntheticVideo(width=64, height=48)
    written = write_video(tmp_path / "vfr.mkv", ((video.frame(i)[0], t) for i, t in enumerate(stamps)))
    np.testing.assert_allclose(written, stamps, atol=1e-9)
    source = open_source(str(tmp_path / "vfr.mkv"))
    sampler = Sampler(2.0)
    kept = [f.pts for f in source if sampler.keep(f.pts)]
    np.testing.assert_allclose(kept, reference_selection(list(stamps), 2.0), atol=1e-9)


def test_real_clip_vtest(vtest):
    """The real vtest.avi: 768x576 at 10 fps, sampled at 2 Hz gives exactly k * 0.5 s for 79.5 s."""
    source = open_source(str(vtest))
    stamps = np.concatenate([c.timestamps for c in chunks(source, 2, 8, size=64)])
    status = source.status()
    assert (status.width, status.height, status.fps, status.state) == (768, 576, 10.0, SourceState.ENDED)
    assert status.decoded == 795 and status.sampled == 159
    np.testing.assert_allclose(stamps, np.arange(159) * 0.5, atol=1e-9)


@pytest.mark.parametrize("damage, error", [
    ("truncate_mp4", "Invalid data"),  # mp4 index (moov) is at the end: gone
    ("truncate_mkv", "truncated"),  # mkv declares 2 s but ends early
    ("garbage_mkv", "truncated or corrupt|Invalid data"),
    ("missing", "No such file"),
    ("not_video", "Invalid data|no video stream"),
])
def test_broken_files_end_with_clear_error(video_files, tmp_path, damage, error):
    mp4, mkv = video_files["mp4"][0].read_bytes(), video_files["mkv"][0].read_bytes()
    data = {"truncate_mp4": mp4[: len(mp4) // 2], "truncate_mkv": mkv[: len(mkv) // 2],
            "garbage_mkv": mkv[:1500] + bytes(np.random.default_rng(0).integers(0, 256, len(mkv) - 1500, np.uint8)),
            "not_video": b"this is not a video\n" * 100}.get(damage)
    path = tmp_path / f"{damage}.bin"
    if data is not None:
        path.write_bytes(data)
    source = open_source(str(path))
    started = time.monotonic()
    with pytest.raises(SourceError, match=error):
        for _ in source:
            pass
    assert time.monotonic() - started < 20
    status = source.status()
    assert status.state is SourceState.FAILED and status.last_error


def test_http_url_same_path(video_files):
    """Another FFmpeg URL (HTTP) goes through the same path; a file over HTTP ends instead of reconnecting."""
    folder = video_files["mkv"][0].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # mkv: streamable without range requests (this little server has none; mp4's index is at the end)
        source = open_source(f"http://127.0.0.1:{server.server_port}/synthetic.mkv")
        assert not source.live and source.policy.value == "wait" and len(list(source)) == 60
        assert source.status().state is SourceState.ENDED and source.status().reconnects == 0
    finally:
        server.shutdown()
        server.server_close()


def test_realtime_pacing_and_loop(video_files):
    """A looped file paced as live: wall time follows media time; timestamps keep increasing across loops."""
    path, _ = video_files["avi"]
    source = open_source(str(path), SourceConfig(realtime=True, loop=True))
    started = time.monotonic()
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 75:  # 2.5 s of media: 1.25 passes through a 2 s file
            break
    elapsed = time.monotonic() - started
    source.close()
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:])) and pts[-1] == pytest.approx(74 / 30, abs=1e-6)
    assert elapsed >= 0.9 * (pts[-1] - pts[0])
    assert source.status().state is SourceState.ENDED and source.status().reconnects == 0


def test_drop_oldest_counts_drops_and_freshest_wins():
    """A consumer slower than the source: frames are dropped (counted), none handed out is stale."""
    source = open_source("synthetic://?width=64&height=48&fps=200&seconds=1.5",
                         SourceConfig(realtime=True, policy="drop_oldest", buffer_frames=4, max_staleness_s=0.2))
    got = []
    for frame in source:
        assert time.time() - frame.arrival <= 0.2 + 0.1  # staleness limit (+ slack for a busy machine)
        got.append(frame)
        time.sleep(0.02)  # a deliberately slow consumer (simulated work, not waiting for a condition)
    status = source.status()
    assert status.decoded == 300 and status.dropped > 0
    assert len(got) + status.dropped == status.decoded
    assert all(b.pts > a.pts for a, b in zip(got, got[1:]))


def test_abandoned_live_iteration_stops_the_reader():
    source = open_source("synthetic://?width=32&height=32&fps=100", SourceConfig(realtime=True))
    frames = iter(source)
    next(frames)
    reader = source._reader
    frames.close()  # what a `break` out of a for loop does once the iterator is dropped
    reader.join(10)
    assert not reader.is_alive() and source.status().state is SourceState.ENDED


def test_synthetic_source_and_bad_url():
    source = open_source("synthetic://?width=32&height=32&fps=5&seconds=1&shapes=2")
    frames = list(source)
    assert len(frames) == 5 and frames[3].pts == pytest.approx(0.6) and frames[0].image.shape == (32, 32, 3)
    assert source.policy.value == "wait" and not source.live
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        open_source("synthetic://?colour=red")
    with pytest.raises(ValueError, match="fps: expected > 0"):
        open_source("synthetic://?fps=0")


def test_status_events_and_callback(video_files):
    events = []
    source = open_source(str(video_files["mp4"][0]), on_event=events.append)
    list(source)
    assert [e.state.value for e in events] == ["streaming", "ended"]
    assert [e.state.value for e in source.status().events] == ["connecting", "streaming", "ended"]
    assert source.status().to_dict()["state"] == "ended"
    with pytest.raises(RuntimeError, match="iterated once"):
        list(source)


def test_redaction_everywhere():
    url = "rtsp://admin:hunter2@127.0.0.1:1/live?token=s3cret&channel=1"
    assert redact_url(url) == "rtsp://admin:***@127.0.0.1:1/live?token=***&channel=1"
    assert "hunter2" not in redact_text(f"failed to open {url} (hunter2)", url)
    source = open_source(url)
    with pytest.raises(SourceError) as err:
        next(iter(source))
    status = source.status()
    shown = " ".join([str(err.value), status.url, status.last_error or "", *[e.detail for e in status.events]])
    assert "hunter2" not in shown and "s3cret" not in shown and "admin:***@" in shown


def test_backoff_is_capped_exponential_with_jitter():
    rng = random.Random(0)
    delays = [backoff_delay(n, 0.25, 4.0, 0.5, rng) for n in range(10)]
    ceilings = [min(4.0, 0.25 * 2**n) for n in range(10)]
    assert all(c * 0.5 <= d <= c for d, c in zip(delays, ceilings))
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not lockstep
    assert backoff_delay(10_000, 0.25, 4.0, 0.0, rng) == 4.0


def test_config_validation():
    with pytest.raises(ValueError, match="policy: expected one of"):
        SourceConfig(policy="newest")
    with pytest.raises(ValueError, match="transport: expected 'tcp' or 'udp', got 'sctp'"):
        SourceConfig(transport="sctp")
    with pytest.raises(ValueError, match="reconnect_max_s"):
        SourceConfig(reconnect_initial_s=5, reconnect_max_s=1)


def test_decoder_time_counted_for_every_decoded_frame(video_files):
    """Given a file source whose sampler keeps no frame, when it is read halfway and then to the end, then
    the decoder time counted grows (skipped frames are decoded too) and a synthetic source reports none."""
    source = open_source(str(video_files["mp4"][0]))
    source.set_sampler(lambda pts: pts < 1.0)  # the first 30 of 60 frames
    frames = iter(source)
    assert source.status().decode_s == 0.0
    for _ in range(30):
        next(frames)
    halfway = source.status().decode_s
    assert list(frames) == [] and source.status().decoded == 60
    assert 0.0 < halfway < source.status().decode_s == source.status().to_dict()["decode_s"]
    synthetic = open_source("synthetic://?width=32&height=32&fps=5&seconds=1")
    list(synthetic)
    assert synthetic.status().decode_s is None
