"""The model being trained: LLaVA-OneVision (tiny from scratch or a local checkpoint) + cross-dynamics attention,
which parts train, and a grad-enabled twin of the vision path.

Parts (config `freeze` lists the fixed ones): vision = SigLIP tower, projector = multi-modal projector (+ the
image-newline vector), llm = Qwen2 + lm_head, dynamics = the CrossDynamicsAttention that fuses key-map motion
into the base tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from configs.schema import ConfigError
from compressor.attention import CrossDynamicsAttention
from train.config import ModelInit
from vlm.config import ModelConfig
from vlm.frames import preprocess
from scenes.suites import training_text
from vlm.llava_onevision import LlavaOnevision, TinySize, build_tiny, load_local
from vlm.prompt import SYSTEM_PROMPT
from vlm.tokenizer import bpe_tokenizer

#: `model_type` of the transformers config this trainer accepts.
MODEL_TYPE = "llava_onevision"
#: Vocabulary of the scene tokenizer: BPE stops below it once every pair in the scene text is merged (~550).
SCENE_VOCAB = 1024


def scene_tokenizer():
    """The "scenes" tokenizer of a tiny model: byte-level BPE learned from training-scene questions and
    answers and the chat template's words (deterministic; saved with the model, so serving never rebuilds it)."""
    return bpe_tokenizer([*training_text(), f"system\n{SYSTEM_PROMPT}", "user\n", "assistant\n"], SCENE_VOCAB)


class ArchitectureMismatch(ValueError):
    """A checkpoint is not a LLaVA-OneVision model, or its tensors do not fit the model being trained."""


def check_checkpoint_dir(directory: Path) -> None:
    """Refuse a directory that is not a LLaVA-OneVision checkpoint, naming what it holds instead."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        state = "has no config.json" if directory.is_dir() else "does not exist"
        raise ArchitectureMismatch(f"model.init: expected 'tiny' or a LLaVA-OneVision checkpoint directory, got "
                                   f"{str(directory)!r}, which {state}")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ArchitectureMismatch(f"model.init: {config_file} is not a JSON object ({exc})") from None
    if model_type != MODEL_TYPE:
        raise ArchitectureMismatch(f"model.init: expected a checkpoint with model_type {MODEL_TYPE!r}, got "
                                   f"{model_type!r} in {config_file} (tokdyn trains LLaVA-OneVision models only)")


def sincos_positions(vlm: LlavaOnevision) -> None:
    """Set a from-scratch vision tower's position embeddings [P, C] to fixed 2-D sines and cosines of the patch
    row and column (half the channels each, as MAE's ViT starts): neighbouring patches start with similar
    embeddings, so attention can be local from the first step, which a shape (a property of several patches
    together) needs. Random embeddings left the tower seeing single patches for thousands of steps."""
    table = vlm.model.model.vision_tower.embeddings.position_embedding.weight  # [P, C]
    count, channels = table.shape
    side = math.isqrt(count)
    quarter = channels // 4
    omega = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1)))  # [C/4]
    grid = torch.arange(side, dtype=torch.float32)
    rows, cols = grid.repeat_interleave(side), grid.repeat(side)  # [P] row and column of each patch
    parts = [f(pos[:, None] * omega[None, :]) for pos in (rows, cols) for f in (torch.sin, torch.cos)]
    values = torch.cat(parts, dim=1)  # [P, 4 * (C / 4)]
    with torch.no_grad():
        table.zero_()
        table[:, :values.shape[1]] = values.to(table)


def load_model(init: ModelInit, seed: int, device: str) -> LlavaOnevision:
    """ModelInit -> a LlavaOnevision in train mode on `device` ("cpu" / "cuda").

    Raises ArchitectureMismatch for a checkpoint of another architecture or with tensors that do not fit
    its own config.
    """
    model_config = ModelConfig(path="tiny" if init.is_tiny else init.init, dtype=init.dtype, device=device, seed=seed)
    if init.is_tiny:
        try:
            size = TinySize(**init.size)
        except (TypeError, ValueError) as exc:  # an unknown size key (TypeError) or a bad value
            raise ConfigError(f"model.{exc}" if str(exc).startswith("size.") else f"model.size: {exc}") from None
        vlm = build_tiny(model_config, size, scene_tokenizer() if init.tokenizer == "scenes" else None)
        sincos_positions(vlm)
    else:
        check_checkpoint_dir(Path(init.init).expanduser())
        try:
            vlm = load_local(model_config)
        except (RuntimeError, ValueError, OSError) as exc:  # size mismatches surface as RuntimeError
            raise ArchitectureMismatch(f"model.init: the checkpoint in {init.init!r} does not load as "
                                       f"LLaVA-OneVision: {str(exc).splitlines()[0][:300]}") from None
    vlm.model.train()
    return vlm


def make_dynamics(vlm: LlavaOnevision, seed: int) -> CrossDynamicsAttention:
    """The model's cross-dynamics attention if it carries one, else a new one (identity at initialisation);
    either way it is the model's, so `save_pretrained` writes it into the checkpoint."""
    return vlm.dynamics if vlm.dynamics is not None else vlm.attach_dynamics(seed=seed)


def part_modules(vlm: LlavaOnevision, dynamics: nn.Module) -> dict[str, list[nn.Module | nn.Parameter]]:
    """PARTS name -> the modules / parameters it covers."""
    inner = vlm.model.model
    return {
        "vision": [inner.vision_tower],
        "projector": [inner.multi_modal_projector, inner.image_newline],
        "llm": [inner.language_model, vlm.model.lm_head],
        "dynamics": [dynamics],
    }


def set_trainable(vlm: LlavaOnevision, dynamics: nn.Module, freeze: tuple[str, ...]) -> list[nn.Parameter]:
    """requires_grad per part (frozen parts off) -> the trainable parameters."""
    for part, members in part_modules(vlm, dynamics).items():
        for member in members:
            params = [member] if isinstance(member, nn.Parameter) else list(member.parameters())
            for p in params:
                p.requires_grad_(part not in freeze)
    params = [p for p in vlm.model.parameters() if p.requires_grad]
    return params + [p for p in dynamics.parameters() if p.requires_grad]


def encode_frames_grad(vlm: LlavaOnevision, frames: torch.Tensor) -> torch.Tensor:
    """Frames uint8 [T, S, S, 3] -> visual tokens [T, gh, gw, D] with autograd on (the training twin of
    `LlavaOnevision.encode_frames`, which runs in inference mode)."""
    pixels = preprocess(frames, vlm.image_size, vlm.mean, vlm.std, device=vlm.device, dtype=vlm.dtype)
    config = vlm.model.config
    out = vlm.model.model.get_video_features(
        pixel_values_videos=pixels.unsqueeze(0),  # [1, T, 3, S, S]: one "video" of T frames
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
    )
    tokens = out.pooler_output[0, :-1]  # [T * gh * gw, D]; the last token is the image_newline
    return tokens.reshape(pixels.shape[0], *vlm.grid, vlm.hidden_size)  # [T, gh, gw, D]


def load_trained_state(vlm: LlavaOnevision, dynamics: nn.Module, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Put saved weights {"model": state_dict, "dynamics": state_dict} into the model; refuse tensors of
    another shape (a checkpoint of another size) with the names of the first mismatches."""
    for name, module in (("model", vlm.model), ("dynamics", dynamics)):
        own = module.state_dict()
        saved = state[name]
        bad = [k for k in own if k not in saved or saved[k].shape != own[k].shape]
        if bad or len(saved) != len(own):
            detail = ", ".join(f"{k}: {tuple(saved[k].shape) if k in saved else 'missing'} vs {tuple(own[k].shape)}"
                               for k in bad[:3])
            raise ArchitectureMismatch(f"checkpoint {name} weights do not fit the configured model ({len(bad)} "
                                       f"tensor(s) differ{': ' + detail if detail else ''}); it was written by "
                                       "a run with other model sizes: use a new output directory")
        module.load_state_dict(saved)
