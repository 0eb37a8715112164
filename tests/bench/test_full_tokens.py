"""bench/full_tokens.py: both readers start from the shipped vision path with a language model of the tiny
family's initialisation, so the comparison is between memory formats, not starting points."""

from __future__ import annotations

import torch

from bench.full_tokens import SHIPPED, fresh_reader
from train.config import ModelInit
from train.model import load_model


def test_fresh_reader_keeps_the_vision_path_and_reinitialises_the_language_model():
    shipped = load_model(ModelInit(init=SHIPPED), 0, "cpu")
    vlm = load_model(ModelInit(init=SHIPPED), 0, "cpu")
    dynamics = fresh_reader(vlm, seed=0)
    inner, before = vlm.model.model, shipped.model.model
    for name in ("vision_tower", "multi_modal_projector"):
        for (key, kept), (_, original) in zip(getattr(inner, name).state_dict().items(),
                                              getattr(before, name).state_dict().items()):
            assert torch.equal(kept, original), key
    std = vlm.model.config.text_config.initializer_range
    embed = inner.language_model.embed_tokens.weight
    assert not torch.equal(embed, before.language_model.embed_tokens.weight)
    assert abs(float(embed.std()) - std) < 0.2 * std
    assert torch.equal(inner.language_model.norm.weight, torch.ones_like(inner.language_model.norm.weight))
    assert dynamics is vlm.dynamics and not torch.equal(
        next(dynamics.parameters()), next(shipped.dynamics.parameters()))
    again = load_model(ModelInit(init=SHIPPED), 0, "cpu")
    fresh_reader(again, seed=0)  # seeded: the same start on every run
    assert torch.equal(again.model.model.language_model.embed_tokens.weight, embed)
