"""The demo's questions with known answers: which are asked, the truth at a snapshot's end, the scoring,
and `tokdyn demo` on a scene camera end to end (real Ray pipeline, tiny model)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import load_config
from frontends.quiz import Scorecard, quiz_for
from scenes.questions import answer_at
from scenes.suites import suite

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_camera_is_the_demo_scene_with_its_questions():
    stream = load_config("default").streams[0]
    quiz = quiz_for(stream.url, stream.sample_rate_hz)
    (spec, qas), = suite("demo")
    assert quiz is not None and quiz.scene.spec == spec and list(quiz.questions) == qas
    assert quiz.ready_at == qas[0].t_query == spec.seconds - 0.5
    assert quiz_for("synthetic://?width=64&height=64") is None and quiz_for("clip.mp4") is None


def test_other_scenes_and_rates_get_questions_of_their_own():
    quiz = quiz_for("scene://?seed=3&seconds=20", sample_rate_hz=1.0)
    assert quiz is not None and quiz.ready_at == 19.0 and quiz.questions
    assert all(qa.t_query == 19.0 for qa in quiz.questions)


def test_truth_follows_the_snapshot_end_and_scoring_prints_it():
    quiz = quiz_for(load_config("default").streams[0].url)
    count = next(qa for qa in quiz.questions if qa.key == ("count_now",))
    early = 0.5  # a snapshot that ended early: the truth is what held then
    assert quiz.truth(count, early) == answer_at(quiz.scene, ("count_now",), early)
    assert quiz.truth(count, None) == count.answer
    out = io.StringIO()
    card = Scorecard(quiz, out)
    assert card.score(count, f" {count.answer}.", None) is True
    assert card.score(count, "many", None) is False
    card.summary()
    text = out.getvalue()
    assert text.count(f"truth at {quiz.ready_at:.1f} s: '{count.answer}' (count)") == 2
    assert "-> RIGHT" in text and "-> wrong" in text
    assert re.search(r"accuracy: 1/2 = 50% on questions with known answers \(chance \d+%\)", text)


@pytest.mark.ray
def test_demo_on_a_scene_camera_prints_truth_and_accuracy():
    """`tokdyn demo --url scene://...`: the scene plays to its end, every question's answer is printed
    beside its truth, then the accuracy line; exit 0 (the random model's answers are wrong, not failures)."""
    url = "scene://?seed=7&seconds=8&width=160&height=120"
    done = subprocess.run([sys.executable, "-m", "frontends.cli", "demo", "--url", url], cwd=ROOT,
                          capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    quiz = quiz_for(url)
    out = done.stdout
    for qa in quiz.questions:
        assert f"Q: {qa.question}" in out
    assert len(re.findall(r"truth at \d+\.\d s: ", out)) == len(quiz.questions)
    assert re.search(rf"accuracy: \d+/{len(quiz.questions)} = \d+%", out) and "shut down cleanly." in out
