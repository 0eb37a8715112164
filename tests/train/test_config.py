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
    ("formats: [{method: uniform, adaptive: true}]\n", "formats[0].adaptive"),
    ("formats: [{method: token_dynamics, budget: 16, adaptive: true, k_min: 20}]\n", "formats[0].k_min"),
    ("formats: [{method: token_dynamics, merge_similarity: 1.5}]\n", "formats[0].merge_similarity"),
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


def test_adaptive_format_builds_the_adaptive_compressor(tmp_path):
    text = "formats: [{method: token_dynamics, budget: 32, adaptive: true, k_min: 4, merge_similarity: 0.9}]\n"
    fmt = load_train_config(_write(tmp_path, text)).formats[0]
    compressor = fmt.compressor_config(seed=3)
    assert (compressor.adaptive, compressor.k_range, compressor.merge_similarity, compressor.seed) == \
        (True, (4, 32), 0.9, 3)
    assert fmt.name == "token_dynamics@32/adaptive4-0.9"


def test_checkpoint_init_is_resolved_where_the_command_runs(tmp_path, monkeypatch):
    # Ray Train workers run in a directory of their own: a relative checkpoint path must not reach them as is.
    monkeypatch.chdir(tmp_path)
    config = load_train_config(_write(tmp_path, "model: {init: runs/model}\n"))
    assert config.model.init == str(tmp_path / "runs" / "model")


def test_settings_set_dotted_keys_as_yaml_values(tmp_path):
    config = load_train_config("train-adaptive", ["model.init=tiny", "data.scenes.first_seed=101000",
                                                  "formats=[{method: uniform, budget: 8}]", "optim.lr=0.0002"])
    assert config.model.is_tiny and config.data.scenes.first_seed == 101000 and config.optim.lr == 0.0002
    assert [f.name for f in config.formats] == ["uniform@8"]
    assert config.data.scenes.count == load_train_config("train-adaptive").data.scenes.count  # the rest kept


@pytest.mark.parametrize("setting, message", [
    ("model.init", "expected KEY=VALUE"),
    ("model..init=x", "expected KEY=VALUE"),
    ("seed.value=3", "expected seed to be a mapping"),
    ("optim.lr=[1", "expected a YAML value"),
    ("optim.rate=0.1", "optim.rate: unknown key"),
])
def test_bad_settings_say_what_was_expected(setting, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config("train-adaptive", [setting])
