"""VLM families by name: each registers how to build its tiny model and how to load a local checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vlm.base import VisionLanguageModel
from vlm.config import ModelConfig, ModelConfigError
from vlm import llava_onevision


@dataclass(frozen=True)
class Family:
    """build_tiny: ModelConfig -> a random-weight model made in code; load: ModelConfig -> a local checkpoint."""

    build_tiny: Callable[[ModelConfig], VisionLanguageModel]
    load: Callable[[ModelConfig], VisionLanguageModel]


FAMILIES: dict[str, Family] = {}

#: The path value naming the model that ships inside tokdyn: a small LLaVA-OneVision trained by
#: `tokdyn train -c configs/train-default.yaml` on the procedural scene suite (README: what it knows).
EMBEDDED = "embedded"
EMBEDDED_DIR = Path(__file__).resolve().parent / "weights" / "scenes-tiny"


def register_family(name: str, family: Family) -> None:
    """Make a VLM family available to load_vlm under `name` (a second registration replaces the first)."""
    FAMILIES[name] = family


register_family("llava-onevision", Family(llava_onevision.build_tiny, llava_onevision.load_local))


def load_vlm(config: ModelConfig) -> VisionLanguageModel:
    """ModelConfig -> a ready model: path "tiny" builds the family's tiny model, "embedded" loads the shipped
    checkpoint, otherwise a local directory."""
    if config.family not in FAMILIES:
        raise ModelConfigError(f"model.family: expected one of {sorted(FAMILIES)}, got {config.family!r}")
    family = FAMILIES[config.family]
    if config.path == EMBEDDED:
        config = replace(config, path=str(EMBEDDED_DIR))
    return family.build_tiny(config) if config.is_tiny else family.load(config)
