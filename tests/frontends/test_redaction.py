"""Credentials in stream URLs never leave in clear: a password planted in URLs given to a real `tokdyn serve`
(its own Ray cluster and temp folder), the HTTP API, the CLI and `tokdyn demo` is looked for in everything
they produce: stdout, stderr, API responses (errors included), /metrics, files written and Ray's logs."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKDYN = [sys.executable, "-m", "frontends.cli"]
CLOSED_PORT = 9  # discard: nothing listens on loopback, so every open fails fast with "connection refused"


def _run(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*TOKDYN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _files_containing(folder: Path, secret: bytes) -> list[str]:
    """Every file under `folder` whose bytes contain `secret` (logs, checkpoints, sockets skipped)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret in path.read_bytes():
                    found.append(str(path))
            except OSError:  # a socket or a file that vanished meanwhile
                continue
    return found


def _failed_often(streams: list[dict]) -> bool:
    state = {s["stream_id"]: s for s in streams}
    return (set(state) == {"fromconfig", "fromcli", "fromapi"} and state["fromcli"]["state"] == "failed"
            and all((state[sid]["reconnect_attempts"] or 0) >= 2 for sid in ("fromconfig", "fromapi")))


@pytest.mark.ray
def test_a_planted_password_appears_in_no_output(tmp_path: Path) -> None:
    """Given stream URLs carrying a password and a secret query token, added by config, by the CLI and by
    the API to sources that fail (the error paths log the most), when serve, the API, the CLI and the demo
    run, then the secrets appear in none of their outputs, and the redacted forms do."""
    password, token = f"pw{secrets.token_hex(8)}", f"tk{secrets.token_hex(8)}"
    url = f"rtsp://admin:{password}@127.0.0.1:{CLOSED_PORT}/cam?token={token}"
    ray_tmp = Path(tempfile.mkdtemp(prefix="tdr", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1")
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    source = {"open_timeout_s": 1.0, "retry_first_open": True, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5}
    config.update(streams=[{"stream_id": "fromconfig", "url": url, "source": source}],
                  checkpoint_dir=str(tmp_path / "ckpt"))
    config["ray"]["num_cpus"] = 2
    config["api"]["port"] = 0
    config_file = tmp_path / "config" / "serve.yaml"  # holds the secret by design: not an output
    config_file.parent.mkdir()
    config_file.write_text(yaml.safe_dump(config))
    outputs: dict[str, str] = {}
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "w") as log:
        serve = subprocess.Popen([*TOKDYN, "-v", "serve", "-c", str(config_file)], cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, text=True, env=env)
    try:
        banner = wait_for(lambda: re.search(r"Ray at (\S+) .*HTTP API on (\S+)\.", serve_log.read_text()),
                          300, "the serve banner")
        address, api = banner.group(1), banner.group(2)
        added = _run(env, "-v", "streams", "--address", address, "add", "fromcli", url.replace("cam", "cli"))
        assert added.returncode == 0, added.stderr[-2000:]
        with httpx.Client(base_url=api, timeout=60) as http:
            spec = {"id": "fromapi", "url": url.replace("cam", "api"), "source": source}
            outputs["api add"] = http.post("/v1/streams", json=spec).text
            outputs["api add again"] = http.post("/v1/streams", json=spec).text  # 409
            outputs["api bad url"] = http.post("/v1/streams", json={"id": "x", "url": url.replace("rtsp", "gopher")}).text
            # the sources have failed to open a few times: their errors are in the status and the logs
            wait_for(lambda: _failed_often(http.get("/v1/streams").json()["data"]), 180,
                     "the CLI's source to fail and the others to retry twice")
            outputs["api list"] = http.get("/v1/streams").text
            outputs["api status"] = http.get("/v1/streams/fromapi").text
            outputs["api metrics"] = http.get("/metrics").text
            outputs["api ask"] = http.post("/v1/chat/completions", json={
                "stream_id": "fromapi", "messages": [{"role": "user", "content": "What moves?"}]}).text
        listed = _run(env, "-v", "streams", "--address", address, "list")
        asked = _run(env, "-v", "ask", "--address", address, "fromcli", "What moves?")
        outputs.update({"cli add": added.stdout + added.stderr, "cli list": listed.stdout + listed.stderr,
                        "cli ask": asked.stdout + asked.stderr})
        assert "admin:***@127.0.0.1" in listed.stdout and "token=***" in listed.stdout
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(120)
    outputs["serve"] = serve_log.read_text()
    demo = _run(env, "-v", "demo", "--url", url, "--seconds", "1")
    outputs["demo"] = demo.stdout + demo.stderr
    assert demo.returncode != 0 and "admin:***@127.0.0.1" in demo.stdout  # the source fails: said, redacted

    try:
        for secret in (password, token):
            leaks = [name for name, text in outputs.items() if secret in text]
            assert not leaks, f"{secret} in {leaks}: " + "; ".join(outputs[n][-1500:] for n in leaks)
            files = _files_containing(tmp_path, secret.encode()) + _files_containing(ray_tmp, secret.encode())
            assert files == [str(config_file)], files
        # the places searched are the ones the URL reaches: its redacted form is in the logs and the outputs
        assert _files_containing(ray_tmp, b"admin:***@127.0.0.1"), "no Ray log mentions the stream URL"
        assert "admin:***@127.0.0.1" in outputs["api list"] and 'stream_id="fromapi"' in outputs["api metrics"]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_specs_and_config_errors_never_show_the_password() -> None:
    """A stream spec's repr (logs, tracebacks, Ray's error messages) and the config errors about it."""
    from actors.config import stream_spec
    from configs.schema import ConfigError

    password = f"pw{secrets.token_hex(8)}"
    spec = stream_spec({"stream_id": "cam", "url": f"rtsp://admin:{password}@cam/1"})
    assert password not in repr(spec) and password not in str(spec)
    with pytest.raises(ConfigError) as bad:
        stream_spec({"stream_id": "cam", "url": f"gopher://admin:{password}@cam/1"})
    assert password not in str(bad.value) and "admin:***@cam" in str(bad.value)
