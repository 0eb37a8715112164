"""Model configuration: which VLM family, which weights, where they run, in which dtype."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from configs.schema import ConfigError, check

log = logging.getLogger(__name__)

#: The path value that builds a tiny random-weight model in code instead of loading a checkpoint.
TINY = "tiny"

#: "auto" picks per machine at model load (resolve_dtype); the others are used as given.
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: How a stream memory reaches the model: motion fused into the base tokens by the checkpoint's trained
#: cross-dynamics attention ("dynamics"; centroids alone when the checkpoint has none), or "centroids" always
#: (the key-map-free ablation).
MEMORY_INPUTS = ("dynamics", "centroids")


class ModelConfigError(ConfigError):
    """A model setting is out of range; the message names the field, what is expected and what was given."""


@dataclass(frozen=True)
class ModelConfig:
    """Which vision-language model answers questions and encodes frames.

    family:          registry name of the VLM family ("llava-onevision").
    path:            "tiny" builds a tiny configuration of the family's real classes in code (random weights,
                     answers are not meaningful); otherwise a local directory written by `save_pretrained`
                     (no download ever happens).
    dtype:           weight dtype: "auto" (bfloat16 on a GPU or a CPU with native bf16 matmuls, else float32;
                     see resolve_dtype), "float32", "bfloat16" or "float16".
    device:          torch device string, "cpu" or "cuda" / "cuda:N".
    max_new_tokens:  default cap on generated tokens per answer (a request may ask for fewer).
    seed:            seed for the tiny model's random weights and for sampling when temperature > 0.
    encode_batch_frames: most frames the encoder pushes through the vision tower in one forward pass.
    memory:          "dynamics" (motion fused by the trained cross-dynamics attention, when the checkpoint has
                     one) or "centroids" (base tokens alone: the ablation); see MEMORY_INPUTS.
    """

    family: str = "llava-onevision"
    path: str = TINY
    dtype: str = "float32"  # exact and the same everywhere (tests); the shipped configs say "auto"
    device: str = "cpu"
    max_new_tokens: int = 64
    seed: int = 0
    encode_batch_frames: int = 32
    memory: str = "dynamics"

    def __post_init__(self) -> None:
        error = ModelConfigError
        check(bool(self.family), "family", "a registered family name", self.family, error)
        check(bool(self.path), "path", f"'{TINY}' or a local checkpoint directory", self.path, error)
        check(self.dtype in DTYPES, "dtype", f"one of {DTYPES}", self.dtype, error)
        check(self.device == "cpu" or self.device.startswith("cuda"), "device", "'cpu' or 'cuda[:N]'", self.device,
              error)
        check(self.max_new_tokens >= 1, "max_new_tokens", ">= 1", self.max_new_tokens, error)
        check(self.memory in MEMORY_INPUTS, "memory", f"one of {MEMORY_INPUTS}", self.memory, error)
        check(self.encode_batch_frames >= 1, "encode_batch_frames", ">= 1", self.encode_batch_frames, error)

    def torch_dtype_name(self) -> str:
        """The dtype to load the weights in: `dtype`, or for "auto" `resolve_dtype(device)`, logged with why."""
        if self.dtype != "auto":
            return self.dtype
        dtype, reason = resolve_dtype(self.device)
        log.info("model %s: dtype auto -> %s (%s)", self.name, dtype, reason)
        return dtype

    @property
    def is_tiny(self) -> bool:
        return self.path == TINY

    @property
    def name(self) -> str:
        """Model name reported to clients, e.g. "tiny-llava-onevision" or "llava-onevision:<dir name>"."""
        if self.is_tiny:
            return f"tiny-{self.family}"
        return f"{self.family}:{self.path.rstrip('/').rsplit('/', 1)[-1]}"


def resolve_dtype(device: str) -> tuple[str, str]:
    """What `dtype: auto` means on `device` ("cpu", "cuda", "cuda:N"): (dtype name, the reason, for logs).

    bfloat16 on a GPU, and on a CPU whose matmuls run natively in bf16 (AMX-BF16 or AVX512-BF16);
    float32 on other CPUs, where bfloat16 is emulated (46x slower than float32 measured on an AVX2 EPYC).
    """
    import torch  # here, not at module top: reading a config must not load torch

    if device.startswith("cuda"):
        return "bfloat16", f"GPU device {device}"
    capabilities = torch.cpu.get_capabilities()
    native = [name for name in ("amx_bf16", "avx512_bf16") if capabilities.get(name)]
    cpu = f"CPU {capabilities.get('cpu_name', '?')}, capability {torch.backends.cpu.get_cpu_capability()}"
    if native:
        return "bfloat16", f"{cpu} with native bf16 ({', '.join(native)})"
    return "float32", f"{cpu} without native bf16 (no AMX-BF16 / AVX512-BF16): bfloat16 would be emulated"
