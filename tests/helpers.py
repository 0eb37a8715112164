"""Shared helpers of the pipeline tests: polling with deadlines, small real video files, a webhook receiver."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

T = TypeVar("T")
POLL_S = 0.1


def wait_for(condition: Callable[[], T], timeout_s: float = 60.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last value {last!r})")


def write_video(path: Path, seconds: float = 8.0, fps: int = 10, size: tuple[int, int] = (160, 120),
                seed: int = 0) -> Path:
    """An H.264 file of moving squares (real encoder, exact timestamps) for file-stream tests."""
    rng = np.random.default_rng(seed)
    w, h = size
    colours = rng.integers(40, 255, (3, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.zeros((h, w, 3), np.uint8)
            for j, colour in enumerate(colours):
                x = (i * (j + 2) + j * 40) % (w - 20)
                image[20 + j * 30:40 + j * 30, x:x + 20] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """An HTTP receiver on 127.0.0.1 that answers with the statuses scripted in `statuses` (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.got = list(statuses), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"
