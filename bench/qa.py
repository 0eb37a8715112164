"""Answer accuracy on the scene video-QA suite, per reduction method and token budget.

    python bench/qa.py [--quick] [--json PATH] [--model DIR] [--suite NAME] [--only stages|heldout|long|hour]

Stages (where an answer is lost, token_dynamics@32): "vision", the vision path's nearest-concept accuracy
(train/oracle.py, train/warmup.py) on 96 frames of held-out scenes, per object (its mean token in a frame, what
a cluster hands the reader), per object cell (shape and colour apart) and per background cell; "oracle
memory", the suite asked of memories built from the scenes' true label maps through the concept tokens and
the same streaming compressor (perfect vision and clustering); "real memory", the model as shipped. Then the
per-token probe (bench/probe.py: is the information in the memory at all?): each base token's object, shape,
colour, zone, direction and entry second, as the key map and the scenes' label maps define them, named by a
small supervised probe from the token and its motion features; trained on the memories of 60 training scenes
(6 snapshots each) and scored on the held-out scenes' last memories, once on the real memories and once on the
oracle memories of the same scenes (the ceiling), per attribute against chance.

Held-out formats, for every held-out scene: the frames a 2 frames/s pipeline samples, resized like the source actor,
encoded once by the model's vision tower; then, per memory format, the memory after the scene's last chunk,
built by the same streaming compressor code the pipeline runs (train/memory.py); then every question of the
scene, answered greedily through the path the LLM actor answers with (`model.generate`) and scored by
normalised exact match (times within +-1 s: scenes/questions.py).

Formats: `full` = every token of 16 uniformly sampled frames (3,136 tokens: all 120 sampled frames would be
23,520, too long for this CPU), `token_dynamics` with the trained cross-dynamics attention, `token_dynamics`
centroid-only (the key map never reaches the model), `offline_token_dynamics`, `uniform`, `pooling`, `dycoke`,
`tome`, at budgets 16, 32 and 64, and at 32 the adaptive `token_dynamics` memory configs/train-adaptive.yaml
trains on (clusters more alike than its merge_similarity merged, down to k_min). One model answers them all:
the shipped model is trained on a mix of these formats (configs/train-default.yaml and train-adaptive.yaml say
which, with weights). TokDense = accuracy (%) / visual tokens.
Time to first token is the mean over the questions of each format (prefill of visual + text tokens).

Long scenes (suite "long", 10 minutes at 2 frames/s): questions about their first and last minute, against
the same first-minute questions asked of a 1-minute stream of the scene's first minute; time to first token
of the 10-minute memory against the 1-minute one.

An hour of scene (suite "hour", 3,600 s at 2 frames/s, token_dynamics@32 with the pipeline's default compressor
config): each scene plays chunk by chunk through what the memory actor runs per chunk (actors/memory.py): the
live streaming compressor and a SegmentStore (compressor/segments.py, a temporary folder) that seals a segment
every `segment_s` of media; frames are rendered and encoded HOUR_BATCH_FRAMES at a time, so the hour's tokens
never sit in memory at once. Then, rows labelled by what they measure:
  "hour: last-minute questions, live memory": the live memory after the hour, asked about its last minute;
  "hour: first-minute questions, window from segments": a memory of the window [0, 59.5 s] (the frames of the
      first minute) built from the segments the way the LLM actor answers a window (window_from_folder, the live
      memory's K), asked about the first minute, an hour back;
  "hour: first-minute questions, live memory": the same questions asked of the live memory (no window);
  "1 min: first-minute questions, fresh stream": the same questions asked of a 1-minute stream of the same
      first minute (suite "hour-first-minute").
Each with accuracy overall and per category, chance for its mix of questions, time to first token, and per scene
the time it took to stream, the segments sealed and their bytes, the window's span and segments.

--quick: the stage rows and 4 formats at 32 tokens (token_dynamics both ways, uniform, full) on 8 held-out
scenes, probes of 100 steps on 8 training scenes, no long or hour scenes (< 60 s). --only runs one section of
the full run (stages, heldout, long or hour).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from compressor.config import CompressorConfig  # noqa: E402
from compressor.registry import make_stream_compressor  # noqa: E402
from compressor.segments import SegmentStore, window_from_folder  # noqa: E402
from compressor.snapshot import Snapshot  # noqa: E402
from bench.probe import print_results, probe_accuracy  # noqa: E402
from scenes.questions import CATEGORIES, QA, chance, is_correct  # noqa: E402
from scenes.scene import Scene, SceneSpec, make_scene  # noqa: E402
from scenes.suites import FIRST_MINUTE_S, TRAIN_SEED_START, last_sampled_time, sampled_times, suite  # noqa: E402
from stream.sampling import resize_frames  # noqa: E402
from train.config import load_train_config  # noqa: E402
from train.formats import FULL, MemoryFormat  # noqa: E402
from train.evaluate import MAX_ANSWER_TOKENS  # noqa: E402
from train.memory import Memory, encode, snapshot_chunks, snapshot_memory, stream_memories  # noqa: E402
from train.oracle import Concepts, cell_label_maps, oracle_tokens  # noqa: E402
from train.warmup import cell_accuracy, concept_table, heldout_frames  # noqa: E402
from train.objective import visual_inputs  # noqa: E402
from train.scene_data import sampled_frames  # noqa: E402
from vlm import ModelConfig, load_vlm  # noqa: E402

RATE_HZ = 2.0
FRAMES_PER_CHUNK = 4
BASELINES = ("offline_token_dynamics", "uniform", "pooling", "dycoke", "tome")
#: Categories where the key map should matter (position, direction, order, time), as the issue names them.
MOTION_CATEGORIES = ("position", "direction", "order", "time")
#: Frames rendered and encoded at a time in the hour section (a multiple of FRAMES_PER_CHUNK): an hour's tokens
#: at once would be 7,200 x 196 x D floats (720 MB at D = 128).
HOUR_BATCH_FRAMES = 64
SECTIONS = ("stages", "heldout", "long", "hour")
#: Training scenes whose memories train the per-token probes, and the snapshots taken of each (as training does).
PROBE_SCENES = 60
PROBE_SNAPSHOTS = 6


def formats(quick: bool) -> list[MemoryFormat]:
    """The memory formats compared, full tokens first."""
    if quick:
        return [MemoryFormat(FULL), MemoryFormat("token_dynamics", 32),
                MemoryFormat("token_dynamics", 32, centroid_only=True), MemoryFormat("uniform", 32)]
    out = [MemoryFormat(FULL)]
    for budget in (16, 32, 64):
        out += [MemoryFormat("token_dynamics", budget), MemoryFormat("token_dynamics", budget, centroid_only=True)]
        if budget == 32:  # the adaptive memory the model was trained on last (K merges down from 32)
            out.append(load_train_config("train-adaptive").formats[0])
        out += [MemoryFormat(method, budget) for method in BASELINES]
    return out


class Scorer:
    """Tallies right answers and time to first token per format and category."""

    def __init__(self) -> None:
        self.right: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.ttft: dict[str, list[float]] = defaultdict(list)
        self.visual: dict[str, int] = {}

    def ask(self, model, dynamics, label: str, memory: Memory, fused: bool, qas: Sequence[QA]) -> None:
        """Answer every question of ``qas`` from ``memory`` and tally them under ``label``."""
        with torch.no_grad():
            visual = visual_inputs(memory.to(model.device, model.dtype), dynamics if fused else None)  # [N, D]
        self.visual[label] = int(visual.shape[0])
        for qa in qas:
            generation = model.generate(visual, qa.question, max_new_tokens=MAX_ANSWER_TOKENS, temperature=0.0)
            text = "".join(generation).strip()
            self.ttft[label].append(generation.ttft_s or 0.0)
            self.right[label][qa.category] += is_correct(text, qa)
            self.total[label][qa.category] += 1

    def accuracy(self, label: str, categories: Sequence[str] | None = None) -> float | None:
        """Percent right over ``categories`` (all when None); None when nothing was asked."""
        cats = categories or list(self.total[label])
        n = sum(self.total[label][c] for c in cats)
        return 100.0 * sum(self.right[label][c] for c in cats) / n if n else None

    def row(self, label: str) -> dict:
        acc = self.accuracy(label)
        asked = sum(self.total[label].values())
        guess = 100.0 * sum(chance(c) * n for c, n in self.total[label].items()) / asked if asked else None
        return {"format": label, "accuracy": acc, "motion_categories": self.accuracy(label, MOTION_CATEGORIES),
                "chance": guess,
                "per_category": {c: self.accuracy(label, [c]) for c in CATEGORIES if self.total[label][c]},
                "questions": asked, "visual_tokens": self.visual.get(label),
                "tokdense": acc / self.visual[label] if acc is not None and self.visual.get(label) else None,
                "ttft_ms": 1000 * float(np.mean(self.ttft[label])) if self.ttft[label] else None}


def scene_tokens(model, spec: SceneSpec) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens [T, gh, gw, D] and media times [T] of the frames a 2 frames/s pipeline samples."""
    frames, times = sampled_frames(make_scene(spec), RATE_HZ, model.image_size)
    return encode(model, frames), times


def last_memory(tokens: torch.Tensor, times: np.ndarray, fmt: MemoryFormat) -> Memory:
    """The memory after the last chunk of a stream of these tokens."""
    chunks = int(np.ceil(len(times) / FRAMES_PER_CHUNK))
    return stream_memories(tokens, times, fmt, FRAMES_PER_CHUNK, [chunks - 1])[0]


def run_heldout(model, dynamics, suite_name: str, fmts: Sequence[MemoryFormat], limit: int | None) -> Scorer:
    scorer = Scorer()
    scenes = suite(suite_name)[:limit]
    for i, (spec, qas) in enumerate(scenes):
        tokens, times = scene_tokens(model, spec)
        for fmt in fmts:
            scorer.ask(model, dynamics, fmt.name, last_memory(tokens, times, fmt), fmt.uses_dynamics, qas)
        print(f"  scene {i + 1}/{len(scenes)} (seed {spec.seed}): {len(qas)} questions x {len(fmts)} formats",
              flush=True)
    return scorer


def run_long(model, dynamics, fmt: MemoryFormat) -> dict:
    """First- and last-minute questions on 10-minute scenes ("long"), and the same first-minute questions on
    1-minute streams of the same scenes' first minute ("long-first-minute")."""
    scorer = Scorer()
    for spec, qas in suite("long"):
        tokens, times = scene_tokens(model, spec)
        memory = last_memory(tokens, times, fmt)
        scorer.ask(model, dynamics, "10 min: first-minute questions", memory, fmt.uses_dynamics,
                   [qa for qa in qas if qa.span[1] < FIRST_MINUTE_S])
        scorer.ask(model, dynamics, "10 min: last-minute questions", memory, fmt.uses_dynamics,
                   [qa for qa in qas if qa.span[1] >= FIRST_MINUTE_S])
    for spec, qas in suite("long-first-minute"):
        tokens, times = scene_tokens(model, spec)
        scorer.ask(model, dynamics, "1 min: first-minute questions", last_memory(tokens, times, fmt),
                   fmt.uses_dynamics, qas)
    return {label: scorer.row(label) for label in scorer.total}


def stream_scene(model, spec: SceneSpec, config: CompressorConfig, folder: Path) -> tuple[Snapshot, SegmentStore]:
    """Play ``spec`` through what the memory actor runs per chunk of FRAMES_PER_CHUNK sampled frames: the live
    compressor's update and the SegmentStore's in ``folder`` (both with ``config``, as the actor gives both the
    stream's). Frames are rendered, resized and encoded HOUR_BATCH_FRAMES at a time ([B, gh, gw, D] tokens held,
    never the whole scene's). Returns the live snapshot after the last chunk and the store."""
    scene, times = make_scene(spec), sampled_times(spec, RATE_HZ)  # [T] media s: the pipeline's sampler
    live, store = make_stream_compressor(config), SegmentStore(folder, config)
    for start in range(0, len(times), HOUR_BATCH_FRAMES):
        batch = times[start:start + HOUR_BATCH_FRAMES]                                           # [B]
        frames = resize_frames(np.stack([scene.render(float(t)) for t in batch]), model.image_size)  # [B, S, S, 3]
        tokens = encode(model, frames)                                                           # [B, gh, gw, D]
        for i in range(0, len(batch), FRAMES_PER_CHUNK):
            chunk, chunk_times = tokens[i:i + FRAMES_PER_CHUNK], batch[i:i + FRAMES_PER_CHUNK]
            live.update(chunk, chunk_times)
            store.update(chunk, chunk_times)
    return live.snapshot(), store


def run_hour(model, dynamics, fmt: MemoryFormat) -> dict:
    """After an hour of scene ("hour"): last-minute questions from the live memory, first-minute questions from
    a window memory of the first minute (built from the segments) and from the live memory, against the same
    first-minute questions asked of a fresh 1-minute stream of that minute ("hour-first-minute")."""
    config = fmt.compressor_config(seed=0)
    scorer, scenes, fused = Scorer(), [], fmt.uses_dynamics
    for (spec, qas), (short, early) in zip(suite("hour"), suite("hour-first-minute")):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="qa-hour-") as folder:
            live, store = stream_scene(model, spec, config, Path(folder))
            stream_s = time.perf_counter() - started
            # As the LLM actor answers a window (actors/llm.py): from the folder, with the live memory's K.
            window = window_from_folder(store.folder, 0.0, last_sampled_time(short), max(live.base.shape[0], 1))
            sealed, segment_bytes = len(store.sealed()), store.nbytes()
        first = [qa for qa in qas if qa.span[1] < FIRST_MINUTE_S]
        last = [qa for qa in qas if qa.span[1] >= FIRST_MINUTE_S]
        scorer.ask(model, dynamics, "hour: last-minute questions, live memory", snapshot_memory(live), fused, last)
        scorer.ask(model, dynamics, "hour: first-minute questions, window from segments",
                   snapshot_memory(window.snapshot), fused, first)
        scorer.ask(model, dynamics, "hour: first-minute questions, live memory", snapshot_memory(live), fused, first)
        tokens, times = scene_tokens(model, short)
        scorer.ask(model, dynamics, "1 min: first-minute questions, fresh stream", last_memory(tokens, times, fmt),
                   fused, early)
        scenes.append({"seed": spec.seed, "seconds": spec.seconds, "frames": live.frames_seen,
                       "stream_s": stream_s, "live_span": [live.t_start, live.t_end],
                       "window_span": [window.snapshot.t_start, window.snapshot.t_end],
                       "window_segments": window.segments, "segments_sealed": sealed,
                       "segment_bytes": segment_bytes, "first_minute_questions": len(first),
                       "last_minute_questions": len(last)})
        print(f"  hour scene seed {spec.seed}: streamed in {stream_s:.0f} s, {sealed} segments sealed, "
              f"{len(first)} first-minute and {len(last)} last-minute questions", flush=True)
    return {"rows": {label: scorer.row(label) for label in scorer.total}, "scenes": scenes,
            "format": fmt.name, "segment_s": config.segment_s, "half_life_s": config.half_life_s}


def print_hour(hour: dict) -> None:
    """The hour section's table: accuracy overall, chance for each row's questions, per category, TTFT."""
    rows = list(hour["rows"].values())
    cats = [c for c in CATEGORIES if any(c in r["per_category"] for r in rows)]
    chance_row = ["chance", None, None] + [100.0 * chance(c) for c in cats] + [None, None, None]
    print_table([(f"hour scenes, {hour['format']}", "s"), ("acc %", ".1f"), ("chance %", ".1f")]
                + [(c[:8], ".0f") for c in cats] + [("questions", "d"), ("tokens", "d"), ("TTFT ms", ".0f")],
                [[r["format"], r["accuracy"], r["chance"]] + [r["per_category"].get(c) for c in cats]
                 + [r["questions"], r["visual_tokens"], r["ttft_ms"]] for r in rows] + [chance_row])


def heldout_section(model, dynamics, suite_name: str, fmts: Sequence[MemoryFormat]) -> dict:
    """Every format on the held-out suite: the table, and its rows for the JSON."""
    scorer = run_heldout(model, dynamics, suite_name, fmts, limit=None)
    rows = [scorer.row(fmt.name) for fmt in fmts]
    cats = [c for c in CATEGORIES if any(scorer.total[f.name][c] for f in fmts)]
    chance_row = {"format": "chance", "accuracy": None, "motion_categories": None,
                  "per_category": {c: 100.0 * chance(c) for c in cats}}
    columns = [("format", "s"), ("acc %", ".1f"), ("motion %", ".1f")] + [(c[:8], ".0f") for c in cats] + \
        [("tokens", "d"), ("TokDense", ".2f"), ("TTFT ms", ".0f")]
    print_table(columns, [[r["format"], r["accuracy"], r["motion_categories"]] + [r["per_category"].get(c) for c in cats]
                          + [r.get("visual_tokens"), r.get("tokdense"), r.get("ttft_ms")] for r in rows + [chance_row]])
    return {"suite": suite_name, "formats": rows, "chance": chance_row["per_category"],
            "full_tokens": "every token of 16 uniformly sampled frames (16 x 196)"}


def labelled_memories(model, spec: SceneSpec, fmt: MemoryFormat,
                      snapshots: int) -> tuple[Scene, list[Memory], list[Memory]]:
    """The scene of ``spec``, its real memories (its frames through the model's vision path) and its oracle
    memories (its true label maps through the concept tokens: perfect vision and clustering, train/oracle.py),
    both through the same streaming compressor after ``snapshots`` chunks spread over the scene (the last always
    one), each with the object every base token holds (``Memory.objects``)."""
    scene = make_scene(spec)
    tokens, times = scene_tokens(model, spec)
    labels = cell_label_maps(scene, times, model.grid)  # [T, gh, gw]
    chunks = snapshot_chunks(-(-len(times) // FRAMES_PER_CHUNK), snapshots)
    oracle = oracle_tokens(Concepts.make(model.hidden_size), scene, labels, spec.seed)  # [T, gh, gw, D]
    return (scene, stream_memories(tokens, times, fmt, FRAMES_PER_CHUNK, chunks, labels=labels),
            stream_memories(oracle, times, fmt, FRAMES_PER_CHUNK, chunks, labels=labels))


def stages_section(model, dynamics, suite_name: str, limit: int | None) -> dict:
    """Where answers are lost, a row per stage: the vision path's per-cell and per-object accuracy on held-out
    frames; the suite asked of oracle memories (perfect vision and clustering, the same key-map and motion
    code) and of the real memory (the model as shipped); then per-token probes (is the information in the
    memory at all?) on the real memories and on the oracle memories of the same scenes, all at
    token_dynamics@32."""
    fmt = MemoryFormat("token_dynamics", 32)
    frames, targets = heldout_frames(model.image_size, model.grid)
    vision = cell_accuracy(model, concept_table(Concepts.make(model.hidden_size)), frames, targets)
    print_table([("vision, held-out frames", "s"), ("accuracy", ".3f")], [[k, v] for k, v in vision.items()])
    scorer, heldout = Scorer(), {"real": [], "oracle": []}
    for spec, qas in suite(suite_name)[:limit]:
        scene, (real,), (oracle,) = labelled_memories(model, spec, fmt, 1)
        scorer.ask(model, dynamics, "oracle memory", oracle, True, qas)
        scorer.ask(model, dynamics, "real memory", real, True, qas)
        heldout["real"].append((real, scene, real.t_end))
        heldout["oracle"].append((oracle, scene, oracle.t_end))
    rows = [scorer.row("oracle memory"), scorer.row("real memory")]
    cats = [c for c in CATEGORIES if any(c in r["per_category"] for r in rows)]
    print_table([("reader, token_dynamics@32", "s"), ("acc %", ".1f")] + [(c[:8], ".0f") for c in cats],
                [[r["format"], r["accuracy"]] + [r["per_category"].get(c) for c in cats] for r in rows])
    train: dict[str, list] = {"real": [], "oracle": []}
    for i, seconds in enumerate(np.random.default_rng(3).uniform(20, 60, PROBE_SCENES if limit is None else 8)):
        scene, real, oracle = labelled_memories(model, SceneSpec(seed=TRAIN_SEED_START + 50_000 + i,
                                                                 seconds=float(seconds)), fmt, PROBE_SNAPSHOTS)
        train["real"] += [(m, scene, m.t_end) for m in real]
        train["oracle"] += [(m, scene, m.t_end) for m in oracle]
    probe = {kind: probe_accuracy(train[kind], heldout[kind], steps=1500 if limit is None else 100)
             for kind in ("real", "oracle")}
    print_results(probe, "probe per token, token_dynamics@32")
    return {"vision": vision, "vision_frames": len(frames), "rows": rows, "probe": probe}


def main(argv: list[str] | None = None) -> dict:
    parser = bench_parser(__doc__, "8 scenes, 4 formats at 32 tokens, no long or hour scenes (< 60 s)")
    parser.add_argument("--model", default="embedded", help="checkpoint directory (default: the shipped model)")
    parser.add_argument("--suite", default=None, help="held-out suite (default: heldout, --quick: heldout-small)")
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run only this section of the full run")
    args = parser.parse_args(argv)
    if args.quick and args.only not in (None, "stages", "heldout"):
        parser.error(f"--only {args.only}: expected a section of --quick (stages, heldout), got one of the full "
                     "run only")
    sections = (args.only,) if args.only else SECTIONS[:2] if args.quick else SECTIONS
    run = BenchRun("qa", args.quick, started=STARTED)
    torch.manual_seed(0)
    model = load_vlm(ModelConfig(path=args.model, dtype="float32"))
    dynamics = model.dynamics
    suite_name = args.suite or ("heldout-small" if args.quick else "heldout")
    print(f"model {model.name}: cross-dynamics attention {'trained' if dynamics is not None else 'absent'}; "
          f"sections {', '.join(sections)}")
    results: dict = {"model": model.name, "dynamics_trained": dynamics is not None, "sections": list(sections)}
    if "stages" in sections:
        results["stages"] = stages_section(model, dynamics, suite_name, 8 if args.quick else None)
    if "heldout" in sections:
        results.update(heldout_section(model, dynamics, suite_name, formats(args.quick)))
    if "long" in sections:
        long_rows = run_long(model, dynamics, MemoryFormat("token_dynamics", 32))
        print_table([("long scenes, token_dynamics@32", "s"), ("acc %", ".1f"), ("questions", "d"),
                     ("TTFT ms", ".0f")],
                    [[label, r["accuracy"], r["questions"], r["ttft_ms"]] for label, r in long_rows.items()])
        results["long"] = long_rows
    if "hour" in sections:
        started = time.perf_counter()
        hour = run_hour(model, dynamics, MemoryFormat("token_dynamics", 32))
        hour["section_s"] = time.perf_counter() - started
        print_hour(hour)
        print(f"hour section: {hour['section_s']:.0f} s")
        results["hour"] = hour
    run.finish(results, args.json)
    return results


if __name__ == "__main__":
    main()
