"""The README stays a five-minute read whose examples are true: its length, its make targets, and the model
name its `openai` example asks for (the name the API serves the shipped default under)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from actors.config import load_config
from vlm.registry import EMBEDDED, EMBEDDED_DIR

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_at_most_200_lines() -> None:
    assert len(README.splitlines()) <= 200


def test_every_make_target_the_readme_names_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert {"demo", "test", "test-fast"} <= named and named <= targets


def test_the_openai_example_names_the_model_the_default_config_serves() -> None:
    """Given the shipped default config, when its model is loaded (embedded -> the shipped folder), then the
    name the API accepts is the one the README's example sends (any other name is a 404)."""
    model = load_config("default").model
    assert model.path == EMBEDDED
    served = dataclasses.replace(model, path=str(EMBEDDED_DIR)).name
    assert re.findall(r'model="([^"]+)"', README) == [served]
