"""Model configuration: which VLM family, which weights, where they run."""

from __future__ import annotations

from dataclasses import dataclass

#: The path value that builds a tiny random-weight model in code instead of loading a checkpoint.
TINY = "tiny"

DTYPES = ("float32", "bfloat16", "float16")
#: How a stream memory reaches the model: motion fused into the base tokens by the checkpoint's trained
#: cross-dynamics attention ("dynamics"; centroids alone when the checkpoint has none), or "centroids" always
#: (the key-map-free ablation).
MEMORY_INPUTS = ("dynamics", "centroids")


class ModelConfigError(ValueError):
    """A model setting is out of range; the message names the field, what is expected and what was given."""


@dataclass(frozen=True)
class ModelConfig:
    """Which vision-language model answers questions and encodes frames.

    family:          registry name of the VLM family ("llava-onevision").
    path:            "tiny" builds a tiny configuration of the family's real classes in code (random weights,
                     answers are not meaningful); otherwise a local directory written by `save_pretrained`
                     (no download ever happens).
    dtype:           weight dtype: "float32", "bfloat16" or "float16".
    device:          torch device string, "cpu" or "cuda" / "cuda:N".
    max_new_tokens:  default cap on generated tokens per answer (a request may ask for fewer).
    seed:            seed for the tiny model's random weights and for sampling when temperature > 0.
    encode_batch_frames: most frames the encoder pushes through the vision tower in one forward pass.
    memory:          "dynamics" (motion fused by the trained cross-dynamics attention, when the checkpoint has
                     one) or "centroids" (base tokens alone: the ablation); see MEMORY_INPUTS.
    """

    family: str = "llava-onevision"
    path: str = TINY
    dtype: str = "float32"
    device: str = "cpu"
    max_new_tokens: int = 64
    seed: int = 0
    encode_batch_frames: int = 32
    memory: str = "dynamics"

    def __post_init__(self) -> None:
        if not self.family:
            raise ModelConfigError("model.family: expected a registered family name, got ''")
        if not self.path:
            raise ModelConfigError(f"model.path: expected '{TINY}' or a local checkpoint directory, got ''")
        if self.dtype not in DTYPES:
            raise ModelConfigError(f"model.dtype: expected one of {DTYPES}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ModelConfigError(f"model.device: expected 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.max_new_tokens < 1:
            raise ModelConfigError(f"model.max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        if self.memory not in MEMORY_INPUTS:
            raise ModelConfigError(f"model.memory: expected one of {MEMORY_INPUTS}, got {self.memory!r}")
        if self.encode_batch_frames < 1:
            raise ModelConfigError(f"model.encode_batch_frames: expected >= 1, got {self.encode_batch_frames}")

    @property
    def is_tiny(self) -> bool:
        return self.path == TINY

    @property
    def name(self) -> str:
        """Model name reported to clients, e.g. "tiny-llava-onevision" or "llava-onevision:<dir name>"."""
        if self.is_tiny:
            return f"tiny-{self.family}"
        return f"{self.family}:{self.path.rstrip('/').rsplit('/', 1)[-1]}"
