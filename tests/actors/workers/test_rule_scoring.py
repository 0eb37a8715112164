"""Prefix reuse gives the same yes/no margins as one full prefill per rule (tiny and shipped models)."""

from __future__ import annotations

import pytest
import torch

from actors.workers.rule_scoring import RuleScorer
from vlm import ModelConfig
from vlm.registry import load_vlm

QUESTIONS = ["Is a red object in the top left?", "Is something moving left?",
             "Are there at least three objects?", "Is a star visible?", "Is it?"]


@pytest.mark.parametrize("path", ["tiny", "embedded"])
def test_batched_prefix_reuse_equals_separate_prefills(path):
    vlm = load_vlm(ModelConfig(path=path))
    scorer = RuleScorer(vlm)
    visual = torch.randn(40, vlm.hidden_size, generator=torch.Generator().manual_seed(0)).to(vlm.dtype)
    batched = scorer.margins(visual, QUESTIONS)
    separate = scorer.margins_separately(visual, QUESTIONS)
    assert batched == pytest.approx(separate, abs=2e-3)
    assert scorer.margins(visual, QUESTIONS[3:4]) == pytest.approx(separate[3:4], abs=2e-3)  # a single rule
    assert scorer.margins(visual, []) == []
