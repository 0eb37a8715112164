"""The VLM family interface on LLaVA-OneVision's real transformers classes at tiny size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm import (
    InputError,
    ModelConfig,
    ModelConfigError,
    PlaceholderMismatch,
    VisionLanguageModel,
    load_vlm,
    resolve_dtype,
)
from vlm.llava_onevision import LlavaOnevision, tiny_config
from vlm.prompt import normalise_messages, splice_visual
from vlm.tokenizer import byte_level_tokenizer
from transformers import LlavaOnevisionForConditionalGeneration

QUESTION = "What is the person in the red coat doing?"


@pytest.fixture(scope="module")
def model() -> LlavaOnevision:
    return load_vlm(ModelConfig(path="tiny", seed=0))


def frames(t: int = 2, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)


def visual(model: LlavaOnevision, n: int = 12) -> torch.Tensor:
    return model.encode_frames(frames(1)).reshape(-1, model.hidden_size)[:n]  # [n, D]


# --- encoding -----------------------------------------------------------------------------------------


def test_tiny_model_follows_the_interface(model):
    assert isinstance(model, VisionLanguageModel)
    assert (model.hidden_size, model.grid, model.image_size) == (128, (14, 14), 112)
    assert model.name == "tiny-llava-onevision" and model.meaningful is False


def test_encode_frames_gives_a_token_grid_per_frame(model):
    tokens = model.encode_frames(frames(3))
    assert tokens.shape == (3, 14, 14, 128) and tokens.dtype == torch.float32
    assert torch.isfinite(tokens).all()


def test_frames_of_another_size_are_resized_and_read_only_arrays_accepted(model):
    wide = np.random.default_rng(1).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    wide.flags.writeable = False  # as received zero-copy from ZeroMQ
    assert model.encode_frames(wide).shape == (2, 14, 14, 128)


def test_frame_encoding_is_per_frame(model):
    """A frame's tokens do not depend on the other frames in the batch."""
    batch = frames(3)
    together = model.encode_frames(batch)
    alone = model.encode_frames(batch[1:2])
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-5)


def test_bfloat16_model_encodes_in_bfloat16():
    model = load_vlm(ModelConfig(path="tiny", dtype="bfloat16"))
    assert model.encode_frames(frames(1)).dtype == torch.bfloat16


def test_real_geometry_gives_196_tokens_per_frame():
    """384 px frames in 14 px patches (27 x 27) pool 2x2 to 14 x 14, as in LLaVA-OneVision-0.5B."""
    tokenizer = byte_level_tokenizer()
    config = tiny_config(len(tokenizer), 259, 260)
    config.vision_config.image_size, config.vision_config.patch_size = 384, 14
    config.vision_config.num_hidden_layers = 1
    vlm = LlavaOnevision(LlavaOnevisionForConditionalGeneration(config), tokenizer, name="t", meaningful=False)
    assert vlm.grid == (14, 14)
    assert vlm.encode_frames(frames(1, size=384)).shape == (1, 14, 14, 128)


@pytest.mark.parametrize(
    ("bad", "expected", "actual"),
    [
        (np.zeros((2, 112, 112, 3), np.float32), "uint8", "float32"),
        (np.zeros((112, 112, 3), np.uint8), "[T, H, W, 3]", "(112, 112, 3)"),
        (np.zeros((2, 112, 112, 4), np.uint8), "[T, H, W, 3]", "(2, 112, 112, 4)"),
        (np.zeros((0, 112, 112, 3), np.uint8), "[T, H, W, 3]", "(0, 112, 112, 3)"),
        ([[1, 2, 3]], "numpy array or tensor", "list"),
    ],
)
def test_bad_frames_raise_naming_expected_and_actual(model, bad, expected, actual):
    with pytest.raises(InputError) as err:
        model.encode_frames(bad)
    assert expected in str(err.value) and actual in str(err.value)
    assert isinstance(err.value, ValueError)


# --- prompts and placeholders -----------------------------------------------------------------------


def test_prompt_is_template_then_visual_tokens_then_question(model):
    ids = model._prompt_ids(5, QUESTION)
    at = ids.index(model.video_token_id)
    assert ids[at:at + 5] == [model.video_token_id] * 5 and ids.count(model.video_token_id) == 5
    before, after = model.tokenizer.decode(ids[:at]), model.tokenizer.decode(ids[at + 5:])
    assert before.startswith("<|im_start|>system") and before.endswith("<|im_start|>user\n")
    assert QUESTION in after and after.endswith("<|im_start|>assistant\n")
    assert model.count_prompt_tokens(5, QUESTION) == len(ids)


def test_splice_puts_visual_tokens_at_placeholders_and_checks_the_count():
    ids = torch.tensor([1, 9, 9, 2, 9])
    embeds = torch.zeros(5, 4)
    vis = torch.arange(12.0).reshape(3, 4)
    out = splice_visual(embeds, ids, vis, placeholder_id=9)
    torch.testing.assert_close(out[ids == 9], vis)
    assert out[ids != 9].abs().sum() == 0
    with pytest.raises(PlaceholderMismatch, match="placeholders in the prompt: 3, visual tokens given: 2"):
        splice_visual(embeds, ids, vis[:2], placeholder_id=9)


def test_a_typed_marker_in_the_question_adds_no_placeholder(model):
    sneaky = f"{model.video_marker} {QUESTION}"
    assert model._prompt_ids(4, sneaky).count(model.video_token_id) == 4
    generation = model.generate(visual(model, 4), sneaky, max_new_tokens=3)  # no PlaceholderMismatch
    assert generation.usage["prompt_tokens"] == model.count_prompt_tokens(4, QUESTION) + 1  # the space stays


def test_visual_tokens_of_the_wrong_width_raise(model):
    with pytest.raises(InputError, match=r"expected a tensor \[N, 128\], got \(4, 64\)"):
        model.generate(torch.zeros(4, 64), QUESTION)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "non-empty list"),
        ([{"role": "robot", "content": "hi"}], "role in"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "expected 'user'"),
        ([{"role": "user", "content": [{"text": "no type"}]}], r"content\[0\]"),
        ([{"role": "user", "content": 5}], "string or a list of parts"),
    ],
)
def test_bad_messages_raise(messages, match):
    with pytest.raises(InputError, match=match):
        normalise_messages(messages)


def test_openai_content_parts_become_text():
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "stream://cam"}},
                                             {"type": "text", "text": "What moved?"}]}]
    assert normalise_messages(messages) == [{"role": "user", "content": "What moved?"}]


# --- generation ---------------------------------------------------------------------------------------


def test_generation_streams_pieces_that_join_to_the_full_text(model):
    generation = model.generate(visual(model), QUESTION, max_new_tokens=24)
    pieces = list(generation)
    assert len(pieces) >= 2 and all(pieces)
    assert "".join(pieces) == generation.text == model.tokenizer.decode(generation.token_ids)
    stopped = generation.finish_reason == "stop"
    assert generation.finish_reason in ("stop", "length")
    assert generation.usage == {
        "prompt_tokens": model.count_prompt_tokens(12, QUESTION),
        "visual_tokens": 12,
        "completion_tokens": len(generation.token_ids) + stopped,
        "total_tokens": model.count_prompt_tokens(12, QUESTION) + len(generation.token_ids) + stopped,
    }
    assert generation.ttft_s > 0 and generation.prefill_s > 0


def test_max_new_tokens_ends_with_length(model):
    generation = model.generate(visual(model), "Why?", max_new_tokens=1)
    list(generation)
    assert len(generation.token_ids) <= 1
    assert generation.finish_reason == ("length" if generation.token_ids else "stop")


def test_greedy_decoding_is_deterministic_across_builds(model):
    again = load_vlm(ModelConfig(path="tiny", seed=0))
    first = model.generate(visual(model), QUESTION, max_new_tokens=16)
    second = again.generate(visual(again), QUESTION, max_new_tokens=16)
    assert "".join(first) == "".join(second)


def test_seeded_sampling_is_reproducible(model):
    texts = {"".join(model.generate(visual(model), QUESTION, max_new_tokens=16, temperature=1.0)) for _ in range(2)}
    assert len(texts) == 1


def test_answers_depend_on_the_visual_tokens(model):
    """The spliced tokens reach the LLM: different memories give different next-token logits."""
    ids = torch.tensor(model._prompt_ids(12, QUESTION))
    embed = model.model.get_input_embeddings()
    with torch.inference_mode():
        logits = [
            model._forward(splice_visual(embed(ids), ids, v, model.video_token_id)[None], None)[0]
            for v in (visual(model), torch.zeros(12, 128))
        ]
    assert not torch.allclose(*logits)


# --- loading ------------------------------------------------------------------------------------------


def test_local_checkpoint_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert {"config.json", "tokenizer.json", "preprocessor_config.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = load_vlm(ModelConfig(path=str(tmp_path), dtype="float32", device="cpu", max_new_tokens=16))
    assert type(loaded) is LlavaOnevision and loaded.meaningful is False
    assert (loaded.hidden_size, loaded.grid, loaded.image_size) == (model.hidden_size, model.grid, model.image_size)
    torch.testing.assert_close(loaded.encode_frames(frames(2)), model.encode_frames(frames(2)))
    assert "".join(loaded.generate(visual(loaded), QUESTION)) == "".join(
        model.generate(visual(model), QUESTION, max_new_tokens=16)
    )


def test_local_checkpoint_in_bfloat16(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = load_vlm(ModelConfig(path=str(tmp_path), dtype="bfloat16"))
    assert loaded.dtype == torch.bfloat16 and loaded.encode_frames(frames(1)).dtype == torch.bfloat16


@pytest.mark.parametrize("make_dir", [False, True])
def test_missing_checkpoint_is_a_clear_error(tmp_path, make_dir):
    path = tmp_path / "llava-onevision-qwen2-0.5b-ov-hf"
    if make_dir:
        path.mkdir()
    with pytest.raises(ModelConfigError, match="never downloads") as err:
        load_vlm(ModelConfig(path=str(path)))
    assert str(path) in str(err.value)
    assert ("has no config.json" if make_dir else "does not exist") in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "int8"}, "^dtype: expected one of"),
        ({"device": "tpu"}, "^device: expected"),
        ({"max_new_tokens": 0}, "^max_new_tokens: expected >= 1"),
        ({"path": ""}, "^path: expected"),
        ({"encode_batch_frames": 0}, "^encode_batch_frames: expected >= 1"),
    ],
)
def test_model_config_validates(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        ModelConfig(**kwargs)


def test_dtype_auto_is_bfloat16_on_a_gpu_and_follows_the_cpu_otherwise():
    import torch

    assert resolve_dtype("cuda:1")[0] == "bfloat16"
    dtype, reason = resolve_dtype("cpu")
    native = torch.cpu.get_capabilities()
    assert dtype == ("bfloat16" if native.get("avx512_bf16") or native.get("amx_bf16") else "float32")
    assert torch.backends.cpu.get_cpu_capability() in reason
    model = load_vlm(ModelConfig(path="tiny", dtype="auto"))
    assert model.dtype == getattr(torch, dtype)


def test_unknown_family_is_refused():
    with pytest.raises(ModelConfigError, match="expected one of \\['llava-onevision'\\], got 'blip'"):
        load_vlm(ModelConfig(family="blip"))


@pytest.mark.gpu
def test_tiny_model_runs_on_cuda_in_bfloat16():
    model = load_vlm(ModelConfig(path="tiny", device="cuda", dtype="bfloat16"))
    tokens = model.encode_frames(frames(2))
    assert tokens.device.type == "cuda" and tokens.shape == (2, 14, 14, 128)
    generation = model.generate(tokens.reshape(-1, 128)[:16], QUESTION, max_new_tokens=8)
    assert "".join(generation) == generation.text and generation.finish_reason in ("stop", "length")
