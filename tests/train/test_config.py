"""Training configs: every shipped one loads; bad keys and values are named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.schema import CONFIG_DIR, ConfigError
from train.config import TrainConfig, load_train_config

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("train-*.yaml"))


def test_configs_ship():
    assert "train-default" in SHIPPED and "train-llava-onevision-0.5b" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads(name):
    config = load_train_config(name)
    assert isinstance(config, TrainConfig)
    assert config.formats and config.batch_size >= 1


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, key", [
    ("steps: 10\nbogus: 1\n", "bogus: unknown key"),
    ("data: {scenes: {count: 2, seconds: [5, 2]}}\n", "data.scenes.seconds"),
    ("data: {scenes: {count: 2, width: 100.5}}\n", "data.scenes.width"),
    ("formats: [{method: token_dynamics}, {method: zip}]\n", "formats[1].method"),
    ("freeze: [vision, eyes]\n", "freeze"),
    ("freeze: [vision, projector, dynamics, llm]\n", "freeze"),
    ("steps: 10\nepochs: 2\n", "steps/epochs"),
    ("data: {on_bad_row: ignore}\n", "data.on_bad_row"),
    ("vision_warmup: {steps: 10, schedule: linear}\n", "vision_warmup.schedule"),
    ("replay: 0.5\n", "replay"),  # nothing to replay: no curriculum stage
    ("replay: 1.0\ncurriculum: [{memory: oracle}]\n", "replay"),
    ("ray: {resources_per_worker: {CPU: -1}}\n", "ray.resources_per_worker.CPU"),
    ("formats: [{method: uniform, centroid_only: true}]\n", "formats[0].centroid_only"),
    ("steps: ten\n", "steps: expected int"),
    ("model: {tokenizer: words}\n", "model.tokenizer"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_train_config(_write(tmp_path, text))


def test_overrides_replace_steps_and_epochs(tmp_path):
    config = load_train_config(_write(tmp_path, "steps: null\nepochs: 3\n"), steps=7, output=str(tmp_path / "o"))
    assert (config.steps, config.epochs, config.output) == (7, None, str(tmp_path / "o"))


def test_full_format_from_yaml(tmp_path):
    config = load_train_config(_write(tmp_path, "formats: [{method: full, frames: 8}]\n"))
    assert config.formats[0].name == "full@8f" and not config.formats[0].uses_dynamics
