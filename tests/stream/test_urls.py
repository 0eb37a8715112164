"""One rule per URL concept: which URLs are live (stream.urls.is_live_url, used by the pipeline config,
the sources and probe alike) and sample:// resolved inside stream/ (so probe and the actors both take it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.config import StreamSpec
from stream.config import BufferPolicy, SourceConfig
from stream.probe import main as probe_main
from stream.sources import open_source
from stream.urls import is_live_url


@pytest.mark.parametrize("url, live", [
    ("rtsp://cam/stream1", True), ("rtsps://cam/s", True), ("rtmp://server/live/key", True),
    ("srt://server:9000", True), ("udp://239.0.0.1:1234", True), ("https://cdn/live/index.m3u8", True),
    ("synthetic://?fps=10", True), ("/videos/a.mp4", False), ("file:///videos/a.mp4", False),
    ("https://host/a.mp4", False), ("sample://vtest", False),
])
def test_liveness_is_one_rule_for_config_and_sources(url: str, live: bool) -> None:
    """Given a URL and no explicit `live`, the stream spec (paces, drops on send), the source (buffer
    policy) and probe agree on whether it is live."""
    assert is_live_url(url) is live
    assert StreamSpec("s", url).is_live is live
    if not url.startswith(("synthetic", "sample")):  # opening a network URL reads nothing until iterated
        source = open_source(url, SourceConfig())
        assert source.live is live
        assert source.policy is (BufferPolicy.DROP_OLDEST if live else BufferPolicy.WAIT)


def test_an_rtmp_stream_with_live_null_is_live_in_the_actor_spec_and_the_source() -> None:
    spec = StreamSpec("cam", "rtmp://127.0.0.1/live/cam", live=None)
    source = open_source(spec.url, SourceConfig(realtime=spec.is_live))
    assert spec.is_live and source.live_stream and not source.paced  # a camera keeps its own clock


def test_probe_takes_a_sample_url(vtest: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`tokdyn probe sample://vtest` opens the cached real clip (the vtest fixture fetched it)."""
    sheet = tmp_path / "sheet.png"
    assert probe_main(["sample://vtest", "--seconds", "2", "--samples", "2", "--sheet", str(sheet), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["url"] == "sample://vtest" and (report["width"], report["height"]) == (768, 576)
    assert not report["live"] and sheet.exists()
