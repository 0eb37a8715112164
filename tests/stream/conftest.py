"""Fixtures for stream tests: small videos written with PyAV (known timestamps) and the real vtest.avi."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.samples import SampleUnavailable, sample_path
from stream.synthetic import write_video

from .helpers import FORMATS, SMALL


@pytest.fixture(scope="session")
def video_files(tmp_path_factory) -> dict[str, tuple[Path, list[float]]]:
    """suffix -> (path, timestamps as stored) for 2 s of 160x120 30 fps synthetic video in each format."""
    folder = tmp_path_factory.mktemp("videos")
    out = {}
    for suffix, codec in FORMATS:
        path = folder / f"synthetic.{suffix}"
        out[suffix] = (path, write_video(path, SMALL.frames(), codec, fps=SMALL.fps))
    return out


@pytest.fixture(scope="session")
def vtest() -> Path:
    """Real clip: vtest.avi from Debian's opencv-doc (768x576, 10 fps, 79.5 s)."""
    try:
        return sample_path("vtest")
    except SampleUnavailable as exc:
        pytest.skip(f"vtest.avi unavailable: {exc}")
