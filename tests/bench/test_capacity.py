"""bench/capacity.py: FLOPs per frame from the shapes, and the capacity model's arithmetic and limits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config, SiglipVisionConfig

from bench.capacity import GPU_ASSUMPTIONS, gpu_model, publishes_per_s, streams_per_replica, vision_flops_per_frame


def test_flops_formula_matches_torch_count_of_the_real_vision_path():
    """Given a small LLaVA-OneVision of the real classes (eager attention, whose matmuls torch's counter sees),
    when 3 frames go through get_video_features, then the counted FLOPs are 3 x the formula's."""
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                image_size=56, patch_size=7, vision_use_head=False)
    text = Qwen2Config(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=300)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=298,
                                  video_token_index=299, vision_feature_select_strategy="full",
                                  vision_feature_layer=-1)
    model = LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.model.get_video_features(pixel_values_videos=torch.randn(1, 3, 3, 56, 56), vision_feature_layer=-1,
                                       vision_feature_select_strategy="full")
    assert counter.get_total_flops() == 3 * vision_flops_per_frame(vision, 32)


def test_real_size_vision_path_is_about_650_gflop_per_frame():
    flops = vision_flops_per_frame(LlavaOnevisionConfig().vision_config, 896)
    assert 6.0e11 < flops < 7.0e11  # 729 tokens x 26 layers of width 1152: published so400m figures ~0.65 TFLOP


def test_streams_per_replica_and_bad_input():
    assert streams_per_replica(0.005, 2.0, 0.7) == pytest.approx(70.0)
    with pytest.raises(ValueError, match="utilisation"):
        streams_per_replica(0.005, 2.0, 1.5)


def test_memory_publishes_each_chunk_and_the_idle_republish_between():
    assert publishes_per_s(2.0, 1.0) == 1.0  # a chunk every 2 s, re-published once 1 s later
    assert publishes_per_s(0.5, 1.0) == 2.0  # chunks faster than the re-publish period: one per chunk


def _model(**changes: float) -> dict:
    assumptions = {k: dataclasses.replace(v, value=changes.get(k, v.value)) for k, v in GPU_ASSUMPTIONS.items()}
    return gpu_model(6.4e11, 118_000, 0.007, 2.0, 2.0, 1.0, assumptions)


def test_growth_is_linear_in_replicas_until_the_snapshot_fanout_caps_it():
    """Given the model, when replicas grow, then streams grow in proportion under the per-replica bound and stop
    at the LLM replica's network cap, which no number of encoder replicas lifts."""
    model = _model()
    per = model["streams_per_replica"]["effective"]
    growth = {g["replicas"]: g for g in model["growth"]}
    assert growth[8]["streams"] == int(8 * per) and growth[8]["limit"] == model["streams_per_replica"]["bound_by"]
    assert growth[1024]["streams"] == model["fanout_cap_streams"]
    assert growth[1024]["limit"] == "LLM replica network (snapshot fan-out)"
    assert model["linear_until_replicas"] * per <= model["fanout_cap_streams"]


def test_a_slow_controller_stretches_its_rounds_but_caps_no_stream():
    model = _model()
    slow = gpu_model(6.4e11, 118_000, 0.007, 2.0, 2.0, 1.0, GPU_ASSUMPTIONS, controller_cap=500.0)
    assert slow["controller_streams_per_round"] == 500
    assert [g["streams"] for g in slow["growth"]] == [g["streams"] for g in model["growth"]]
    last = slow["growth"][-1]
    assert last["controller_round_periods"] == pytest.approx(last["streams"] / 500)
    assert model["growth"][-1]["controller_round_periods"] is None


def test_the_binding_limit_follows_the_assumptions():
    assert _model()["streams_per_replica"]["bound_by"].startswith("node CPU")  # 112 cores decoding 720p30
    assert _model(cpu_cores_per_node=1e4)["streams_per_replica"]["bound_by"] == "encoder GPU"
    slow = _model(cpu_cores_per_node=1e4, nic_bits_per_s=1e8)
    assert slow["streams_per_replica"]["bound_by"].startswith("node network")
    assert slow["fanout_cap_streams"] < _model()["fanout_cap_streams"]


def test_a_streams_processes_bound_the_node_when_they_are_heavy_enough():
    """Each stream runs two processes on its node: their measured private memory joins the limits when given."""
    assert _model()["streams_per_replica"]["node_ram"] is None  # not measured: no limit claimed
    light = gpu_model(6.4e11, 118_000, 0.007, 2.0, 2.0, 1.0, GPU_ASSUMPTIONS, stream_ram_bytes=400e6)
    assert light["streams_per_replica"]["node_ram"] == pytest.approx(2e12 * 0.7 / 400e6 / 8)  # 437: CPU binds
    assert light["streams_per_replica"]["bound_by"].startswith("node CPU")
    heavy = gpu_model(6.4e11, 118_000, 0.007, 2.0, 2.0, 1.0, GPU_ASSUMPTIONS, stream_ram_bytes=4e9)
    assert heavy["streams_per_replica"]["bound_by"].startswith("node RAM")
    assert heavy["streams_per_replica"]["effective"] == pytest.approx(2e12 * 0.7 / 4e9 / 8)
