"""`tokdyn train` on Ray Train: a TorchTrainer (DDP across `ray.num_workers`) around one plain per-worker loop.

    run_training(load_train_config("train-default"))      # -> <output>/model, loadable with load_vlm

Per worker: build the model (or restore it from the run's latest checkpoint), build the example pool once
(frame tokens of the frozen vision tower, memories by the pipeline's streaming compressor), then step: draw a
memory format by weight, a batch of its examples, AdamW. Every `checkpoint_every_steps` all workers call
`ray.train.report` (rank 0 attaches the checkpoint: weights, optimiser, step, RNGs). Running again with the
same output directory resumes from the latest checkpoint (Ray Train keeps the run's state in
`<output>/run`). Rank 0 logs to `<output>/metrics.jsonl` and shows a progress bar; at the end it writes the
model with `save_pretrained` to `<output>/model`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from train.checkpoint import capture_rng, read_state, restore_rng, scratch_dir, write_state
from train.config import TrainConfig
from train.model import check_checkpoint_dir, load_model, load_trained_state, make_dynamics, set_trainable
from train.objective import QAObjective

log = logging.getLogger(__name__)

RUN_NAME = "run"             # Ray Train's run folder inside the output directory
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"
LOG_EVERY_STEPS = 10         # loss / throughput lines in metrics.jsonl


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up to optim.lr over warmup_steps, then cosine decay to 10% of it at `total` steps."""
    peak, warm = config.optim.lr, config.optim.warmup_steps
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class MetricsLog:
    """Appends one JSON object per line to <output>/metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def _device(config: TrainConfig) -> str:
    if config.model.device != "auto":
        return config.model.device
    return "cuda" if config.ray.use_gpu and torch.cuda.is_available() else "cpu"


def _data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """DDP across the Ray Train workers (the module itself with one worker). Unused parameters are allowed:
    a step on a format without motion leaves the cross-dynamics attention out."""
    import ray.train.torch

    return ray.train.torch.prepare_model(module, move_to_device=False,
                                         parallel_strategy_kwargs={"find_unused_parameters": True})


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The body every Ray Train worker runs (see the module docstring)."""
    import ray.train

    from train.data import build_eval_examples, build_train_pool, steps_per_epoch

    config: TrainConfig = loop_config["config"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config.ray.resources_per_worker.get("CPU", 1))))
    torch.manual_seed(config.seed + rank)
    rng = np.random.default_rng([config.seed, rank])
    device = _device(config)
    metrics = MetricsLog(config.output_path / METRICS_FILE, rank == 0)

    vlm = load_model(config.model, config.seed, device)
    dynamics = make_dynamics(vlm, config.seed)
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = read_state(Path(directory))
        load_trained_state(vlm, dynamics, state["weights"])
    elif config.vision_warmup.steps:
        from train.warmup import vision_warmup

        metrics.write({"event": "vision_warmup", **vision_warmup(vlm, config, rank, world, _data_parallel)})

    pool = build_train_pool(vlm, config, rank, world, metrics.write)
    eval_examples = build_eval_examples(vlm, config) if rank == 0 and config.eval.suite else []
    params = set_trainable(vlm, dynamics, config.freeze)
    objective = QAObjective(vlm, dynamics)
    model = _data_parallel(objective)
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    epoch_steps = steps_per_epoch(pool, config)
    total = config.steps if config.steps is not None else config.epochs * epoch_steps
    step = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        restore_rng(state["rng"], rng)
        metrics.write({"event": "resumed", "step": step})
    weights = np.array([f.weight for f in config.formats], dtype=np.float64)
    weights /= weights.sum()

    def evaluate(at_step: int) -> dict[str, float]:
        if not eval_examples:
            return {}
        from train.evaluate import accuracy

        result = accuracy(vlm, dynamics, eval_examples)
        metrics.write({"event": "eval", "step": at_step, **result})
        return result

    bar = tqdm(total=total, initial=step, disable=rank != 0, desc="train", file=sys.stderr, mininterval=5.0,
               ascii=True, dynamic_ncols=False)
    losses: list[float] = []
    window_start, window_examples = time.perf_counter(), 0
    while step < total:
        lr = lr_at(step, total, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        fmt = int(rng.choice(len(config.formats), p=weights))
        loss, _ = model(pool.sample(fmt, config.batch_size, rng))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        window_examples += config.batch_size * world
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        record: dict[str, Any] = {}
        if step % LOG_EVERY_STEPS == 0 or step == total:
            elapsed = time.perf_counter() - window_start
            steps_in_window = len(losses)
            record = {"step": step, "epoch": step / epoch_steps, "loss": float(np.mean(losses)), "lr": lr,
                      "s_per_step": elapsed / steps_in_window, "examples_per_s": window_examples / elapsed}
            metrics.write(record)
            losses, window_start, window_examples = [], time.perf_counter(), 0
        at_eval = (config.eval.every_steps and step % config.eval.every_steps == 0) or (
            not config.eval.every_steps and step % epoch_steps == 0) or step == total
        if at_eval and rank == 0:
            record.update(evaluate(step))
            window_start = time.perf_counter()  # evaluation time is not training throughput
        if step % config.checkpoint_every_steps == 0 or step == total:
            _report(config, vlm, dynamics, optimizer, step, rng, record, rank)
    bar.close()
    if rank == 0:
        vlm.meaningful = True  # trained: its answers are no longer noise (the notes file says so)
        out = config.output_path / MODEL_DIR
        shutil.rmtree(out, ignore_errors=True)
        vlm.save_pretrained(out)


def _report(config: TrainConfig, vlm, dynamics, optimizer, step: int, rng: np.random.Generator,
            record: dict[str, Any], rank: int) -> None:
    """Every worker reports (Ray Train's collective); rank 0 attaches the checkpoint."""
    import ray.train

    metrics = {"step": step, **{k: v for k, v in record.items() if isinstance(v, (int, float))}}
    if rank != 0:
        ray.train.report(metrics)
        return
    directory = scratch_dir()
    try:
        write_state(directory, weights={"model": vlm.model.state_dict(), "dynamics": dynamics.state_dict()},
                    optimizer=optimizer.state_dict(), step=step, rng=capture_rng(rng),
                    meta={"config": asdict(config)})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def init_ray(config: TrainConfig) -> None:
    """A private local cluster bound to 127.0.0.1 (or join the configured one), unless already connected."""
    import ray

    if ray.is_initialized():
        return
    if config.ray.address == "local":
        # No dashboard (1 GB on a small machine); Ray's own INFO/WARNING lines off: without the dashboard the
        # state API is missing and Ray Train's placement-group cleaner warns about it every few seconds.
        ray.init(address="local", num_cpus=config.ray.num_cpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", logging_config=ray.LoggingConfig(log_level="ERROR"))
    else:
        ray.init(address=config.ray.address)


def run_training(config: TrainConfig) -> Path:
    """Train (or resume) per `config` on Ray Train; returns the directory of the final model."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not config.model.is_tiny:
        check_checkpoint_dir(Path(config.model.init).expanduser())  # refuse before any worker starts
    # Absolute before it reaches the workers: they run in Ray's own working directory.
    config = replace(config, output=str(config.output_path))
    output = config.output_path
    output.mkdir(parents=True, exist_ok=True)
    (output / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    init_ray(config)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config},
        scaling_config=ScalingConfig(num_workers=config.ray.num_workers, use_gpu=config.ray.use_gpu,
                                     resources_per_worker=dict(config.ray.resources_per_worker)),
        run_config=RunConfig(name=RUN_NAME, storage_path=str(output),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    trainer.fit()
    return output / MODEL_DIR
