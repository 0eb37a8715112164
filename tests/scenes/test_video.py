"""Scenes as video: the scene:// camera through stream.sources, and an H.264 file of a scene."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.scene import SceneSpec, make_scene
from scenes.shapes import COLOUR_RGB
from scenes.video import SceneVideo, write_scene
from stream.config import SourceConfig
from stream.frames import SourceState
from stream.sampling import chunks
from stream.sources import is_live_url, open_source


def test_scene_camera_through_open_source():
    """Given scene://, when the source is read, then every frame carries its exact media time and is the
    scene's rendering at that time; a 2 Hz sampler keeps the half-second grid."""
    url = "scene://?seed=7&seconds=3&width=160&height=120&fps=10"
    scene = make_scene(SceneSpec.from_url(url))
    source = open_source(url)
    frames = list(source)
    assert [f.pts for f in frames] == [i / 10 for i in range(30)]
    for frame in frames[::7]:
        assert np.array_equal(frame.image, scene.render(frame.pts))
    status = source.status()
    assert (status.state, status.width, status.height, status.fps) == (SourceState.ENDED, 160, 120, 10.0)
    got = np.concatenate([c.timestamps for c in chunks(url, rate_hz=2, frames_per_chunk=4, size=56)])
    np.testing.assert_array_equal(got, np.arange(6) * 0.5)
    assert is_live_url(url)


def test_scene_camera_paced_as_live():
    """Paced (realtime) like a camera: drop_oldest policy, and the frames still carry media time."""
    source = open_source("scene://?seed=1&seconds=1&width=64&height=64&fps=10", SourceConfig(realtime=True))
    assert source.live
    assert [round(f.pts, 6) for f in source][-1] == 0.9


def test_bad_scene_url_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a seed"):
        open_source("scene://?seconds=3")


def test_h264_round_trip(tmp_path):
    """Given a scene written to H.264, when the file is read back, then timestamps are the scene's and
    each object's colour is at its centre (within codec error)."""
    spec = SceneSpec(seed=7, seconds=2, width=160, height=120, fps=10)
    written = write_scene(tmp_path / "scene.mp4", spec)
    np.testing.assert_allclose(written, np.arange(20) / 10, atol=1e-3)
    frames = list(open_source(str(tmp_path / "scene.mp4")))
    scene = SceneVideo(spec).scene
    assert len(frames) == 20
    for frame in frames[::5]:
        t = round(frame.pts * 10) / 10
        assert np.abs(frame.image.astype(int) - scene.render(t)).mean() < 6
        for state in scene.state_at(t):
            x, y = (int(v) for v in state.centre)
            assert np.abs(frame.image[y, x].astype(int) - COLOUR_RGB[state.colour]).max() < 50, state


@pytest.mark.rtsp
def test_scene_file_served_over_rtsp(tmp_path):
    """Given a scene's H.264 file served by a real RTSP server on loopback, when a source reads it, then
    every frame is one of the scene's frames (within codec error), in order."""
    from testkit.rtsp_server import RtspServer, rtsp_server_available

    available, why = rtsp_server_available()
    if not available:
        pytest.skip(why or "no RTSP server")
    spec = SceneSpec(seed=7, seconds=4, width=160, height=120, fps=10)
    write_scene(tmp_path / "scene.mp4", spec)
    scene = make_scene(spec)
    renders = np.stack([scene.render(i / spec.fps) for i in range(spec.num_frames)]).astype(np.int16)
    config = SourceConfig(open_timeout_s=5.0, read_timeout_s=2.0)
    with RtspServer(source_file=tmp_path / "scene.mp4", width=160, height=120, fps=10) as server:
        with open_source(server.url, config) as source:
            matched = []
            for frame in source:
                errors = np.abs(renders - frame.image.astype(np.int16)).mean(axis=(1, 2, 3))
                assert errors.min() < 8, errors.min()
                matched.append(int(errors.argmin()))
                if len(matched) == 10:
                    break
    # A live server re-encodes at its own pace (it may repeat a frame, and starts wherever it is): the
    # frames must still be the scene's, in order, and the scene must move on.
    assert matched == sorted(matched) and len(set(matched)) >= 4
