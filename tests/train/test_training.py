"""`tokdyn train` end to end on a real local Ray cluster (Ray Train TorchTrainer, 1 CPU worker, tiny model, a
handful of short scenes): the loss goes down, checkpoints are written, the final model loads with load_vlm
and answers; a run killed after its first checkpoint resumes from it, its step count continuing; a run of every
phase (vision, an oracle curriculum stage, the main stage) lowers each phase's loss and, killed inside a stage,
resumes inside that stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import wait_for
from train.formats import MemoryFormat
from train.memory import stream_memories
from vlm import ModelConfig, load_vlm

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 480


def _config(tmp_path: Path, steps: int, eval_suite: str | None = None) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(f"""
output: {tmp_path / 'run'}
seed: 0
data:
  scenes: {{count: 3, seconds: [6, 8], width: 128, height: 96, snapshots: 2}}
formats:
  - {{method: token_dynamics, budget: 16}}
  - {{method: uniform, budget: 16, weight: 0.5}}
batch_size: 8
steps: {steps}
checkpoint_every_steps: 10
optim: {{lr: 0.003, warmup_steps: 2}}
eval: {{suite: {eval_suite or 'null'}, max_questions: 3, every_steps: 1000}}
ray: {{num_cpus: 2, resources_per_worker: {{CPU: 1}}}}
""")
    return path


def _train(config: Path, *extra: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "frontends.cli", "train", "-c", str(config), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _written(run: Path) -> int:
    """Bytes of metrics and checkpoint state the run has written so far (files may come and go meanwhile)."""
    total = 0
    for path in run.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            pass
    return total


def _crash(proc: subprocess.Popen, run: Path) -> None:
    """Kill a training driver as a crash would, and its process group (its Ray cluster); return once the run's
    files have stopped changing (a worker can outlive its driver for a moment and finish its checkpoint)."""
    os.kill(proc.pid, signal.SIGKILL)  # the driver, by pid
    proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what the driver started, if still there
    except ProcessLookupError:
        pass
    sizes: list[int] = []

    def quiet() -> bool:
        sizes.append(_written(run))
        return len(sizes) > 10 and len(set(sizes[-11:])) == 1

    wait_for(quiet, 60, "the killed run's files to stop changing")


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_short_run_lowers_loss_and_writes_a_loadable_model(tmp_path):
    proc = _train(_config(tmp_path, steps=30, eval_suite="heldout-small"))
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, out[-3000:]
    run = tmp_path / "run"
    losses = [r for r in _records(run) if "loss" in r]
    assert [r["step"] for r in losses] == [10, 20, 30]
    assert losses[-1]["loss"] < losses[0]["loss"]
    assert all(r["examples_per_s"] > 0 for r in losses)
    evals = [r for r in _records(run) if r.get("event") == "eval"]
    assert evals and evals[-1]["step"] == 30 and evals[-1]["eval_questions"] == 3
    assert 0.0 <= evals[-1]["accuracy"] <= 1.0
    assert len(list((run / "run").glob("checkpoint_*/train_state.pt"))) == 2  # num_to_keep

    model = load_vlm(ModelConfig(path=str(run / "model")))
    assert model.meaningful and model.dynamics is not None
    frames = np.zeros((4, model.image_size, model.image_size, 3), np.uint8)
    memory = stream_memories(model.encode_frames(frames), np.arange(4) / 2.0, MemoryFormat(budget=16), 4, [0])[0]
    answer = "".join(model.generate(memory.base, "What colour is the square?", max_new_tokens=8))
    assert isinstance(answer, str)


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    config = _config(tmp_path, steps=400)
    run = tmp_path / "run"
    proc = _train(config, start_new_session=True)  # its own process group: Ray's processes go with it
    try:
        wait_for(lambda: any(r.get("step", 0) >= 10 and "loss" in r for r in _records(run))
                 and (run / "run" / "checkpoint_manager_snapshot.json").is_file(), RUN_TIMEOUT_S,
                 "the first checkpoint")
    finally:
        _crash(proc, run)
    reached = max(r["step"] for r in _records(run) if "loss" in r)
    assert reached < 400
    target = reached + 20
    resumed = _train(config, "--steps", str(target))
    out, _ = resumed.communicate(timeout=RUN_TIMEOUT_S)
    assert resumed.returncode == 0, out[-3000:]
    records = _records(run)
    marks = [i for i, r in enumerate(records) if r.get("event") == "resumed"]
    assert len(marks) == 1
    start = records[marks[0]]["step"]
    assert 10 <= start <= reached and start % 10 == 0  # the latest checkpoint the killed run reported
    after = [r["step"] for r in records[marks[0]:] if "loss" in r]
    assert after and after[0] > start and after[-1] == target  # the step count continues, not restarts
    assert (run / "model" / "model.safetensors").is_file()


def _curriculum_config(tmp_path: Path) -> Path:
    path = tmp_path / "curriculum.yaml"
    path.write_text(f"""
output: {tmp_path / 'run'}
seed: 0
model: {{init: tiny, tokenizer: scenes}}
data:
  scenes: {{count: 3, seconds: [6, 8], width: 128, height: 96, snapshots: 2}}
formats:
  - {{method: token_dynamics, budget: 16}}
  - {{method: uniform, budget: 16, weight: 0.5}}
batch_size: 8
steps: 20
checkpoint_every_steps: 10
aux_weight: 1.0
focus_weight: 1.0
curriculum:
  - {{memory: oracle, steps: 40, scenes: 4, snapshots: 2, per_category: 1}}
replay: 0.5
vision_warmup: {{steps: 8, batch_frames: 2, eval_every: 4}}
optim: {{lr: 0.003, warmup_steps: 2, dynamics_lr_scale: 3.0}}
eval: {{suite: heldout-small, max_questions: 3, every_steps: 20}}
ray: {{num_cpus: 2, resources_per_worker: {{CPU: 1}}}}
""")
    return path


def test_curriculum_stages_each_lower_their_loss_and_resume_where_killed(tmp_path):
    # given a run of every phase (vision, an oracle stage, the main stage), killed inside the oracle stage
    config = _curriculum_config(tmp_path)
    run = tmp_path / "run"
    proc = _train(config, start_new_session=True)
    try:
        wait_for(lambda: any(r.get("phase") == "stage0" and r.get("step", 0) >= 10 and "loss" in r
                             for r in _records(run)), RUN_TIMEOUT_S, "the oracle stage's first checkpoint")
    finally:
        _crash(proc, run)
    # when it runs again with the same output
    resumed = _train(config)
    out, _ = resumed.communicate(timeout=RUN_TIMEOUT_S)
    assert resumed.returncode == 0, out[-3000:]
    records = _records(run)
    # then it resumed inside the oracle stage, not at the start of the run
    marks = [r for r in records if r.get("event") == "resumed"]
    assert len(marks) == 1 and marks[0]["phase"] == "stage0" and marks[0]["step"] >= 10
    assert len([r for r in records if r.get("event") == "vision_warmup"]) == 1  # the vision stage ran once
    # and every phase lowered its loss and logged its held-out curve
    vision = [r for r in records if r.get("event") == "vision_eval"]
    assert [r["step"] for r in vision] == [4, 8] and all(0 <= r["object_means"] <= 1 for r in vision)
    for phase, total in (("stage0", 40), ("main", 20)):
        losses = [r["loss"] for r in records if r.get("phase") == phase and "loss" in r and "event" not in r]
        assert losses[-1] < losses[0], (phase, losses)
        evals = [r for r in records if r.get("event") == "eval" and r.get("phase") == phase]
        assert evals and evals[-1]["step"] == total and evals[-1]["examples_seen"] == total * 8
        assert any(r.get("phase") == phase and r.get("loss_aux", 0) > 0 and r.get("loss_focus", 0) > 0
                   for r in records)
    # and the main stage replayed some of its steps from the oracle stage's pool (kept, not built again)
    replayed = [r["replayed"] for r in records if r.get("phase") == "main" and "loss" in r and "event" not in r]
    assert replayed and 0 < sum(replayed) / len(replayed) < 1
    assert not any("replayed" in r for r in records if r.get("phase") == "stage0")
    assert [r["memory"] for r in records if r.get("event") == "stage_pool"] == ["oracle", "oracle"]  # killed, resumed
    assert (run / "model" / "model.safetensors").is_file()
    assert load_vlm(ModelConfig(path=str(run / "model"))).meaningful
