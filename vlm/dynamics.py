"""The trained cross-dynamics attention that fuses a memory's motion into its base tokens, kept inside a
model checkpoint directory next to the VLM's own weights.

A checkpoint holds it as ``dynamics.safetensors`` plus an entry in tokdyn's notes (``tokdyn_model.json``)
naming the motion features it was trained on and its head count. A checkpoint without it (any stock
llava-hf checkpoint, or one trained on centroids only) loads and answers from the centroids alone; so does
one whose motion features differ from this code's (a model must never read features in the wrong columns).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from compressor.attention import CrossDynamicsAttention
from compressor.motion import MOTION_FEATURES

log = logging.getLogger(__name__)

DYNAMICS_FILE = "dynamics.safetensors"


def new_dynamics(dim: int, heads: int = 4, seed: int = 0) -> CrossDynamicsAttention:
    """An untrained module for D = ``dim`` (exactly the identity until trained), seeded for reproducibility."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CrossDynamicsAttention(dim, len(MOTION_FEATURES), heads)


def save_dynamics(module: CrossDynamicsAttention, directory: Path) -> dict[str, Any]:
    """Weights -> ``directory/dynamics.safetensors``; returns the notes entry that describes them."""
    save_file({name: t.detach().contiguous().cpu() for name, t in module.state_dict().items()},
              str(directory / DYNAMICS_FILE))
    return {"motion_features": list(MOTION_FEATURES), "heads": module.heads, "dim": module.dim}


def load_dynamics(directory: Path, notes: dict[str, Any], dim: int, device: torch.device,
                  dtype: torch.dtype, name: str) -> CrossDynamicsAttention | None:
    """The module saved in ``directory``, or None (logged, with the reason) when it cannot be used.

    Raises:
        ValueError: the file exists but does not match its notes (a corrupt or foreign checkpoint).
    """
    path = directory / DYNAMICS_FILE
    entry = notes.get("dynamics")
    if not path.is_file() or not isinstance(entry, dict):
        log.info("%s: no trained cross-dynamics attention in the checkpoint: answering from centroids only", name)
        return None
    features = entry.get("motion_features")
    if features != list(MOTION_FEATURES):
        log.warning("%s: its cross-dynamics attention was trained on other motion features (%s, this code has "
                    "%d): answering from centroids only", name, features, len(MOTION_FEATURES))
        return None
    if entry.get("dim") != dim:
        raise ValueError(f"{path}: expected cross-dynamics attention for D={dim}, notes say {entry.get('dim')}")
    module = CrossDynamicsAttention(dim, len(MOTION_FEATURES), int(entry.get("heads", 4)))
    try:
        module.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:  # missing/unexpected keys or shapes
        raise ValueError(f"{path}: expected the weights of CrossDynamicsAttention(D={dim}), got: {exc}") from exc
    log.info("%s: cross-dynamics attention loaded: motion fused into the memory's base tokens", name)
    return module.to(device=device, dtype=dtype).eval()
