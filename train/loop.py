"""`tokdyn train` on Ray Train: a TorchTrainer (DDP across `ray.num_workers`) around one plain per-worker loop.

    run_training(load_train_config("train-default"))      # -> <output>/model, loadable with load_vlm

A run is a sequence of phases (`phases`), each measured on held-out data as it goes:
  vision   the vision stage (train/warmup.py): every object's tokens pulled to its concept token on fresh frames;
  stageN   the curriculum (`curriculum`): reading taught on clean memories first (oracle: the scenes' true label
           maps through the concept tokens and the streaming compressor), then on real ones;
  main     the top-level `steps`, `formats` and `data`: real memories of every format.
Every reading phase trains the LLM (and the cross-dynamics attention) on the answer loss plus the dense
signals of train/objective.py (each memory token names its object's words; the answer looks at the tokens it
depends on), with its own warm-up and cosine decay. Every `checkpoint_every_steps` of any phase (and at its
end) all workers call `ray.train.report` (rank 0 attaches the checkpoint: weights, the phase's optimiser, its
step, RNGs), so running again with the same output directory resumes in the phase it stopped in (Ray Train
keeps the run's state in `<output>/run`). Rank 0 logs to `<output>/metrics.jsonl` (each phase's curve) and
shows a progress bar; at the end it writes the model with `save_pretrained` to `<output>/model`.
"""

from __future__ import annotations

import json
import logging
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
from train.config import Stage, TrainConfig
from train.model import check_checkpoint_dir, load_model, load_trained_state, make_dynamics, set_trainable
from train.objective import QAObjective
from train.scene_data import ExamplePool
from train.schedule import warmup_cosine

log = logging.getLogger(__name__)

RUN_NAME = "run"             # Ray Train's run folder inside the output directory
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"
LOG_EVERY_STEPS = 10         # loss / throughput lines in metrics.jsonl


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up to optim.lr over warmup_steps, then cosine decay to 10% of it at `total` steps."""
    return warmup_cosine(step, total, config.optim.lr, config.optim.warmup_steps)


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


def phases(config: TrainConfig) -> list[str]:
    """The run's phases in order: "vision" (when its warm-up has steps), "stage0".. (the curriculum), "main"."""
    return (["vision"] if config.vision_warmup.steps else []) + [f"stage{i}" for i in range(len(config.curriculum))] \
        + ["main"]


class Worker:
    """One Ray Train worker's run: the model, the data generator, the metrics log, and where a checkpoint
    says it stopped (`phase`, `step` within it, the optimiser state of that phase)."""

    def __init__(self, config: TrainConfig, rank: int, world: int) -> None:
        import ray.train

        self.config, self.rank, self.world = config, rank, world
        torch.set_num_threads(max(1, int(config.ray.resources_per_worker.get("CPU", 1))))
        torch.manual_seed(config.seed + rank)
        self.rng = np.random.default_rng([config.seed, rank])
        self.metrics = MetricsLog(config.output_path / METRICS_FILE, rank == 0)
        self.vlm = load_model(config.model, config.seed, _device(config))
        self.dynamics = make_dynamics(self.vlm, config.seed)
        self.phases = phases(config)
        self.phase, self.step, self.optimizer_state, self.extra = 0, 0, None, {}
        self.stage_pool: ExamplePool | None = None  # the last curriculum stage's examples, for the main's replay
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                state = read_state(Path(directory))
            load_trained_state(self.vlm, self.dynamics, state["weights"])
            progress = state["meta"].get("progress", {"phase": len(self.phases) - 1, "extra": {}})
            self.phase, self.step = int(progress["phase"]), int(state["step"])
            self.optimizer_state, self.extra = state["optimizer"], progress.get("extra", {})
            restore_rng(state["rng"], self.rng)
            self.metrics.write({"event": "resumed", "phase": self.phases[self.phase], "step": self.step})

    def checkpoint(self, phase: int, step: int, optimizer: torch.optim.Optimizer, record: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> None:
        """Every worker reports (Ray Train's collective); rank 0 attaches the state of phase `phase` at `step`."""
        _report(self.config, self.vlm, self.dynamics, optimizer, step, self.rng, record, self.rank,
                {"phase": phase, "extra": extra or {}})

    def resume_point(self, phase: int) -> tuple[int, dict | None, dict[str, Any]]:
        """(step, optimiser state, extra) to start phase `phase` from: the checkpoint's if it stopped there."""
        if phase == self.phase:
            return self.step, self.optimizer_state, self.extra
        return 0, None, {}

    def run(self) -> None:
        for index, name in enumerate(self.phases):
            if index < self.phase:
                continue  # done before the checkpoint this run resumed from
            if name == "vision":
                self.run_vision(index)
            else:
                self.run_reading(index, self.config.curriculum[int(name[5:])] if name != "main" else None)
        if self.rank == 0:
            self.vlm.meaningful = True  # trained: its answers are no longer noise (the notes file says so)
            out = self.config.output_path / MODEL_DIR
            shutil.rmtree(out, ignore_errors=True)
            self.vlm.save_pretrained(out)

    def run_vision(self, index: int) -> None:
        from train.warmup import vision_warmup

        step, optimizer_state, extra = self.resume_point(index)

        def checkpoint(at: int, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
            self.checkpoint(index, at, optimizer, {"phase": "vision"}, state)

        figures = vision_warmup(self.vlm, self.config, self.rank, self.world, _data_parallel, self.metrics.write,
                                start=(step, optimizer_state, extra), checkpoint=checkpoint,
                                every=self.config.checkpoint_every_steps)
        self.metrics.write({"event": "vision_warmup", **figures})

    def run_reading(self, index: int, stage: Stage | None) -> None:
        """A reading phase: a curriculum `stage`, or the main phase (None) from the top-level settings."""
        from train.data import build_eval_examples, build_stage_pool, build_train_pool, steps_per_epoch

        config, vlm, name = self.config, self.vlm, self.phases[index]
        known_total = stage.steps if stage is not None else config.steps
        if known_total is not None and self.resume_point(index)[0] >= known_total:
            return  # a checkpoint at this phase's end: nothing left to train, no pool to build
        replay = None
        if stage is None:
            pool = build_train_pool(vlm, config, self.rank, self.world, self.metrics.write)
            total = config.steps if config.steps is not None else config.epochs * steps_per_epoch(pool, config)
            oracle = False
            if config.replay:  # the last stage's pool: kept from it, or rebuilt when resuming into this phase
                replay = self.stage_pool or build_stage_pool(vlm, config, config.curriculum[-1], self.rank,
                                                             self.world, self.metrics.write)
        else:
            pool = build_stage_pool(vlm, config, stage, self.rank, self.world, self.metrics.write)
            total, oracle = stage.steps, stage.memory == "oracle"
        eval_examples = build_eval_examples(vlm, config, oracle) if self.rank == 0 and config.eval.suite else []
        params = set_trainable(vlm, self.dynamics, config.freeze)
        objective = QAObjective(vlm, self.dynamics, config.aux_weight, config.focus_weight, config.motion_weight)
        model = _data_parallel(objective)
        own = {id(p) for p in self.dynamics.parameters()}
        groups = [{"params": [p for p in params if id(p) not in own], "lr_scale": 1.0},
                  {"params": [p for p in params if id(p) in own], "lr_scale": config.optim.dynamics_lr_scale}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.optim.lr,
                                      weight_decay=config.optim.weight_decay)
        step, optimizer_state, _ = self.resume_point(index)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        weights = format_weights(config, pool)
        replay_weights = format_weights(config, replay) if replay is not None else None
        bar = tqdm(total=total, initial=step, disable=self.rank != 0, desc=f"train {name}", file=sys.stderr,
                   mininterval=5.0, ascii=True, dynamic_ncols=False)
        losses: list[float] = []
        window_start, window_examples, replays = time.perf_counter(), 0, 0
        while step < total:
            lr = lr_at(step, total, config)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            replayed = replay is not None and self.rng.random() < config.replay
            source, p = (replay, replay_weights) if replayed else (pool, weights)
            replays += replayed
            fmt = int(self.rng.choice(len(config.formats), p=p))
            loss, _ = model(source.sample(fmt, config.batch_size, self.rng))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            window_examples += config.batch_size * self.world
            bar.update(1)
            record: dict[str, Any] = {}
            if step % LOG_EVERY_STEPS == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                record = {"phase": name, "step": step, "loss": float(np.mean(losses)), "lr": lr,
                          **{f"loss_{k}": v for k, v in objective.last.items()},
                          "s_per_step": elapsed / len(losses), "examples_per_s": window_examples / elapsed,
                          **({"replayed": replays / len(losses)} if replay is not None else {})}
                self.metrics.write(record)
                losses, window_start, window_examples, replays = [], time.perf_counter(), 0, 0
            at_eval = (config.eval.every_steps and step % config.eval.every_steps == 0) or step == total
            if at_eval and eval_examples:
                from train.evaluate import accuracy

                result = accuracy(vlm, self.dynamics, eval_examples)
                record.update(result)
                self.metrics.write({"event": "eval", "phase": name, "step": step,
                                    "examples_seen": step * config.batch_size * self.world, **result})
                window_start = time.perf_counter()  # evaluation time is not training throughput
            if step % config.checkpoint_every_steps == 0 or step == total:
                self.checkpoint(index, step, optimizer, record)
        bar.close()
        objective.serving()
        self.stage_pool = pool if stage is not None and config.replay else None  # else freed before the next pool


def format_weights(config: TrainConfig, pool: ExamplePool) -> np.ndarray:
    """[len(formats)] probabilities of drawing each format's batch from `pool`: the configured weights of the
    formats it has examples of."""
    weights = np.array([f.weight if pool.by_format[i] else 0.0 for i, f in enumerate(config.formats)])
    return weights / weights.sum()


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The body every Ray Train worker runs (see the module docstring)."""
    import ray.train

    ctx = ray.train.get_context()
    Worker(loop_config["config"], ctx.get_world_rank(), ctx.get_world_size()).run()


def _report(config: TrainConfig, vlm, dynamics, optimizer, step: int, rng: np.random.Generator,
            record: dict[str, Any], rank: int, progress: dict[str, Any]) -> None:
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
                    meta={"config": asdict(config), "progress": progress})
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
