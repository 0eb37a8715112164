"""What a default `tokdyn serve` exposes to the network (nothing beyond loopback), and a wrong `--address`."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testkit.sockets import listeners
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKDYN = [sys.executable, "-m", "frontends.cli"]
WRONG_ADDRESS_LIMIT_S = 10.0


def test_a_wrong_address_fails_within_seconds_with_one_line() -> None:
    """Given no Ray cluster at 127.0.0.1:1, when `tokdyn streams --address 127.0.0.1:1 list` runs, then it
    exits non-zero within 10 s (imports included) and says so in one line, no traceback."""
    started = time.monotonic()
    done = subprocess.run([*TOKDYN, "streams", "--address", "127.0.0.1:1", "list"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode != 0 and elapsed < WRONG_ADDRESS_LIMIT_S, (elapsed, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.ray
def test_default_serve_listens_on_loopback_only(tmp_path: Path) -> None:
    """Given `tokdyn serve` on the default config (only the API port made free and the checkpoints moved),
    with Ray's token authentication on, when it is up, then every TCP socket its process tree listens on
    (Ray's GCS, raylet, workers, agents, the actors' ZeroMQ ports, the HTTP API) is on a loopback address,
    and `tokdyn streams --address` still joins it."""
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config["api"]["port"] = 0
    config["checkpoint_dir"] = str(tmp_path / "ckpt")
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    # The product's default: Ray token auth on. A token file of its own: ~/.ray/auth_token is shared by every
    # Ray cluster of this user on the machine, and other test runs may replace it meanwhile.
    (tmp_path / "auth_token").write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "auth_token")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        serve = subprocess.Popen([*TOKDYN, "serve", "-c", str(tmp_path / "serve.yaml")], cwd=ROOT, stdout=log,
                                 stderr=subprocess.STDOUT, env=dict(env, PYTHONUNBUFFERED="1"),
                                 start_new_session=True)
    try:
        banner = wait_for(lambda: re.search(r"Ray at (\S+) .*HTTP API on (\S+)\.", log_path.read_text()), 240,
                          "the serve banner")
        address = banner.group(1)
        # the stream's actors start after the banner: wait until the tree has its ZeroMQ listeners too
        found = wait_for(lambda: (lambda ls: ls if len({l.pid for l in ls}) >= 6 else None)(listeners(serve.pid)),
                         120, "the actors' listeners")
        exposed = [l for l in listeners(serve.pid) if not l.loopback]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert any(l.name == "gcs_server" for l in found) and any(l.name == "raylet" for l in found)
        listed = subprocess.run([*TOKDYN, "streams", "--address", address, "list"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env=env)
        assert listed.returncode == 0 and "demo" in listed.stdout, listed.stderr
    finally:
        serve.send_signal(signal.SIGTERM)  # serve stops its pipeline and its Ray cluster
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)  # the serve's own session: it and the Ray processes it started
            serve.wait(10)
