"""Training state in a checkpoint directory: weights, optimiser, step and every RNG, so a killed run resumes
where its last checkpoint left it (same batches, same dropout) and never silently with other weights."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "train_state.pt"
FORMAT_VERSION = 1


class BadCheckpoint(ValueError):
    """A checkpoint directory without a readable training state of this version."""


def capture_rng(rng: np.random.Generator) -> dict[str, Any]:
    """The state of torch's, numpy's (the data generator `rng`) and Python's RNGs."""
    state = {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Inverse of capture_rng (the data generator `rng` is set in place)."""
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(directory: Path, *, weights: dict[str, dict[str, torch.Tensor]], optimizer: dict[str, Any],
                step: int, rng: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Save the training state into `directory` (created); returns the file written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    state = {"version": FORMAT_VERSION, "weights": weights, "optimizer": optimizer, "step": step, "rng": rng,
             "meta": meta}
    torch.save(state, path)
    return path


def read_state(directory: Path) -> dict[str, Any]:
    """The training state saved by write_state in `directory`.

    Raises BadCheckpoint when the file is missing, unreadable or of another format version.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise BadCheckpoint(f"checkpoint {directory}: expected {STATE_FILE}, found none")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no code runs
    except Exception as exc:  # any unpickling failure means the same thing: this file cannot be resumed from
        raise BadCheckpoint(f"checkpoint {path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        got = state.get("version") if isinstance(state, dict) else type(state).__name__
        raise BadCheckpoint(f"checkpoint {path}: expected format version {FORMAT_VERSION}, got {got!r}")
    return state


def scratch_dir(prefix: str = "tokdyn-ckpt-") -> Path:
    """A fresh temporary directory to assemble a checkpoint in before Ray Train persists it."""
    return Path(tempfile.mkdtemp(prefix=prefix))
