"""The trained cross-dynamics attention lives in the checkpoint, and the memory reaches the model through it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor.registry import make_stream_compressor
from vlm import ModelConfig, load_vlm
from vlm.dynamics import DYNAMICS_FILE
from vlm.llava_onevision import NOTES_FILE, build_tiny


def _snapshot(model):
    frames = np.random.default_rng(0).integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)
    compressor = make_stream_compressor(CompressorConfig(budget=16))
    compressor.update(model.encode_frames(frames), np.arange(8) * 0.5)
    return compressor.snapshot()


def _trained(seed: int = 1):
    model = build_tiny(ModelConfig(seed=seed))
    dynamics = model.attach_dynamics()
    torch.nn.init.normal_(dynamics.out.weight, std=0.05)       # stands in for training: no longer the identity
    return model


def test_saved_dynamics_load_back_and_fuse_motion(tmp_path: Path) -> None:
    model = _trained()
    snapshot = _snapshot(model)
    fused = model.memory_tokens(snapshot)
    assert not torch.allclose(fused, torch.from_numpy(np.array(snapshot.base)))   # motion reached the tokens
    model.save_pretrained(tmp_path)
    loaded = load_vlm(ModelConfig(path=str(tmp_path)))
    assert loaded.dynamics is not None
    assert torch.allclose(loaded.memory_tokens(snapshot), fused)


def test_centroids_only_by_config(tmp_path: Path) -> None:
    model = _trained()
    model.save_pretrained(tmp_path)
    loaded = load_vlm(ModelConfig(path=str(tmp_path), memory="centroids"))
    snapshot = _snapshot(loaded)
    assert torch.allclose(loaded.memory_tokens(snapshot), torch.from_numpy(np.array(snapshot.base)))


def test_checkpoint_without_dynamics_runs_centroids_only_and_says_so(tmp_path: Path, caplog) -> None:
    build_tiny(ModelConfig()).save_pretrained(tmp_path)
    assert not (tmp_path / DYNAMICS_FILE).exists()
    with caplog.at_level(logging.INFO, logger="vlm.dynamics"):
        loaded = load_vlm(ModelConfig(path=str(tmp_path)))
    assert loaded.dynamics is None
    assert "centroids only" in caplog.text
    snapshot = _snapshot(loaded)
    assert torch.allclose(loaded.memory_tokens(snapshot), torch.from_numpy(np.array(snapshot.base)))
    assert "".join(loaded.generate(loaded.memory_tokens(snapshot), "What moves?", max_new_tokens=3)) is not None


def test_dynamics_trained_on_other_motion_features_is_not_used(tmp_path: Path, caplog) -> None:
    _trained().save_pretrained(tmp_path)
    notes = json.loads((tmp_path / NOTES_FILE).read_text())
    notes["dynamics"]["motion_features"] = notes["dynamics"]["motion_features"][:-1]
    (tmp_path / NOTES_FILE).write_text(json.dumps(notes))
    with caplog.at_level(logging.WARNING, logger="vlm.dynamics"):
        loaded = load_vlm(ModelConfig(path=str(tmp_path)))
    assert loaded.dynamics is None and "other motion features" in caplog.text
