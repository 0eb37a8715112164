"""Questions with known answers for a ``scene://`` stream: which to ask, when the stream has played long
enough, and each answer scored against the truth at the end of the snapshot it was drawn from.

The demo scene (scenes.suites "demo") gets the suite's questions; any other scene gets questions of the
same categories, generated for it (scenes.questions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

import numpy as np

from scenes.questions import QA, answer_at, chance, is_correct, questions
from scenes.scene import Scene, SceneSpec, make_scene
from scenes.suites import DEMO_CATEGORIES, SAMPLE_RATE_HZ, last_sampled_time, suite


@dataclass(frozen=True)
class Quiz:
    """A scene, its questions, and ``ready_at``: the media time (s) of the last frame the stream's sampler
    keeps, which the memory's snapshot should reach before the questions are asked."""

    scene: Scene
    questions: tuple[QA, ...]
    ready_at: float

    def truth(self, qa: QA, t_end: float | None) -> str:
        """The answer to ``qa`` at the snapshot's end ``t_end`` (media s; None: at ``ready_at``)."""
        t = self.ready_at if t_end is None else min(max(t_end, 0.0), self.ready_at)
        return answer_at(self.scene, qa.key, t)


def quiz_for(url: str, sample_rate_hz: float = SAMPLE_RATE_HZ) -> Quiz | None:
    """The quiz for a scene:// stream sampled at ``sample_rate_hz``; None for any other URL.
    Raises scenes.scene.SceneSpecError for a bad scene URL."""
    if urlsplit(url).scheme != "scene":
        return None
    spec = SceneSpec.from_url(url)
    scene, ready_at = make_scene(spec), last_sampled_time(spec, sample_rate_hz)
    known = dict(suite("demo")) if sample_rate_hz == SAMPLE_RATE_HZ else {}
    qas = known.get(spec) or questions(scene, ready_at, np.random.default_rng([spec.seed, 5]),
                                       categories=DEMO_CATEGORIES)
    return Quiz(scene, tuple(qas), ready_at)


class Scorecard:
    """Answers scored against the truth, printed one line each, then one accuracy line."""

    def __init__(self, quiz: Quiz, out: TextIO) -> None:
        self.quiz, self.out = quiz, out
        self.right: list[bool] = []
        self.categories: list[str] = []

    def score(self, qa: QA, answer: str, t_end: float | None) -> bool:
        """Print the truth beside ``answer`` (the model's text) and whether it is right."""
        truth = self.quiz.truth(qa, t_end)
        ok = is_correct(answer, dataclasses.replace(qa, answer=truth))
        when = f"{t_end:.1f}" if t_end is not None else f"{self.quiz.ready_at:.1f}"
        print(f"   truth at {when} s: {truth!r} ({qa.category}) -> {'RIGHT' if ok else 'wrong'}", file=self.out)
        self.right.append(ok)
        self.categories.append(qa.category)
        return ok

    def summary(self) -> None:
        """The accuracy line, with the chance level of the same questions for comparison."""
        if not self.right:
            return
        level = float(np.mean([chance(c) for c in self.categories]))
        print(f"\naccuracy: {sum(self.right)}/{len(self.right)} = {100 * np.mean(self.right):.0f}% on questions "
              f"with known answers (chance {100 * level:.0f}%)", file=self.out)
