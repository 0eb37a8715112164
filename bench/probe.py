"""Is the answer in the memory at all? A small supervised probe reads a memory and a question's text and is
scored like the model, independent of any language model.

    python bench/probe.py --quick [--train-scenes N] [--heldout-scenes N] [--steps N]

The probe sees what the LLM sees: the memory's base tokens [K, D], motion features [K, F] and recent tokens
[R, D], and the question TEXT (never ``qa.key``). From the text it takes the question type (keyword rules,
``question_type``) and the colours and shapes it names, in order (``named_objects``: two slots, for order
questions). A learned query from those attends over the tokens (two rounds); the attended values, a max and a
soft distinct count over tokens give the logits over the answer vocabulary (every answer seen in training,
restricted to those seen for the question's type) and, for counts and times, a number mu with logits
``-(n - mu)^2 / 2 s^2`` over n = 0..MAX_NUMBER. Scored with scenes.questions.is_correct.

--quick builds oracle memories (train/oracle.py: what a perfect vision path would give) through the
pipeline's own streaming compressor, token_dynamics@32 at 2 frames/s and 4 frames per chunk: training
scenes from TRAIN_SEED_START at several snapshot times, held-out scenes of the "heldout" suite with the
suite's questions at their end plus questions at earlier snapshots; prints accuracy per category and chance.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compressor.motion import MOTION_FEATURES, MOTION_UNITS  # noqa: E402
from scenes.questions import CATEGORIES, QA, chance, is_correct, questions  # noqa: E402
from scenes.shapes import COLOURS, SHAPES  # noqa: E402
from train.memory import Memory  # noqa: E402

#: Question types, named like QA.key[0], and the category each belongs to.
TYPE_CATEGORY = {"colour": "content", "shape": "content", "ever": "existence", "count_now": "count",
                 "count_ever": "count", "zone": "position", "direction": "direction", "first": "order",
                 "enter_time": "time", "moving": "recency", "last_entered": "recency"}
QTYPES = tuple(TYPE_CATEGORY)
NUMERIC_TYPES = ("count_now", "count_ever", "enter_time")
MAX_NUMBER = 120        # number answers 0..MAX_NUMBER (counts and whole media seconds)
#: Keyword rules, tried in order: the first type with a phrase in the lower-cased question wins.
TYPE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("enter_time", ("when did", "at what second", "seconds into")),
    ("count_ever", ("how many different", "in total", "so far")),
    ("count_now", ("how many",)),
    ("direction", ("which way", "direction", "heading")),
    ("moving", ("moving", "in motion")),
    ("last_entered", ("most recently", "last object", "showed up last")),
    ("first", ("appeared first", "came first", "earlier")),
    ("ever", ("was there ever", "at any point", "been seen")),
    ("colour", ("colour",)),
    ("shape", ("shape",)),
    ("zone", ("where is", "where can", "which part")),
)
SECONDS_SCALE = 60.0    # seconds-valued motion features are read in minutes
FREQUENCIES = (1.0, 2.0, 4.0)  # sin/cos of pi * f * x per motion feature
TIME_BUDGET_S = 170.0   # training stops early past this, so a call stays under ~3 minutes


class ProbeError(ValueError):
    """A question whose text no rule recognises."""


def question_type(text: str) -> str:
    """The question type (a QTYPES entry, as QA.key[0]) from its wording alone, by TYPE_RULES."""
    lower = text.lower()
    for qtype, phrases in TYPE_RULES:
        if any(p in lower for p in phrases):
            return qtype
    raise ProbeError(f"question: expected a wording of scenes/questions.py, got {text!r}")


def named_objects(text: str) -> list[tuple[str | None, str | None]]:
    """The (colour, shape) of each object the text names, in order of appearance ("the red star or the
    circle" -> [("red", "star"), (None, "circle")]); a colour followed by a shape is one object."""
    out: list[list[str | None]] = []
    previous_colour = False
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in COLOURS:
            out.append([word, None])
        elif word in SHAPES:
            if previous_colour:
                out[-1][1] = word
            else:
                out.append([None, word])
        previous_colour = word in COLOURS
    return [(c, s) for c, s in out]


def _question_ids(text: str) -> list[int]:
    """[5] ids: type, colour and shape of the first and second named object (0: none; colours/shapes 1-based)."""
    objects = (named_objects(text) + [(None, None)] * 2)[:2]
    ids = [QTYPES.index(question_type(text))]
    for colour, shape in objects:
        ids += [COLOURS.index(colour) + 1 if colour else 0, SHAPES.index(shape) + 1 if shape else 0]
    return ids


def encode_motion(motion: torch.Tensor) -> torch.Tensor:
    """Motion [K, F] (MOTION_FEATURES) -> [K, F * (2 + 2 * len(FREQUENCIES))]: each feature scaled (seconds
    / SECONDS_SCALE, rates x 4), its log1p magnitude, and sin/cos of pi * f * scaled value."""
    scale = torch.tensor([1 / SECONDS_SCALE if MOTION_UNITS[n] == "seconds" else 4.0 if MOTION_UNITS[n] == "rate"
                          else 1.0 for n in MOTION_FEATURES])
    x = motion.float() * scale  # [K, F]
    angles = math.pi * x.unsqueeze(-1) * torch.tensor(FREQUENCIES)  # [K, F, n]
    parts = [x, torch.sign(x) * torch.log1p(x.abs()), angles.sin().flatten(1), angles.cos().flatten(1)]
    return torch.cat(parts, dim=1)


def _stack_memories(memories: list[Memory]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Memories -> base tokens [M, L, D] (base then recent, zero-padded), encoded motion [M, L, E + 1] (the
    last column flags recent tokens; recent tokens have no motion) and a padding mask [M, L] (True: padding)."""
    length = max(m.base.shape[0] + m.recent.shape[0] for m in memories)
    dim = memories[0].base.shape[1]
    width = len(MOTION_FEATURES) * (2 + 2 * len(FREQUENCIES)) + 1
    tokens, motion = torch.zeros(len(memories), length, dim), torch.zeros(len(memories), length, width)
    pad = torch.ones(len(memories), length, dtype=torch.bool)
    for i, m in enumerate(memories):
        k, r = m.base.shape[0], m.recent.shape[0]
        tokens[i, :k], tokens[i, k:k + r] = m.base.float(), m.recent.float()
        if m.motion.shape[1] == len(MOTION_FEATURES):
            motion[i, :k, :-1] = encode_motion(m.motion)
        motion[i, k:k + r, -1] = 1.0
        pad[i, :k + r] = False
    return tokens, motion, pad


class Probe(nn.Module):
    """(memory tokens, question ids) -> logits over the answer vocabulary [B, V] (V = words + numbers)."""

    def __init__(self, dim: int, motion_width: int, words: int, hidden: int = 96, heads: int = 4) -> None:
        super().__init__()
        self.base = nn.Linear(dim, hidden)
        self.motion = nn.Sequential(nn.Linear(motion_width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.qtype, self.colour, self.shape = (nn.Embedding(n, hidden) for n in (len(QTYPES), len(COLOURS) + 1,
                                                                                  len(SHAPES) + 1))
        self.slot = nn.Parameter(0.02 * torch.randn(2, hidden))  # marks the second named object
        self.token_norm = nn.LayerNorm(hidden)
        self.rounds = nn.ModuleList(nn.MultiheadAttention(hidden, heads, batch_first=True) for _ in range(2))
        self.query_mlp = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.GELU(),
                                       nn.Linear(2 * hidden, hidden))
        self.match = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 4))  # gate, 3 scores
        self.same = nn.Linear(hidden, 32)  # token identity space for the distinct count
        self.head = nn.Sequential(nn.Linear(2 * hidden + 8, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden),
                                  nn.GELU())
        self.words = nn.Linear(hidden, words)
        self.colour_out, self.shape_out = nn.Linear(hidden, len(COLOURS)), nn.Linear(hidden, len(SHAPES))
        self.register_buffer("word_parts", torch.zeros(words, len(COLOURS) + len(SHAPES)))  # set by the caller
        self.number = nn.Linear(hidden, 3)  # mu (minutes), weight of the distinct count, spread

    def forward(self, tokens: torch.Tensor, motion: torch.Tensor, pad: torch.Tensor,
                ids: torch.Tensor) -> torch.Tensor:
        """tokens [B, L, D], motion [B, L, E], pad [B, L] bool, ids [B, 5] -> logits [B, words + MAX_NUMBER + 1]."""
        h = self.token_norm(self.base(tokens) + self.motion(motion))  # [B, L, H]
        first = self.colour(ids[:, 1]) + self.shape(ids[:, 2]) + self.slot[0]
        second = self.colour(ids[:, 3]) + self.shape(ids[:, 4]) + self.slot[1]
        q = (self.qtype(ids[:, 0]) + first).unsqueeze(1)  # [B, 1, H]
        q2 = (self.qtype(ids[:, 0]) + second).unsqueeze(1)
        query = torch.cat([q, q2], dim=1)  # [B, 2, H]: one query per named slot
        for attend in self.rounds:
            read, _ = attend(query, h, h, key_padding_mask=pad)  # [B, 2, H]
            query = query + read
            query = query + self.query_mlp(query)
        z = self.match(h * q + h)  # [B, L, 4]: question-conditioned per-token gate and scores
        gate = torch.sigmoid(z[..., 0]).masked_fill(pad, 0.0)  # [B, L]
        scores = z[..., 1:].masked_fill(pad.unsqueeze(-1), -1e4).amax(1)  # [B, 3]
        u = F.normalize(self.same(self.base(tokens)), dim=-1)  # [B, L, 32]
        similar = torch.sigmoid(8.0 * (u @ u.transpose(1, 2)) - 4.0)  # [B, L, L]
        distinct = (gate / (similar @ gate.unsqueeze(-1)).squeeze(-1).clamp(min=1e-3)).sum(1, keepdim=True)  # [B, 1]
        counts = torch.cat([distinct, gate.sum(1, keepdim=True), scores, distinct / 4, gate.mean(1, keepdim=True),
                            torch.ones_like(distinct)], dim=1)  # [B, 8]
        out = self.head(torch.cat([query.flatten(1), counts], dim=1))  # [B, H]
        number = self.number(out)  # [B, 3]
        mu = SECONDS_SCALE * number[:, :1] + number[:, 1:2] * distinct  # [B, 1]
        spread = F.softplus(number[:, 2:]) + 0.3
        numbers = torch.arange(MAX_NUMBER + 1, dtype=out.dtype)  # [N]
        parts = torch.cat([self.colour_out(out), self.shape_out(out)], dim=1)  # [B, C + S]
        words = self.words(out) + parts @ self.word_parts.T  # a name's logit shares its colour's and shape's
        return torch.cat([words, -(numbers - mu) ** 2 / (2 * spread ** 2)], dim=1)


def _examples(pairs: list[tuple[Memory, list[QA]]]) -> tuple[list[Memory], list[int], list[QA]]:
    """Flatten (memory, questions) pairs -> memories, memory index per question, questions."""
    memories, index, qas = [], [], []
    for memory, asked in pairs:
        for qa in asked:
            index.append(len(memories))
            qas.append(qa)
        memories.append(memory)
    return memories, index, qas


def _number(answer: str) -> int | None:
    return int(answer) if re.fullmatch(r"\d+", answer) and int(answer) <= MAX_NUMBER else None


def _allowed(by_type: torch.Tensor, qas: list[QA], words: list[str]) -> torch.Tensor:
    """Answers a question may get, [N, V] bool: those seen in training for its type; an order question's
    only the two objects it names (when both are named in full and seen as answers)."""
    out = by_type[[QTYPES.index(question_type(qa.question)) for qa in qas]].clone()
    for n, qa in enumerate(qas):
        named = [f"{c} {s}" for c, s in named_objects(qa.question) if c and s]
        if question_type(qa.question) == "first" and len(named) == 2 and all(w in words for w in named):
            out[n, :] = False
            out[n, [words.index(w) for w in named]] = True
    return out


def probe_accuracy(train: list[tuple[Memory, list[QA]]], heldout: list[tuple[Memory, list[QA]]],
                   steps: int = 1500, seed: int = 0) -> dict:
    """Train a small supervised probe on (memory, question) -> answer over `train`, score it on `heldout`.
    Returns {"accuracy": percent overall, "per_category": {category: percent}, "questions": n,
             "train_questions": n, "steps": steps, "s": seconds}."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_memories, train_index, train_qas = _examples(train)
    test_memories, test_index, test_qas = _examples(heldout)
    if not train_qas or not test_qas:
        raise ValueError(f"train and heldout: expected questions, got {len(train_qas)} and {len(test_qas)}")
    words = sorted({qa.answer for qa in train_qas if _number(qa.answer) is None})
    vocab = words + [str(n) for n in range(MAX_NUMBER + 1)]
    allowed = torch.zeros(len(QTYPES), len(vocab), dtype=torch.bool)  # [types, V]: answers seen per type
    allowed[[QTYPES.index(t) for t in NUMERIC_TYPES], len(words):] = True
    for qa in train_qas:
        if _number(qa.answer) is None:
            allowed[QTYPES.index(question_type(qa.question)), words.index(qa.answer)] = True
    allowed[~allowed.any(1)] = True
    word_index = {w: i for i, w in enumerate(words)}
    targets = torch.tensor([word_index[qa.answer] if _number(qa.answer) is None else len(words) + _number(qa.answer)
                            for qa in train_qas])  # [N]
    train_ids = torch.tensor([_question_ids(qa.question) for qa in train_qas])  # [N, 5]
    test_ids = torch.tensor([_question_ids(qa.question) for qa in test_qas])
    train_allowed, test_allowed = (_allowed(allowed, qas, words) for qas in (train_qas, test_qas))  # [N, V]
    train_mem, test_mem = _stack_memories(train_memories), _stack_memories(test_memories)
    train_at, test_at = torch.tensor(train_index), torch.tensor(test_index)
    model = Probe(train_mem[0].shape[-1], train_mem[1].shape[-1], len(words))
    for i, word in enumerate(words):
        for part in word.split():
            if part in COLOURS:
                model.word_parts[i, COLOURS.index(part)] = 1.0
            elif part in SHAPES:
                model.word_parts[i, len(COLOURS) + SHAPES.index(part)] = 1.0
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=max(steps, 1),
                                                   pct_start=0.05)
    done = 0
    model.train()
    for done in range(1, steps + 1):
        pick = torch.from_numpy(rng.integers(0, len(train_qas), size=64))  # [64]
        at = train_at[pick]
        logits = model(train_mem[0][at], train_mem[1][at], train_mem[2][at], train_ids[pick])  # [64, V]
        logits = logits.masked_fill(~train_allowed[pick], -1e4)
        loss = F.cross_entropy(logits, targets[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if time.perf_counter() - started > TIME_BUDGET_S:
            break
    model.eval()
    correct: dict[str, list[bool]] = {}
    with torch.no_grad():
        for start in range(0, len(test_qas), 256):
            part = slice(start, start + 256)
            at = test_at[part]
            logits = model(test_mem[0][at], test_mem[1][at], test_mem[2][at], test_ids[part])
            best = logits.masked_fill(~test_allowed[part], -1e4).argmax(1)  # [b]
            for qa, i in zip(test_qas[part], best.tolist()):
                correct.setdefault(qa.category, []).append(is_correct(vocab[i], qa))
    total = [c for cs in correct.values() for c in cs]
    return {"accuracy": 100.0 * sum(total) / len(total),
            "per_category": {c: 100.0 * sum(correct[c]) / len(correct[c]) for c in CATEGORIES if c in correct},
            "questions": len(test_qas), "train_questions": len(train_qas), "steps": done,
            "s": time.perf_counter() - started}


# -- oracle memories (no trained model needed) ------------------------------------------------------------
GRID = (14, 14)            # the vision tower's token grid
ORACLE_DIM = 64            # width of the concept tokens
FRAMES_PER_CHUNK = 4


def oracle_pairs(spec, snapshots: int, per_category: int, fixed: list[QA] | None = None,
                 dim: int = ORACLE_DIM) -> list[tuple[Memory, list[QA]]]:
    """One scene (a SceneSpec) -> (oracle token_dynamics@32 memory, questions asked at its t_end) at
    `snapshots` chunk ends (the last always one); `fixed`: the questions for the last snapshot (a suite's)."""
    from scenes.scene import make_scene
    from scenes.suites import sampled_times
    from train.config import MemoryFormat
    from train.memory import snapshot_chunks, stream_memories
    from train.oracle import Concepts, cell_label_maps, oracle_tokens

    scene, times = make_scene(spec), sampled_times(spec)
    labels = cell_label_maps(scene, times, GRID)  # [T, gh, gw]
    tokens = oracle_tokens(Concepts.make(dim), scene, labels, seed=spec.seed)  # [T, gh, gw, D]
    at = snapshot_chunks(-(-len(times) // FRAMES_PER_CHUNK), snapshots)
    memories = stream_memories(tokens, times, MemoryFormat("token_dynamics", 32), FRAMES_PER_CHUNK, at, spec.seed)
    rng = np.random.default_rng([spec.seed, 11])
    out = []
    for i, memory in enumerate(memories):
        last = i == len(memories) - 1
        asked = fixed if last and fixed is not None else questions(scene, memory.t_end, rng, per_category)
        out.append((memory, list(asked)))
    return out


def probe_main(argv: list[str] | None = None) -> dict:
    """CLI: build oracle memories, train the probe, print accuracy per category against chance."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small set (the only mode for now)")
    parser.add_argument("--train-scenes", type=int, default=20)
    parser.add_argument("--heldout-scenes", type=int, default=12)
    parser.add_argument("--snapshots", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from scenes.scene import SceneSpec
    from scenes.suites import TRAIN_SEED_START, suite

    started = time.perf_counter()
    train = [pair for i in range(args.train_scenes)
             for pair in oracle_pairs(SceneSpec(seed=TRAIN_SEED_START + i), args.snapshots, 2)]
    heldout = [pair for spec, qas in suite("heldout")[:args.heldout_scenes]
               for pair in oracle_pairs(spec, args.snapshots, 1, fixed=qas)]
    built = time.perf_counter() - started
    result = probe_accuracy(train, heldout, steps=args.steps)
    print(f"oracle memories token_dynamics@32: {args.train_scenes} train scenes ({result['train_questions']} "
          f"questions), {args.heldout_scenes} held-out ({result['questions']}); built in {built:.0f} s, "
          f"probe {result['steps']} steps in {result['s']:.0f} s")
    for category, accuracy in result["per_category"].items():
        print(f"  {category:10s} {accuracy:5.1f}%   (chance {100 * chance(category):4.1f}%)")
    print(f"  {'overall':10s} {result['accuracy']:5.1f}%")
    return result


if __name__ == "__main__":
    probe_main()
