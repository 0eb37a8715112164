"""`tokdyn demo`: the embedded default end to end, on this machine, with a running commentary.

Starts a local Ray cluster and the pipeline (synthetic camera or --url, tiny model), shows progress while
the video plays, asks a few questions, prints the answers and the compression figures, and shuts down.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time

import ray

from frontends.cli import _print_answer, _status_line, format_span
from actors.config import load_config
from actors.pipeline import ask, start_pipeline, stop_pipeline

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
             out=sys.stdout) -> int:
    """Run the demo; returns the process exit status (0 = every question answered)."""
    config = load_config("default")
    stream = config.streams[0]
    if url is not None:
        stream = dataclasses.replace(stream, url=url, live=True, loop=not url.startswith(("rtsp", "synthetic")))
    with tempfile.TemporaryDirectory(prefix="tokdyn-demo-") as checkpoints:
        # A fresh memory every run: the demo must not resume an older run's checkpoint.
        config = dataclasses.replace(config, checkpoint_dir=checkpoints, streams=(stream,))
        if config.model.is_tiny:
            print(TINY_WARNING, file=out)
        print(f"starting Ray and the pipeline (stream {stream.stream_id!r}: {stream.url}) ...", file=out, flush=True)
        started = time.monotonic()
        controller = start_pipeline(config)
        try:
            print(f"pipeline up in {time.monotonic() - started:.1f} s; watching for {seconds:.0f} s", file=out)
            status = _watch(controller, stream.stream_id, seconds, out)
            llm = ray.get(controller.llm_handle.remote())
            for question in questions or QUESTIONS:
                print(f"\nQ: {question}\nA: ", end="", file=out, flush=True)
                done = _print_answer(ask(llm, stream.stream_id, question, max_tokens=config.model.max_new_tokens),
                                     out)
                print(f"   {format_span(done)}", file=out)
            status = ray.get(controller.stream_status.remote(stream.stream_id))
            _figures(status, out)
        finally:
            stop_pipeline(controller)
            ray.shutdown()
    print("shut down cleanly.", file=out)
    return 0


def _watch(controller, stream_id: str, seconds: float, out) -> dict:
    """Print a status line every PROGRESS_S until `seconds` passed and a first snapshot exists."""
    start = time.monotonic()
    while True:
        status = ray.get(controller.stream_status.remote(stream_id))
        print("  " + _status_line(status), file=out, flush=True)
        waited = time.monotonic() - start
        if status.get("state") == "failed":
            raise RuntimeError(f"stream {stream_id}: the source failed: {status.get('last_error')}")
        if status.get("snapshot_version") is not None and waited >= seconds:
            return status
        if waited > max(seconds, FIRST_SNAPSHOT_TIMEOUT_S):
            raise TimeoutError(f"stream {stream_id}: expected a snapshot within {waited:.0f} s, got none "
                               f"(state {status.get('state')}, last error {status.get('last_error')})")
        time.sleep(PROGRESS_S)  # pacing the progress display, not waiting for a condition


def _figures(status: dict, out) -> None:
    print("\ncompression figures:", file=out)
    for key, label, fmt in (("frames_in", "frames decoded", "{}"), ("frames_sampled", "frames sampled", "{}"),
                            ("tokens_seen", "visual tokens seen", "{}"),
                            ("tokens_held", "visual tokens held (K)", "{}"),
                            ("compression_ratio", "compression ratio", "{:.0f}x"),
                            ("t_end", "media time covered (s)", "{:.1f}"), ("lag_s", "lag behind live (s)", "{:.2f}"),
                            ("dropped", "frames dropped", "{}")):
        value = status.get(key)
        print(f"  {label:<26} {fmt.format(value) if value is not None else '-'}", file=out)
    stages = status.get("stage_s") or {}
    if stages:
        print("  mean s per chunk: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in sorted(stages.items())),
              file=out)
