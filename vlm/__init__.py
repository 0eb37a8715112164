"""Vision-language models through transformers, behind one interface per family (LLaVA-OneVision first).

    model = load_vlm(ModelConfig(path="tiny"))          # or path="/models/llava-onevision-qwen2-0.5b-ov-hf"
    tokens = model.encode_frames(frames)                # uint8 [T, S, S, 3] -> [T, 14, 14, D]
    for piece in model.generate(visual, "What happened?"):   # visual [N, D]
        print(piece, end="")
"""

import importlib
from typing import Any

# Public names -> the module that defines them. Resolved on first use (PEP 562) so that importing a light
# piece, e.g. `from vlm import ModelConfig` in a config or a source actor, does not load torch and
# transformers (seconds per process).
_EXPORTS = {
    "InputError": "vlm.base", "PlaceholderMismatch": "vlm.base",
    "VisionLanguageModel": "vlm.base",
    "TINY": "vlm.config", "ModelConfig": "vlm.config", "ModelConfigError": "vlm.config",
    "resolve_dtype": "vlm.config",
    "Generation": "vlm.decoding",
    "FAMILIES": "vlm.registry", "Family": "vlm.registry", "load_vlm": "vlm.registry",
    "register_family": "vlm.registry",
    "NOT_MEANINGFUL": "vlm.serving", "Answerer": "vlm.serving", "Encoder": "vlm.serving",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
