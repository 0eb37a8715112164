"""Two Ray nodes on this machine: actors on different nodes exchange chunks over TCP (node IP binds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[3]


def test_actors_on_two_nodes_exchange_chunks_over_tcp() -> None:
    # Its own process: a process holds one Ray connection, and the session's local cluster is another.
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tests.actors.control.multinode_run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nodes"] == 2 and result["encoder_node_differs"]
    for endpoint in (result["memory_endpoint"], result["frames_endpoint"]):
        assert endpoint.startswith(f"push+connect:tcp://{result['ip']}:")
    assert result["tokens_seen"] == 8 * 196
    assert result["span"]["t_end"] == pytest.approx(3.5)
    assert result["transport_s"] is not None
