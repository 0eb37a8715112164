"""The Ray shells' module stays light: every actor process imports it (Ray loads an actor's class, and a source
loads its memory's class to ask where to resume), so what it imports at top is paid once per stream."""

from __future__ import annotations

import subprocess
import sys


def test_the_shells_and_the_control_plane_import_without_torch() -> None:
    """Given a fresh interpreter, when it imports the actor shells, the controller and the pipeline starter,
    then neither torch nor transformers is loaded (the encoder, memory and LLM load them when they start)."""
    code = ("import sys, actors.workers.remote, actors.control.controller, actors.client.pipeline; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
