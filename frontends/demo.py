"""`tokdyn demo`: the embedded default end to end, on this machine, with a running commentary.

Starts a local Ray cluster and the pipeline (the configured camera or --url, the configured model), shows
progress while the video plays, asks a few questions, prints the answers and the compression figures, and
shuts down. A scene:// camera (the default: scenes.suites "demo") is played to its end and asked questions
with known answers: each answer is printed beside the truth at its snapshot's end, then the accuracy.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from typing import Any, Iterable, Iterator, TextIO

import ray

from actors.client.client import PipelineClient
from actors.config import load_config
from actors.errors import PipelineError, StreamFailed
from actors.client.pipeline import start_pipeline
from actors.status import StreamStatus
from frontends.display import format_span, print_answer, status_line
from frontends.quiz import Scorecard, quiz_for
from scenes.questions import QA
from stream.config import redact_url
from stream.urls import is_live_url

QUESTIONS = (
    "What is happening in the video?",
    "How many objects are moving, and in which direction?",
    "What changed in the last few seconds?",
)
TINY_WARNING = ("NOTE: the demo's model is a tiny LLaVA-OneVision with RANDOM weights (no download needed):\n"
                "      the pipeline, memory and figures are real, but its answers are NOT meaningful.\n"
                "      Use a real checkpoint (configs/llava-onevision-0.5b.yaml) for real answers.")
PROGRESS_S = 2.0  # seconds between progress lines
FIRST_SNAPSHOT_TIMEOUT_S = 120.0


def run_demo(url: str | None = None, seconds: float = 20.0, questions: list[str] | None = None,
             out: TextIO = sys.stdout) -> int:
    """Run the demo; returns the process exit status: 0 when every question was answered, 1 otherwise."""
    config = load_config("default")
    stream = config.streams[0]
    if url is not None:
        stream = dataclasses.replace(stream, url=url, live=True, loop=not is_live_url(url))
    # A scene:// camera comes with questions whose answers are known: asked when the scene has played.
    quiz = None if questions else quiz_for(stream.url, stream.sample_rate_hz)
    asked: list[tuple[str, QA | None]] = ([(qa.question, qa) for qa in quiz.questions] if quiz else
                                          [(q, None) for q in questions or QUESTIONS])
    scorecard = Scorecard(quiz, out) if quiz else None
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tokdyn-demo-") as checkpoints:
        # A fresh memory every run: the demo must not resume an older run's checkpoint.
        config = dataclasses.replace(config, checkpoint_dir=checkpoints, streams=(stream,))
        if config.model.is_tiny:
            print(TINY_WARNING, file=out)
        print(f"starting Ray and the pipeline (stream {stream.stream_id!r}: {redact_url(stream.url)}) ...", file=out,
              flush=True)
        started = time.monotonic()
        client = start_pipeline(config)
        try:
            watching = f"playing the scene to {quiz.ready_at:.1f} s" if quiz else f"watching for {seconds:.0f} s"
            print(f"pipeline up in {time.monotonic() - started:.1f} s; {watching}", file=out)
            _watch(client, stream.stream_id, seconds, out, until=quiz.ready_at if quiz else None)
            for question, qa in asked:
                print(f"\nQ: {question}\nA: ", end="", file=out, flush=True)
                text: list[str] = []
                try:
                    done = print_answer(_keep_text(client.ask(stream.stream_id, question,
                                                              max_tokens=config.model.max_new_tokens), text), out)
                except (PipelineError, ValueError) as exc:  # one failed question must not hide the others
                    failed += 1
                    print(f"\n   failed: {exc}", file=out)
                    continue
                print(f"   {format_span(done)}", file=out)
                if scorecard is not None and qa is not None:
                    scorecard.score(qa, "".join(text), (done.get("span") or {}).get("t_end"))
            if scorecard is not None:
                scorecard.summary()
            _figures(client.stream_status(stream.stream_id), out)
        finally:
            client.shutdown()
            ray.shutdown()
    print(f"{failed} question(s) failed." if failed else "shut down cleanly.", file=out)
    return 1 if failed else 0


def _keep_text(events: Iterable[dict[str, Any]], text: list[str]) -> Iterator[dict[str, Any]]:
    """Pass answer events through, keeping the delta texts in ``text`` (to score the answer)."""
    for event in events:
        if event["type"] == "delta":
            text.append(event["text"])
        yield event


def _watch(client: PipelineClient, stream_id: str, seconds: float, out: TextIO,
           until: float | None = None) -> StreamStatus:
    """Print a status line every PROGRESS_S until `seconds` passed and a first snapshot exists, or, with
    `until`, until the snapshot reaches media time `until` (or the source ended and the memory stopped
    changing: frames dropped at the very end never arrive)."""
    start, previous_end = time.monotonic(), None
    while True:
        status = client.stream_status(stream_id)
        print("  " + status_line(status), file=out, flush=True)
        waited = time.monotonic() - start
        if status.failed:
            raise StreamFailed(f"stream {stream_id}: the source failed: {status.last_error}", status.last_error)
        if status.snapshot_version is not None:
            if until is None and waited >= seconds:
                return status
            if until is not None and (status.t_end >= until - 1e-6 or
                                      (status.state == "ended" and status.t_end == previous_end)):
                return status
            previous_end = status.t_end
        if waited > max(seconds, FIRST_SNAPSHOT_TIMEOUT_S + (until or 0.0)):
            raise TimeoutError(f"stream {stream_id}: expected a snapshot within {waited:.0f} s, got none "
                               f"(state {status.state}, last error {status.last_error})")
        time.sleep(PROGRESS_S)  # pacing the progress display, not waiting for a condition


def _figures(status: StreamStatus, out: TextIO) -> None:
    print("\ncompression figures:", file=out)
    for key, label, fmt in (("frames_in", "frames decoded", "{}"), ("frames_sampled", "frames sampled", "{}"),
                            ("tokens_seen", "visual tokens seen", "{}"),
                            ("tokens_held", "visual tokens held (K)", "{}"),
                            ("compression_ratio", "compression ratio", "{:.0f}x"),
                            ("t_end", "media time covered (s)", "{:.1f}"), ("lag_s", "lag behind live (s)", "{:.2f}"),
                            ("dropped", "frames dropped", "{}")):
        value = getattr(status, key)
        print(f"  {label:<26} {fmt.format(value) if value is not None else '-'}", file=out)
    stages = status.stage_s or {}
    if stages:
        print("  mean s per chunk: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in sorted(stages.items())),
              file=out)
