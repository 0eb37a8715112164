"""LLaVA-OneVision through transformers: SigLIP tower + projector + 2x2 pooling, Qwen2 fed inputs_embeds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerBase,
    Qwen2Config,
    SiglipVisionConfig,
)

from compressor.attention import CrossDynamicsAttention, visual_tokens
from compressor.snapshot import Snapshot
from vlm.base import InputError, Question
from vlm.config import ModelConfig, ModelConfigError
from vlm.decoding import Generation
from vlm.dynamics import load_dynamics, new_dynamics, save_dynamics
from vlm.frames import preprocess
from vlm.prompt import CHATML_TEMPLATE, prompt_ids, splice_visual
from vlm.tokenizer import byte_level_tokenizer, printable_ids

# SigLIP's normalisation (the LLaVA-OneVision processors' defaults), used when a checkpoint has no
# preprocessor_config.json.
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
# tokdyn's own notes next to a saved checkpoint: whether its weights are random, which ids it may emit.
NOTES_FILE = "tokdyn_model.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


class LlavaOnevision:
    """A LLaVA-OneVision model (any size) behind the VisionLanguageModel interface.

    Visual tokens are the video path of the real model: per frame, SigLIP patch features ->
    projector -> 2x2 bilinear pooling -> grid [gh, gw] of D-dim tokens (14 x 14 = 196 at 384 px).
    Prompts use the family's own chat format (`chat_template`, the one LLaVA-OneVision was trained
    with), not whatever template a checkpoint's tokenizer ships: those differ in how they take content
    (strings for Qwen2's, typed parts for the llava-hf processor's).
    """

    family = "llava-onevision"

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        meaningful: bool,
        mean: tuple[float, float, float] = SIGLIP_MEAN,
        std: tuple[float, float, float] = SIGLIP_STD,
        max_new_tokens: int = 64,
        seed: int = 0,
        allowed_ids: list[int] | None = None,
        chat_template: str = CHATML_TEMPLATE,
        dynamics: CrossDynamicsAttention | None = None,
        use_dynamics: bool = True,
    ) -> None:
        self.model = model.eval()
        # Fuses the memory's motion into its base tokens (None: answer from the centroids alone).
        self.dynamics = dynamics
        self.use_dynamics = use_dynamics
        self.chat_template = chat_template
        self.tokenizer = tokenizer
        self.name, self.meaningful = name, meaningful
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_new_tokens, self.seed = max_new_tokens, seed
        config = model.config
        self.hidden_size = int(config.text_config.hidden_size)
        self.context_tokens = int(config.text_config.max_position_embeddings)  # prompt + answer, in tokens
        self.image_size = int(config.vision_config.image_size)
        patches = self.image_size // config.vision_config.patch_size
        self.grid = (math.ceil(patches / 2), math.ceil(patches / 2))  # 2x2 pooling, as apply_pooling does
        self.video_token_id = int(config.video_token_index)
        self.video_marker = tokenizer.convert_ids_to_tokens(self.video_token_id)
        self.device, self.dtype = model.device, model.dtype
        self.stop_ids = self._stop_ids()
        self.allowed_ids = allowed_ids
        self._allowed_mask = None
        if allowed_ids is not None:
            vocab = model.get_output_embeddings().out_features
            self._allowed_mask = torch.zeros(vocab, dtype=torch.bool, device=self.device)
            self._allowed_mask[allowed_ids + sorted(self.stop_ids)] = True

    def _stop_ids(self) -> set[int]:
        """End-of-turn ids: the tokenizer's eos, the generation config's, and ChatML's <|im_end|>."""
        configured = self.model.generation_config.eos_token_id
        ids = {self.tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
        if "<|im_end|>" in self.tokenizer.get_vocab():
            ids.add(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return {int(i) for i in ids if i is not None}

    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Frames uint8 [T, H, W, 3] RGB -> visual tokens [T, gh, gw, D] in the model dtype, one forward pass."""
        pixels = preprocess(frames, self.image_size, self.mean, self.std, device=self.device, dtype=self.dtype)
        config = self.model.config
        with torch.inference_mode():
            out = self.model.model.get_video_features(
                pixel_values_videos=pixels.unsqueeze(0),  # [1, T, 3, S, S]: one "video" of T frames
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            )
        tokens = out.pooler_output[0, :-1]  # [T * gh * gw, D]; the last token is the image_newline
        # clone: a view would keep the whole vision-tower output alive as long as the tokens are held.
        return tokens.reshape(pixels.shape[0], *self.grid, self.hidden_size).clone()  # [T, gh, gw, D]

    def attach_dynamics(self, heads: int = 4, seed: int = 0) -> CrossDynamicsAttention:
        """Give the model an untrained cross-dynamics attention (the identity until trained); returns it."""
        self.dynamics = new_dynamics(self.hidden_size, heads, seed).to(device=self.device, dtype=self.dtype)
        return self.dynamics

    def memory_tokens(self, snapshot: Snapshot) -> torch.Tensor:
        """A stream memory -> the visual tokens this model reads: ``[K + R, D]`` on its device, in its dtype.

        Base tokens are motion-fused by the trained cross-dynamics attention when the model has one and the
        config asks for it (``model.memory: dynamics``); otherwise the centroids alone (the ablation).
        """
        attention = self.dynamics if self.use_dynamics else None
        return visual_tokens(snapshot, attention).to(device=self.device, dtype=self.dtype)

    def _prompt_ids(self, num_visual: int, question: Question) -> list[int]:
        return prompt_ids(self.tokenizer, question, self.video_marker, self.video_token_id, num_visual,
                          self.chat_template)

    def count_prompt_tokens(self, num_visual: int, question: Question) -> int:
        """Prompt length in tokens: chat template + `num_visual` visual placeholders + the question."""
        return len(self._prompt_ids(num_visual, question))

    def _forward(self, embeds: torch.Tensor, past):
        # logits_to_keep=1: only the last position's logits (a 6,272-token prompt x 151k vocabulary
        # would otherwise cost gigabytes).
        out = self.model(inputs_embeds=embeds, past_key_values=past, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values

    def generate(
        self,
        visual: torch.Tensor,
        question: Question,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
    ) -> Generation:
        """Answer from visual tokens [N, D]: chat template, the N tokens spliced at N placeholders, the question.

        Returns a Generation: iterate it for text pieces; usage, finish_reason and timings follow.
        Raises InputError for visual tokens of the wrong shape, PlaceholderMismatch if the prompt does
        not hold exactly N placeholders.
        """
        if not isinstance(visual, torch.Tensor) or visual.ndim != 2 or visual.shape[1] != self.hidden_size:
            got = tuple(visual.shape) if isinstance(visual, torch.Tensor) else type(visual).__name__
            raise InputError(f"visual tokens: expected a tensor [N, {self.hidden_size}], got {got}")
        ids = torch.tensor(self._prompt_ids(visual.shape[0], question), device=self.device)  # [L]
        embed = self.model.get_input_embeddings()
        with torch.inference_mode():
            embeds = splice_visual(embed(ids), ids, visual.to(self.device), self.video_token_id)  # [L, D]
        return Generation(
            self._forward,
            embed,
            lambda token_ids: self.tokenizer.decode(token_ids, skip_special_tokens=True),
            embeds.unsqueeze(0),
            visual_tokens=int(visual.shape[0]),
            stop_ids=self.stop_ids,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            temperature=temperature,
            seed=self.seed,
            allowed_ids=self._allowed_mask,
        )

    def save_pretrained(self, directory: str | Path) -> None:
        """Weights + config, tokenizer, normalisation and tokdyn's notes -> `directory` (loadable by load_vlm)."""
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        preprocessor = {"image_mean": list(self.mean), "image_std": list(self.std),
                        "size": {"height": self.image_size, "width": self.image_size}}
        (directory / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor, indent=2))
        notes = {"random_weights": not self.meaningful, "allowed_token_ids": self.allowed_ids}
        if self.dynamics is not None:
            notes["dynamics"] = save_dynamics(self.dynamics, directory)
        (directory / NOTES_FILE).write_text(json.dumps(notes))


@dataclass(frozen=True)
class TinySize:
    """Sizes of a from-scratch LLaVA-OneVision made of the real classes (the defaults are the test model).

    image_size / patch_size: vision input in px and patch side in px; (image_size / patch_size) / 2 tokens per
    side after 2x2 pooling (112 / 4 -> 14 x 14 = 196, the real model's count). *_hidden: widths; *_layers:
    transformer layers; *_heads: attention heads (must divide the width); text_kv_heads divides text_heads.
    """

    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    image_size: int = 112
    patch_size: int = 4
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2

    def __post_init__(self) -> None:
        for name in ("vision_hidden", "vision_layers", "vision_heads", "image_size", "patch_size", "text_hidden",
                     "text_layers", "text_heads", "text_kv_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8192:
                raise ModelConfigError(f"size.{name}: expected an integer in [1, 8192], got {value!r}")
        if self.vision_hidden % self.vision_heads or self.text_hidden % self.text_heads \
                or self.text_heads % self.text_kv_heads or self.image_size % self.patch_size:
            raise ModelConfigError(f"size: expected heads dividing widths, kv heads dividing heads and patch_size "
                                   f"dividing image_size, got {self}")


def tiny_config(vocab_size: int, image_token_id: int, video_token_id: int,
                size: TinySize = TinySize()) -> LlavaOnevisionConfig:
    """LLaVA-OneVision's real classes at toy size (default: SigLIP 64-dim + Qwen2 128-dim, 2 layers each).

    112 px frames in 4 px patches give 28 x 28 patches, pooled 2x2 to the real model's 14 x 14 grid,
    so per-frame token counts (196) match the real model.
    """
    vision = SiglipVisionConfig(
        hidden_size=size.vision_hidden, intermediate_size=2 * size.vision_hidden,
        num_hidden_layers=size.vision_layers, num_attention_heads=size.vision_heads,
        image_size=size.image_size, patch_size=size.patch_size, vision_use_head=False,
    )
    text = Qwen2Config(
        hidden_size=size.text_hidden, intermediate_size=2 * size.text_hidden, num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads, num_key_value_heads=size.text_kv_heads, vocab_size=vocab_size,
        max_position_embeddings=32768, tie_word_embeddings=False,
    )
    return LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_id,
        video_token_index=video_token_id, vision_feature_select_strategy="full", vision_feature_layer=-1,
    )


def _torch_dtype(config: ModelConfig) -> torch.dtype:
    return getattr(torch, config.torch_dtype_name())  # "auto" is resolved (and logged) here, once per load


def build_tiny(config: ModelConfig, size: TinySize = TinySize(),
               tokenizer: PreTrainedTokenizerBase | None = None) -> LlavaOnevision:
    """A tiny random-weight LLaVA-OneVision built in code (seeded by config.seed); needs no files.
    `tokenizer`: any tokenizer with vlm.tokenizer.SPECIAL_TOKENS (None: one token per byte)."""
    tokenizer = byte_level_tokenizer() if tokenizer is None else tokenizer
    model_config = tiny_config(
        len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"), tokenizer.convert_tokens_to_ids("<video>"), size
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without disturbing the caller's RNG
        torch.manual_seed(config.seed)
        model = LlavaOnevisionForConditionalGeneration(model_config)
    model = model.to(device=config.device, dtype=_torch_dtype(config))
    return LlavaOnevision(
        model, tokenizer, name=config.name, meaningful=False, max_new_tokens=config.max_new_tokens,
        seed=config.seed, allowed_ids=printable_ids(tokenizer), use_dynamics=config.memory == "dynamics",
    )


def _read_json(path: Path) -> dict:
    """An optional JSON file next to a checkpoint -> its dict ({} when absent)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def load_local(config: ModelConfig) -> LlavaOnevision:
    """A checkpoint directory written by save_pretrained (e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf,
    fetched beforehand) -> LlavaOnevision on config.device in config.dtype ("auto" resolved). Never downloads."""
    directory = Path(config.path).expanduser()
    if not (directory / "config.json").is_file():
        state = "has no config.json" if directory.is_dir() else "does not exist"
        raise ModelConfigError(
            f"model.path: expected a local checkpoint directory with config.json, got {str(directory)!r} "
            f"which {state} (tokdyn never downloads: fetch the checkpoint first, or use path: tiny)"
        )
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        directory, local_files_only=True, dtype=_torch_dtype(config)
    ).to(config.device)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    preprocessor, notes = _read_json(directory / PREPROCESSOR_FILE), _read_json(directory / NOTES_FILE)
    dynamics = load_dynamics(directory, notes, int(model.config.text_config.hidden_size), model.device,
                             model.dtype, config.name)
    return LlavaOnevision(
        model, tokenizer, name=config.name, meaningful=not notes.get("random_weights", False),
        mean=tuple(preprocessor.get("image_mean", SIGLIP_MEAN)), std=tuple(preprocessor.get("image_std", SIGLIP_STD)),
        max_new_tokens=config.max_new_tokens, seed=config.seed, allowed_ids=notes.get("allowed_token_ids"),
        dynamics=dynamics, use_dynamics=config.memory == "dynamics",
    )
