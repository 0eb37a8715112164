"""Trusted hosts and safe sources over HTTP (issue 22): a real uvicorn server on 127.0.0.1, a real backend."""

from __future__ import annotations

import httpx
import pytest

from actors.config import ApiConfig
from frontends.api.server import ApiServer
from frontends.api.trust import host_name

SYNTHETIC = "synthetic://?width=64&height=64&fps=5"


@pytest.fixture
def open_server(backend, tmp_path):
    """The key-less loopback default, with a media folder and one extra trusted name."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(b"not really a video")
    config = ApiConfig(port=0, media_dir=str(media), trusted_hosts=("pipeline.example",))
    with ApiServer(backend, config) as server:
        yield server, media


def test_the_dns_rebinding_request_gets_400_and_creates_nothing(open_server, backend) -> None:
    """Given the key-less default server, when the issue's rebound request arrives (Host and Origin a foreign
    name), then it is refused before anything else and no stream exists; names it trusts still work."""
    server, _ = open_server
    port = server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        rebound = http.post("/v1/streams", json={"id": "r", "url": SYNTHETIC},
                            headers={"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "untrusted_host"
        assert http.get("/health", headers={"Host": "evil.example"}).status_code == 400
        assert "r" not in backend.streams and http.get("/v1/streams").json()["data"] == []
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"pipeline.example:{port}", f"[::1]:{port}"):
            assert http.get("/health", headers={"Host": host}).status_code == 200, host


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "file:///MEDIA/../../etc/passwd",
                                 "MEDIA/../escape.mp4"])
def test_local_files_outside_the_media_folder_get_403(open_server, backend, url) -> None:
    server, media = open_server
    url = url.replace("/MEDIA", str(media)).replace("MEDIA", str(media))
    response = httpx.post(f"{server.url}/v1/streams", json={"id": "f", "url": url}, timeout=30)
    assert response.status_code == 403 and response.json()["error"]["code"] == "source_forbidden"
    assert "f" not in backend.streams


def test_files_in_the_media_folder_and_generated_sources_are_allowed(open_server, backend) -> None:
    server, media = open_server
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/streams", json={"id": "g", "url": SYNTHETIC}).status_code == 201
        inside = http.post("/v1/streams", json={"id": "f", "url": f"file://{media / 'clip.mp4'}", "live": False})
        assert inside.status_code == 201, inside.text


def test_no_local_file_over_http_without_a_media_folder(server, http) -> None:
    response = http.post("/v1/streams", json={"id": "f", "url": "/tmp/clip.mp4"})
    assert response.status_code == 403 and "api.media_dir is not set" in response.json()["error"]["message"]


@pytest.mark.parametrize("header, name", [("Example.COM.:80", "example.com"), ("[::1]:8000", "::1"),
                                          ("10.0.0.5", "10.0.0.5"), ("localhost", "localhost")])
def test_host_name(header, name) -> None:
    assert host_name(header) == name
