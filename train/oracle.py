"""What a perfect vision path would give, and which object each memory token holds: the two halves of the
dense training signal.

Concepts: every (shape, colour) object has one fixed token, ``shape_vec[s] + colour_vec[c]`` (a seeded table,
the same for every run of a model size), and background cells ``background + noise``. The vision stage pulls
the projector's output toward these tokens cell by cell (train/warmup.py); the oracle memory is built from
them directly: per sampled frame, each grid cell of the scene's true label map becomes its object's concept
token (``oracle_tokens``), and the pipeline's own streaming compressor turns those frames into a memory with
its key map and motion, exactly as it does real tokens. So a reader taught on oracle memories meets the same
layout, the same motion features and, once the vision stage has converged, nearly the same base tokens.

Token labels: the key map says which base token sits at every cell of every frame, the scene's label maps
say which object does, so each base token gets the object most of its cells show (``token_objects``; -1:
background), whatever memory it came from (oracle or real). ``token_targets`` turns that into answer words
per token (its shape, colour, zone and direction now, and when it appeared) for the auxiliary loss, and
``focus_tokens`` names the tokens a question's answer depends on (its objects'), where the answer position's
attention is supervised to look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scenes.questions import NOTHING
from scenes.scene import Scene, zone_of
from scenes.shapes import COLOURS, SHAPES

#: Seed of the concept table: fixed, so that a vision path and a reader trained apart agree on it.
CONCEPT_SEED = 20261207
#: Per-dimension noise on oracle tokens, relative to a concept entry's spread (1.0): background cells vary
#: (the texture), so the compressor spends most of its budget there as it does on real frames; object cells
#: are nearly exact (what a converged vision stage gives).
BACKGROUND_NOISE = 0.6
OBJECT_NOISE = 0.1
#: A base token is an object's when at least this share of its cells show that object.
OBJECT_SHARE = 0.5
#: Attributes each memory token is asked to name (ATTRIBUTES order): targets [K, len(ATTRIBUTES)].
ATTRIBUTES = ("shape", "colour", "zone", "direction", "enter_time")
IGNORE = -100  # F.cross_entropy's ignore_index: no target for this token and attribute
#: Columns of the attributes only the key map's motion features can tell (a memory without them cannot name them).
MOTION_COLUMNS = [ATTRIBUTES.index(a) for a in ("zone", "direction", "enter_time")]


@dataclass(frozen=True)
class Concepts:
    """The concept table at width D: shape [S, D], colour [C, D], background [D] (entries ~ N(0, 1/2), so an
    object token has per-dimension spread about 1, like the standardised projector output)."""

    shape: torch.Tensor
    colour: torch.Tensor
    background: torch.Tensor

    @classmethod
    def make(cls, dim: int) -> Concepts:
        g = torch.Generator().manual_seed(CONCEPT_SEED)
        scale = 2 ** -0.5
        return cls(scale * torch.randn(len(SHAPES), dim, generator=g), scale * torch.randn(len(COLOURS), dim, generator=g),
                   torch.randn(dim, generator=g))

    def object_tokens(self, scene: Scene) -> torch.Tensor:
        """[N + 1, D]: row 0 the background concept, row i + 1 object i's (shape + colour)."""
        rows = [self.background] + [self.shape[SHAPES.index(o.shape)] + self.colour[COLOURS.index(o.colour)]
                                    for o in scene.objects]
        return torch.stack(rows)


def cell_label_maps(scene: Scene, times: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[T, gh, gw] int16 object index per cell (-1 background) at media times [T]."""
    return np.stack([scene.cell_labels(float(t), grid) for t in times])


def oracle_tokens(concepts: Concepts, scene: Scene, labels: np.ndarray, seed: int) -> torch.Tensor:
    """Cell labels [T, gh, gw] -> the frame tokens [T, gh, gw, D] a perfect vision path would give: each cell
    its object's concept token, background cells the background concept plus noise (seeded)."""
    table = concepts.object_tokens(scene)  # [N + 1, D]
    index = torch.from_numpy(labels.astype(np.int64) + 1)  # [T, gh, gw]
    tokens = table[index]  # [T, gh, gw, D]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(tokens.shape, generator=g)
    scale = torch.where(index == 0, BACKGROUND_NOISE, OBJECT_NOISE).unsqueeze(-1)  # [T, gh, gw, 1]
    return tokens + scale * noise


def token_objects(key_map: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Key map [T, gh, gw] (ids into a base of K tokens) and cell labels [T, gh, gw] of the same frames ->
    [K] int64: the object most cells of each base token show (when at least OBJECT_SHARE of them), else -1."""
    if key_map.shape != labels.shape:
        raise ValueError(f"key map and labels: expected the same [T, gh, gw], got {key_map.shape} and {labels.shape}")
    objects = int(labels.max()) + 2 if labels.size else 1  # -1..max -> 0..max+1
    bins = key_map.astype(np.int64).ravel() * objects + labels.astype(np.int64).ravel() + 1
    counts = np.bincount(bins, minlength=k * objects).reshape(k, objects)  # [K, objects + 1]
    best = counts[:, 1:].argmax(1) if objects > 1 else np.zeros(k, dtype=np.int64)  # [K]
    share = counts[np.arange(k), best + 1] / np.maximum(counts.sum(1), 1)
    return np.where((objects > 1) & (share >= OBJECT_SHARE), best, -1)


def _first_id(tokenizer, word: str) -> int:
    """Id of the first token the model writes when it answers ``word`` (answers follow "assistant\\n")."""
    return int(tokenizer(word, add_special_tokens=False)["input_ids"][0])


def _single_id(tokenizer, word: str) -> int:
    """Id of ``word`` when it is one token, else IGNORE (a number the tokenizer splits is not asked)."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else IGNORE


def token_targets(tokenizer, scene: Scene, objects: np.ndarray, t_query: float) -> torch.Tensor:
    """Per base token (objects [K]: object index or -1), the first answer token of each of ATTRIBUTES about its
    object at ``t_query``: [K, len(ATTRIBUTES)] int64. Background tokens name "nothing" as shape and colour and
    have no zone, direction or time (IGNORE); an object out of view at ``t_query`` has no zone or direction."""
    nothing = _first_id(tokenizer, NOTHING)
    out = torch.full((len(objects), len(ATTRIBUTES)), IGNORE, dtype=torch.int64)
    w, h = scene.spec.width, scene.spec.height
    for k, index in enumerate(objects):
        if index < 0:
            out[k, 0] = out[k, 1] = nothing
            continue
        obj = scene.objects[int(index)]
        out[k, 0], out[k, 1] = _first_id(tokenizer, obj.shape), _first_id(tokenizer, obj.colour)
        if obj.present(t_query):
            out[k, 2] = _first_id(tokenizer, zone_of(*obj.position(t_query), w, h))
            out[k, 3] = _first_id(tokenizer, obj.direction(t_query))
        out[k, 4] = _single_id(tokenizer, str(int(round(obj.enter_t))))
    return out


def without_motion(targets: torch.Tensor) -> torch.Tensor:
    """Targets [K, len(ATTRIBUTES)] of a memory read without its motion (centroid-only, baselines) -> a copy
    that asks no MOTION_COLUMNS word: from content tokens alone those are guesses, and teaching guesses
    would teach the answer prior."""
    out = targets.clone()
    out[:, MOTION_COLUMNS] = IGNORE
    return out


def referents(scene: Scene, key: tuple, t: float) -> list[int]:
    """Indices of the objects the answer to question ``key`` (scenes.questions QA.key) about [0, t] depends
    on: the one it names, both of an order question, every object counted, the moving or last one."""
    kind, args = key[0], key[1:]
    if kind in ("colour", "shape", "zone", "direction", "enter_time"):
        return [int(args[0])]
    if kind == "first":
        return [int(args[0]), int(args[1])]
    if kind == "ever":
        return [o.index for o in scene.objects if o.enter_t <= t and (o.colour, o.shape) == (args[0], args[1])]
    if kind == "count_now":
        return [o.index for o in scene.objects if o.present(t)]
    if kind == "count_ever":
        return [o.index for o in scene.objects if o.enter_t <= t]
    if kind == "moving":
        return [o.index for o in scene.objects if o.present(t) and o.direction(t) != "still"]
    if kind == "last_entered":
        entered = [o for o in scene.objects if o.enter_t <= t]
        return [max(entered, key=lambda o: o.enter_t).index] if entered else []
    raise ValueError(f"question key: expected a scenes.questions key kind, got {key!r}")


def focus_tokens(objects: np.ndarray, wanted: list[int]) -> torch.Tensor:
    """Base tokens (objects [K]: object per token) that hold any of the ``wanted`` objects: [F] int64 indices."""
    return torch.from_numpy(np.flatnonzero(np.isin(objects, wanted))).to(torch.int64)
