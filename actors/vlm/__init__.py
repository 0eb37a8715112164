"""Vision-language models through transformers, behind one interface per family (LLaVA-OneVision first).

    model = load_vlm(ModelConfig(path="tiny"))          # or path="/models/llava-onevision-qwen2-0.5b-ov-hf"
    tokens = model.encode_frames(frames)                # uint8 [T, S, S, 3] -> [T, 14, 14, D]
    for piece in model.generate(visual, "What happened?"):   # visual [N, D]
        print(piece, end="")
"""

from actors.vlm.base import InputError, PlaceholderMismatch, VisionLanguageModel
from actors.vlm.config import TINY, ModelConfig, ModelConfigError
from actors.vlm.decoding import Generation
from actors.vlm.registry import FAMILIES, Family, load_vlm, register_family
from actors.vlm.serving import NOT_MEANINGFUL, Answerer, Encoder

__all__ = [
    "FAMILIES", "NOT_MEANINGFUL", "TINY", "Answerer", "Encoder", "Family", "Generation", "InputError",
    "ModelConfig", "ModelConfigError", "PlaceholderMismatch", "VisionLanguageModel", "load_vlm", "register_family",
]
