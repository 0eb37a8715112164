"""Pipeline configs: every shipped YAML loads; bad keys and values raise errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from actors.config import PipelineConfig, load_config, stream_spec
from configs.schema import CONFIG_DIR, ConfigError, build

# Pipeline configs; the train-*.yaml files are training configs (tests/train checks those).
SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("train-"))


def test_the_three_documented_configs_ship() -> None:
    assert {"default", "llava-onevision-0.5b", "cluster"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(name: str) -> None:
    config = load_config(name)
    assert isinstance(config, PipelineConfig)
    assert load_config(CONFIG_DIR / f"{name}.yaml") == config


def test_default_is_local_embedded_and_live() -> None:
    config = load_config("default")
    assert config.ray.address == "local"
    assert config.model.path == "embedded"  # the trained model that ships in the package
    assert config.streams and all(s.is_live for s in config.streams)


def test_every_default_key_is_commented() -> None:
    """The embedded default documents every leaf key on its own line (section headers excepted)."""
    for line in (CONFIG_DIR / "default.yaml").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"uncommented key line: {line!r}"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"streams": [{"stream_id": "a", "url": "x.mp4", "sample_rate_hz": -1}]},
         "streams[0].sample_rate_hz: expected > 0, got -1"),
        ({"streams": [{"stream_id": "a", "url": "x.mp4", "colour": 1}]}, "streams[0].colour: unknown key"),
        ({"streams": [{"stream_id": "a", "url": "x", "compressor": {"budget": 0}}]},
         "streams[0].compressor.budget: expected 1 <= budget <= 1024"),
        ({"streams": [{"stream_id": "a", "url": "x", "source": {"transport": "carrier-pigeon"}}]},
         "streams[0].source.transport: expected"),
        ({"streams": [{"stream_id": "a b", "url": "x"}]}, "streams[0].stream_id: expected"),
        ({"streams": [{"stream_id": "a", "url": "x"}, {"stream_id": "a", "url": "y"}]}, "streams: expected unique"),
        ({"model": {"dtype": "int3"}}, "model.dtype: expected one of"),
        ({"encoder": {"batch_frames": 0}}, "encoder.batch_frames: expected >= 1, got 0"),
        ({"encoder": {"batch_frames": "many"}}, "encoder.batch_frames: expected int, got 'many'"),
        ({"llm": {"max_concurrent": True}}, "llm.max_concurrent: expected int, got True"),
        ({"ray": {"address": "somewhere"}}, "ray.address: expected"),
        ({"transport": {"bind": "everywhere"}}, "transport.bind: expected one of"),
        ({"api": {"port": 70000}}, "api.port: expected 0..65535, got 70000"),
        ({"checkpoints": "/tmp"}, "checkpoints: unknown key"),
        ({"ray": [1, 2]}, "ray: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    assert str(info.value).startswith(message), str(info.value)


def test_unknown_config_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="config: expected a YAML path or one of"):
        load_config("no-such-config")


def test_stream_spec_from_dict_and_live_inference() -> None:
    assert stream_spec({"stream_id": "cam", "url": "rtsp://h/s"}).is_live
    assert not stream_spec({"stream_id": "f", "url": "/v.mp4"}).is_live
    assert stream_spec({"stream_id": "f", "url": "/v.mp4", "live": True}).is_live
    with pytest.raises(ConfigError, match="stream.url: expected"):
        stream_spec({"stream_id": "f", "url": ""})


def test_build_passes_dataclasses_through() -> None:
    config = PipelineConfig()
    assert build(PipelineConfig, config) is config
