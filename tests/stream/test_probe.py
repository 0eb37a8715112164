"""`tokdyn probe`: report + contact sheet for files, a live RTSP camera and broken URLs."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from stream.probe import THUMB_WIDTH, main, probe
from testkit.rtsp_server import RtspServer, free_port, rtsp_server_available


def test_probe_file_writes_contact_sheet(video_files, tmp_path):
    report = probe(str(video_files["mp4"][0]), samples=4, seconds=2.0, sheet_path=tmp_path / "sheet.png")
    assert report.ok and not report.live and report.error is None
    assert (report.codec, report.width, report.height, report.fps) == ("h264", 160, 120, 30.0)
    assert report.sampled_timestamps == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert report.time_to_first_frame_s < 10
    with Image.open(report.contact_sheet) as sheet:
        assert sheet.format == "PNG" and sheet.size == (3 * THUMB_WIDTH, 2 * THUMB_WIDTH * 120 // 160)
    assert "OK (file)" in report.summary() and "h264, 160x120, 30 fps" in report.summary()


def test_probe_closed_port_is_a_clear_fast_failure(capsys):
    started = time.monotonic()
    code = main([f"rtsp://user:pa55word@127.0.0.1:{free_port()}/cam", "--sheet", "", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["ok"] and "Connection refused" in out["error"]
    assert "pa55word" not in json.dumps(out) and out["url"].startswith("rtsp://user:***@")
    assert time.monotonic() - started < 10


@pytest.mark.rtsp
@pytest.mark.skipif(not rtsp_server_available()[0], reason=rtsp_server_available()[1] or "no RTSP server")
def test_probe_live_rtsp_camera(tmp_path, capsys):
    with RtspServer(width=320, height=240, fps=15) as server:
        code = main([server.url, "--samples", "2", "--seconds", "1", "--sheet", str(tmp_path / "cam.png")])
    text = capsys.readouterr().out
    assert code == 0 and "OK (live)" in text and "h264, 320x240" in text and (tmp_path / "cam.png").exists()
