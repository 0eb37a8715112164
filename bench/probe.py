"""Is the information in the memory at all? A per-token probe reads each base token of a memory and names what
that token's object is and does, independent of any language model and of any question.

    python bench/probe.py --quick [--train-scenes N] [--heldout-scenes N] [--snapshots N] [--steps N]

Labels (``token_labels``): each base token holds one scene object or background (``Memory.objects``, from the
key map and the scene's cell label maps: train/oracle.py ``token_objects``); at the query time it gets, as
class indices, ``object`` (1 object, 0 background) and, for an object token, its object's ``shape``
(SHAPES), ``colour`` (COLOURS), ``zone`` (ZONES, where its centre is at the query time) and ``direction``
(DIRECTIONS) when the object is in view then, and ``enter_s``, the whole media second it entered (clipped to
0..MAX_SECONDS). -1: not defined (every attribute but ``object`` of a background token, zone and direction
of an object out of view).

Features per token: the base token [D], its motion features (``encode_motion``: seconds read in minutes,
rates x 4, each with its log1p magnitude and sin/cos at a few frequencies) and the memory's start time
encoded the same way (motion times count from it), standardised over the training tokens. ``TokenProbe``, an
MLP trunk with one linear head per attribute (entry seconds: logits of a Gaussian over the seconds around a
predicted mean, as seconds are ordered), is trained with the sum of the attributes' cross-entropies
(undefined labels ignored) on every labelled token of the training memories and scored on held-out memories'
tokens: accuracy per attribute against the held-out majority class (chance), and entry seconds within 1 s.
A memory that holds an attribute lets the probe name it on held-out tokens; one that lost it leaves it near
chance.

--quick builds oracle memories (train/oracle.py: what a perfect vision path would give) through the
pipeline's own streaming compressor, token_dynamics@32 at 2 frames/s and 4 frames per chunk, at several
snapshot times per scene (labels at each snapshot's end): 120 training scenes from TRAIN_SEED_START (with 40
the probe is data-bound on zone, direction and entry second), 12 held-out scenes of the "heldout" suite;
prints accuracy per attribute against chance. On oracle memories every attribute is there, so this is the
probe's own ceiling (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/compressor.py would shadow the package

from bench.common import print_table  # noqa: E402
from compressor.motion import MOTION_FEATURES, MOTION_UNITS  # noqa: E402
from scenes.plan import DIRECTIONS  # noqa: E402
from scenes.scene import ZONES, Scene, zone_of  # noqa: E402
from scenes.shapes import COLOURS, SHAPES  # noqa: E402
from train.memory import Memory  # noqa: E402

MAX_SECONDS = 120       # entry seconds are classes 0..MAX_SECONDS
#: Attributes a base token is labelled with, and the classes of each.
CLASSES = {"object": 2, "shape": len(SHAPES), "colour": len(COLOURS), "zone": len(ZONES),
           "direction": len(DIRECTIONS), "enter_s": MAX_SECONDS + 1}
ATTRIBUTES = tuple(CLASSES)
SECONDS_SCALE = 60.0    # seconds-valued features are read in minutes
FREQUENCIES = (1.0, 2.0, 4.0)  # sin/cos of pi * f * x per scaled feature
BATCH = 256
LR = 5e-3               # AdamW, one-cycle schedule
TIME_BUDGET_S = 170.0   # training stops early past this, so a call stays under ~3 minutes


def token_labels(memory: Memory, scene: Scene, t_query: float) -> dict[str, np.ndarray]:
    """Per base token of ``memory`` (its ``objects`` [K] must be filled), the class index of each of ATTRIBUTES
    about its object at ``t_query``: {attribute: [K] int64}, -1 where not defined (see the module docstring)."""
    if memory.objects is None:
        raise ValueError("memory: expected objects per base token (stream_memories with labels), got None")
    k = len(memory.objects)
    out = {name: np.full(k, -1, dtype=np.int64) for name in ATTRIBUTES}
    w, h = scene.spec.width, scene.spec.height
    for i, index in enumerate(memory.objects):
        out["object"][i] = int(index >= 0)
        if index < 0:
            continue
        obj = scene.objects[int(index)]
        out["shape"][i], out["colour"][i] = SHAPES.index(obj.shape), COLOURS.index(obj.colour)
        if obj.present(t_query):
            out["zone"][i] = ZONES.index(zone_of(*obj.position(t_query), w, h))
            out["direction"][i] = DIRECTIONS.index(obj.direction(t_query))
        out["enter_s"][i] = min(max(int(round(obj.enter_t)), 0), MAX_SECONDS)
    return out


def _fourier(x: torch.Tensor) -> torch.Tensor:
    """Scaled values [K, F] -> [K, F * (2 + 2 * len(FREQUENCIES))]: x, sign(x) log1p|x|, sin/cos(pi f x)."""
    angles = math.pi * x.unsqueeze(-1) * torch.tensor(FREQUENCIES)  # [K, F, n]
    return torch.cat([x, torch.sign(x) * torch.log1p(x.abs()), angles.sin().flatten(1), angles.cos().flatten(1)],
                     dim=1)


def encode_motion(motion: torch.Tensor) -> torch.Tensor:
    """Motion [K, F] (MOTION_FEATURES) -> [K, F * (2 + 2 * len(FREQUENCIES))]: each feature scaled (seconds
    / SECONDS_SCALE, rates x 4), then ``_fourier``; finite for hour-long seconds."""
    scale = torch.tensor([1 / SECONDS_SCALE if MOTION_UNITS[n] == "seconds" else 4.0 if MOTION_UNITS[n] == "rate"
                          else 1.0 for n in MOTION_FEATURES])
    return _fourier(motion.float() * scale)


def token_features(memory: Memory) -> torch.Tensor:
    """[K, D + E]: per base token, the token, its encoded motion and the encoded memory start time."""
    k = memory.base.shape[0]
    if memory.motion.shape != (k, len(MOTION_FEATURES)):
        raise ValueError(f"memory motion: expected [K, {len(MOTION_FEATURES)}] (token_dynamics), got "
                         f"{tuple(memory.motion.shape)}")
    start = torch.full((k, 1), memory.t_start / SECONDS_SCALE)
    return torch.cat([memory.base.float(), encode_motion(memory.motion), _fourier(start)], dim=1)


def _dataset(items: list[tuple[Memory, Scene, float]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(memory, scene, t_query) triples -> features [N, E] of every base token and labels {attribute: [N]}."""
    if not items:
        raise ValueError("memories: expected at least one (memory, scene, t_query), got none")
    features = torch.cat([token_features(m) for m, _, _ in items])
    labels = [token_labels(m, scene, t) for m, scene, t in items]
    return features, {a: torch.from_numpy(np.concatenate([lab[a] for lab in labels])) for a in ATTRIBUTES}


class TokenProbe(nn.Module):
    """Token features [B, E] -> {attribute: logits [B, classes]}: an MLP trunk, one linear head per attribute.
    The entry-second head gives a mean mu (in minutes) and a spread s, and logits ``-(n - mu)^2 / 2 s^2`` over
    n = 0..MAX_SECONDS: seconds are ordered, and 121 free classes would need far more tokens than a probe gets."""

    def __init__(self, width: int, hidden: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.heads = nn.ModuleDict({a: nn.Linear(hidden, 2 if a == "enter_s" else n) for a, n in CLASSES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)  # [B, H]
        out = {a: head(h) for a, head in self.heads.items()}
        mu, spread = SECONDS_SCALE * out["enter_s"][:, :1], F.softplus(out["enter_s"][:, 1:]) + 0.3  # [B, 1]
        out["enter_s"] = -(torch.arange(MAX_SECONDS + 1, dtype=x.dtype) - mu) ** 2 / (2 * spread ** 2)
        return out


def probe_accuracy(train: list[tuple[Memory, Scene, float]], heldout: list[tuple[Memory, Scene, float]],
                   steps: int = 1500, seed: int = 0) -> dict:
    """Train a TokenProbe on every base token of the ``train`` memories (labels at each triple's t_query), score
    it on the ``heldout`` memories' tokens. Returns {"per_attribute": {attribute: percent right}, "chance":
    {attribute: percent of the held-out majority class}, "tokens": {attribute: held-out labelled tokens},
    "enter_s_within_1": percent of entry seconds within 1 s, "train_tokens": n, "steps": steps run,
    "s": seconds}; an attribute no held-out token is labelled with is left out."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = _dataset(train)
    test_x, test_y = _dataset(heldout)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-3)
    x, test_x = (x - mean) / std, (test_x - mean) / std
    model = TokenProbe(x.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LR, total_steps=max(steps, 1),
                                                   pct_start=0.05)
    done = 0
    model.train()
    for done in range(1, steps + 1):
        pick = torch.from_numpy(rng.integers(0, len(x), size=BATCH))  # [B]
        logits = model(x[pick])
        # An attribute no token of the batch is labelled with adds 0, not NaN.
        loss = sum(F.cross_entropy(logits[a], y[a][pick], ignore_index=-1, reduction="sum")
                   / (y[a][pick] >= 0).sum().clamp(min=1) for a in ATTRIBUTES)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if time.perf_counter() - started > TIME_BUDGET_S:
            break
    model.eval()
    with torch.no_grad():
        predicted = {a: logits.argmax(1) for a, logits in model(test_x).items()}  # {attribute: [N]}
    result: dict = {"per_attribute": {}, "chance": {}, "tokens": {}}
    for a in ATTRIBUTES:
        known = test_y[a] >= 0
        if not known.any():
            continue
        truth, guess = test_y[a][known], predicted[a][known]
        result["per_attribute"][a] = 100.0 * float((guess == truth).float().mean())
        result["chance"][a] = 100.0 * float(torch.bincount(truth).max()) / len(truth)
        result["tokens"][a] = int(known.sum())
        if a == "enter_s":
            result["enter_s_within_1"] = 100.0 * float(((guess - truth).abs() <= 1).float().mean())
    return result | {"train_tokens": len(x), "steps": done, "s": time.perf_counter() - started}


def print_results(results: dict[str, dict], title: str) -> None:
    """Print probe results side by side ({name: probe_accuracy result}): per attribute, each result's accuracy,
    chance and held-out tokens; entry seconds within 1 s as a row of its own."""
    columns = [(title, "")] + [c for name in results for c in ((f"{name} %", ".1f"), ("chance %", ".1f"),
                                                                  ("tokens", "d"))]
    rows = [[a] + [v for r in results.values() for v in (r["per_attribute"].get(a), r["chance"].get(a),
                                                         r["tokens"].get(a))]
            for a in ATTRIBUTES if any(a in r["per_attribute"] for r in results.values())]
    if any("enter_s_within_1" in r for r in results.values()):
        rows.append(["enter_s within 1 s"] + [v for r in results.values() for v in (
            r.get("enter_s_within_1"), None, r["tokens"].get("enter_s"))])
    print_table(columns, rows)


# -- oracle memories (no trained model needed) ------------------------------------------------------------
GRID = (14, 14)            # the vision tower's token grid
ORACLE_DIM = 64            # width of the concept tokens
FRAMES_PER_CHUNK = 4


def oracle_memories(spec, snapshots: int, dim: int = ORACLE_DIM,
                    grid: tuple[int, int] = GRID) -> list[tuple[Memory, Scene, float]]:
    """One scene (a SceneSpec) -> (oracle token_dynamics@32 memory with its objects, the scene, t_query = the
    memory's end) at ``snapshots`` chunk ends (the last always one), at 2 frames/s, concept tokens of width
    ``dim`` on a ``grid``."""
    from scenes.scene import make_scene
    from scenes.suites import sampled_times
    from train.formats import MemoryFormat
    from train.memory import snapshot_chunks, stream_memories
    from train.oracle import Concepts, cell_label_maps, oracle_tokens

    scene, times = make_scene(spec), sampled_times(spec)
    labels = cell_label_maps(scene, times, grid)  # [T, gh, gw]
    tokens = oracle_tokens(Concepts.make(dim), scene, labels, seed=spec.seed)  # [T, gh, gw, D]
    at = snapshot_chunks(-(-len(times) // FRAMES_PER_CHUNK), snapshots)
    memories = stream_memories(tokens, times, MemoryFormat("token_dynamics", 32), FRAMES_PER_CHUNK, at, spec.seed,
                               labels)
    return [(memory, scene, memory.t_end) for memory in memories]


def probe_main(argv: list[str] | None = None) -> dict:
    """CLI: build oracle memories, train the probe, print accuracy per attribute against chance."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small set (the only mode for now)")
    parser.add_argument("--train-scenes", type=int, default=120)
    parser.add_argument("--heldout-scenes", type=int, default=12)
    parser.add_argument("--snapshots", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from scenes.scene import SceneSpec
    from scenes.suites import TRAIN_SEED_START, suite

    started = time.perf_counter()
    train = [item for i in range(args.train_scenes)
             for item in oracle_memories(SceneSpec(seed=TRAIN_SEED_START + i), args.snapshots)]
    heldout = [item for spec, _ in suite("heldout")[:args.heldout_scenes]
               for item in oracle_memories(spec, args.snapshots)]
    built = time.perf_counter() - started
    result = probe_accuracy(train, heldout, steps=args.steps)
    print(f"oracle memories token_dynamics@32: {args.train_scenes} train scenes x {args.snapshots} snapshots "
          f"({result['train_tokens']} tokens), {args.heldout_scenes} held-out scenes; built in {built:.0f} s, "
          f"probe {result['steps']} steps in {result['s']:.0f} s")
    print_results({"oracle": result}, "attribute")
    return result


if __name__ == "__main__":
    probe_main()
