"""A wrong `--address` of any kind fails within 3 s with one line (issue 22): a closed port, a listener that
says nothing, and an HTTP server (the API's port) where Ray's GCS was expected. Real sockets, the real CLI."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from frontends.cli import main as cli_main

LIMIT_S = 3.0


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["closed", "silent", "http"])
def wrong_address(request):
    if request.param == "closed":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield f"127.0.0.1:{port}"
    elif request.param == "silent":
        with socket.socket() as listener:  # accepts (the kernel's backlog) and never answers
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            yield f"127.0.0.1:{listener.getsockname()[1]}"
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        server.server_close()


def test_a_wrong_address_fails_within_3_s_with_one_line(wrong_address, capsys) -> None:
    started = time.monotonic()
    assert cli_main(["streams", "--address", wrong_address, "list"]) == 2  # no pipeline reachable
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert elapsed <= LIMIT_S, elapsed
    assert len(err) == 1 and "no Ray cluster at" in err[0] and "Traceback" not in err[0], err
