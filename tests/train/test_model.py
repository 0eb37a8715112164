"""The model side of training: wrong architectures and sizes are refused, freezing works per part, the
loss is the serving prompt's and goes down, and a saved model loads back with load_vlm."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from configs.schema import ConfigError
from frontends.cli import main
from train.config import ModelInit
from train.formats import MemoryFormat
from train.memory import snapshot_chunks, stream_memories
from train.model import ArchitectureMismatch, load_model, load_trained_state, make_dynamics, set_trainable
from train.objective import Example, QAObjective
from vlm import ModelConfig, load_vlm


@pytest.fixture()
def vlm():
    return load_model(ModelInit(), seed=0, device="cpu")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    with pytest.raises(ArchitectureMismatch, match="expected a checkpoint with model_type 'llava_onevision', "
                                                   "got 'bert'"):
        load_model(ModelInit(init=str(tmp_path)), seed=0, device="cpu")


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ArchitectureMismatch, match="has no config.json"):
        load_model(ModelInit(init=str(tmp_path)), seed=0, device="cpu")


def test_checkpoint_whose_weights_do_not_fit_its_config_is_refused(tmp_path, vlm):
    vlm.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 512  # the saved MLP weights are 256 wide
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArchitectureMismatch, match="does not load as LLaVA-OneVision"):
        load_model(ModelInit(init=str(tmp_path)), seed=0, device="cpu")


def test_cli_refuses_wrong_architecture_before_starting_ray(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nmodel: {{init: {tmp_path / 'ckpt'}}}\n")
    assert main(["train", "-c", str(cfg)]) == 1
    assert "model_type 'llava_onevision', got 'gpt2'" in capsys.readouterr().err


def test_cli_set_reaches_the_config(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\n")
    assert main(["train", "-c", str(cfg), "--set", f"model.init={tmp_path / 'ckpt'}"]) == 1
    assert "model_type 'llava_onevision', got 'gpt2'" in capsys.readouterr().err
    assert main(["train", "-c", str(cfg), "--set", "model.init"]) != 0
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_resume_state_of_other_sizes_is_refused(vlm):
    other = load_model(ModelInit(size={"text_hidden": 64, "text_heads": 2, "text_kv_heads": 1}), seed=0, device="cpu")
    state = {"model": other.model.state_dict(), "dynamics": make_dynamics(other, 0).state_dict()}
    with pytest.raises(ArchitectureMismatch, match="do not fit the configured model"):
        load_trained_state(vlm, make_dynamics(vlm, 0), state)


def test_bad_size_key_names_it():
    with pytest.raises(ConfigError, match="model.size"):
        load_model(ModelInit(size={"text_width": 64}), seed=0, device="cpu")


def test_freeze_turns_parts_off(vlm):
    dynamics = make_dynamics(vlm, 0)
    params = set_trainable(vlm, dynamics, ("vision", "projector"))
    inner = vlm.model.model
    assert not any(p.requires_grad for p in inner.vision_tower.parameters())
    assert not any(p.requires_grad for p in inner.multi_modal_projector.parameters())
    assert all(p.requires_grad for p in inner.language_model.parameters())
    assert all(p.requires_grad for p in dynamics.parameters())
    assert len(params) == sum(1 for p in vlm.model.parameters() if p.requires_grad) + len(list(dynamics.parameters()))


def _examples(vlm, n: int = 8) -> list[Example]:
    frames = np.random.default_rng(0).integers(0, 255, (24, vlm.image_size, vlm.image_size, 3), dtype=np.uint8)
    tokens = vlm.encode_frames(frames)
    memories = stream_memories(tokens, np.arange(24) / 2.0, MemoryFormat(budget=16), 4, snapshot_chunks(6, 2))
    return [Example(memories[i % 2], f"What colour is object {i % 4}?", ("red", "blue", "green", "cyan")[i % 4], True)
            for i in range(n)]


def test_loss_trains_the_answer_and_dynamics_then_loads_with_load_vlm(tmp_path, vlm):
    torch.manual_seed(0)
    dynamics = make_dynamics(vlm, 0)
    objective = QAObjective(vlm, dynamics)
    optimizer = torch.optim.AdamW(set_trainable(vlm, dynamics, ("vision", "projector")), lr=3e-3)
    examples = _examples(vlm)
    losses = []
    for _ in range(15):
        loss, answer_tokens = objective(examples)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert answer_tokens == sum(len(e.answer) + 1 for e in examples)  # byte tokens + <|im_end|>
    assert losses[-1] < 0.5 * losses[0]
    assert dynamics.out.weight.abs().sum() > 0  # the zero-initialised output projection has moved
    vlm.save_pretrained(tmp_path / "model")
    loaded = load_vlm(ModelConfig(path=str(tmp_path / "model")))
    assert loaded.dynamics is not None
    for name, tensor in vlm.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_scene_tokenizer_model_reads_scene_words_as_tokens_and_round_trips(tmp_path):
    # given a tiny model with the "scenes" tokenizer
    vlm = load_model(ModelInit(tokenizer="scenes"), seed=0, device="cpu")
    # then question words and answers are single tokens, so prompts are short
    assert vlm.tokenizer.tokenize("Which way is the green cross moving?")[-3:] == ["Ġcross", "Ġmoving", "?"]
    assert len(vlm.tokenizer.tokenize("green")) == 1
    assert vlm.count_prompt_tokens(32, "Which way is the green cross moving?") < 70
    # and the tokenizer travels with the checkpoint (serving never rebuilds it)
    vlm.save_pretrained(tmp_path)
    loaded = load_vlm(ModelConfig(path=str(tmp_path)))
    assert loaded.tokenizer.get_vocab() == vlm.tokenizer.get_vocab()
    assert loaded.allowed_ids == vlm.allowed_ids
