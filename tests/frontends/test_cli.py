"""The `tokdyn` command line against a real `tokdyn serve` (its own local Ray cluster), and the offline tools."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from actors.config import MAX_REPLICAS
from actors.status import ReplicaStatus, ScaleEvent
from frontends.cli import build_parser, cmd_scale, event_line, main, replica_table
from tests.helpers import wait_for, write_video

ROOT = Path(__file__).resolve().parents[2]
TOKDYN = [sys.executable, "-m", "frontends.cli"]


def tokdyn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*TOKDYN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ray
def test_serve_streams_ask_and_api(tmp_path: Path) -> None:
    """Given `tokdyn serve` on a config with no streams, when a stream is added, listed, its replicas listed
    (`tokdyn scale`), asked about (whole and over a window with --since/--until) and removed from other
    processes, then each command works and Ctrl-C shuts the server down cleanly."""
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config.update(streams=[], checkpoint_dir=str(tmp_path / "ckpt"))
    config["ray"]["num_cpus"] = 2
    config["api"]["port"] = 0
    config["model"]["max_new_tokens"] = 4
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    video = write_video(tmp_path / "v.mp4", seconds=4.0)
    log = open(tmp_path / "serve.log", "w+")
    # Started the way a script's background job is, with SIGINT ignored: Ctrl-C must still stop it.
    serve = subprocess.Popen([*TOKDYN, "serve", "-c", str(tmp_path / "serve.yaml")], cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        banner = wait_for(lambda: re.search(r"Ray at (\S+) .*HTTP API on (\S+)\.", Path(log.name).read_text()),
                          240, "the serve banner")
        address, api_url = banner.group(1), banner.group(2)
        ray_args = ("--address", address)
        added = tokdyn("streams", *ray_args, "add", "cam", str(video), "--no-live")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["stream_id"] == "cam"
        # poll through the HTTP API (cheap); each CLI call pays for importing torch + transformers
        wait_for(lambda: httpx.get(f"{api_url}/v1/streams/cam", timeout=30).json().get("chunks_compressed") == 2,
                 180, "2 chunks compressed")
        # the replica pools of the default config: one encoder (serving cam) and one LLM replica, both alive
        pools = tokdyn("scale", *ray_args)
        assert pools.returncode == 0, pools.stderr
        rows = [line.split() for line in pools.stdout.splitlines()[1:3]]
        assert [(row[0], row[2]) for row in rows] == [("encoder", "alive"), ("llm", "alive")], pools.stdout
        assert rows[0][4] == "1", pools.stdout  # STREAMS: cam is assigned to the one encoder
        listed = tokdyn("streams", *ray_args, "list", "--json")
        assert json.loads(listed.stdout.splitlines()[0])["tokens_seen"] == 8 * 196
        answer = tokdyn("ask", *ray_args, "cam", "What moves?")
        assert answer.returncode == 0, answer.stderr
        assert "[snapshot v2, media 0.0-3.5 s, 32 visual tokens" in answer.stdout
        # a window of media time (from the stream's segments) is answered from that window alone
        window = tokdyn("ask", *ray_args, "cam", "What moves?", "--since", "1", "--until", "2")
        assert window.returncode == 0, window.stderr
        span = re.search(r"media ([\d.]+)-([\d.]+) s, (\d+) visual tokens", window.stdout)
        assert span and 1.0 <= float(span[1]) <= float(span[2]) <= 2.0 and 0 < int(span[3]) <= 32, window.stdout
        # and one the stream does not hold is a one-line error and exit 1
        beyond = tokdyn("ask", *ray_args, "cam", "What moves?", "--since", "100", "--until", "200")
        assert beyond.returncode == 1 and "expected a span the segments hold" in beyond.stderr, beyond.stderr
        assert "Traceback" not in beyond.stderr and str(tmp_path) not in beyond.stderr
        assert tokdyn("streams", *ray_args, "rm", "cam").returncode == 0
        assert httpx.get(f"{api_url}/v1/streams/cam", timeout=30).status_code == 404
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(120)
        log.close()
    assert code == 0, Path(log.name).read_text()[-3000:]
    assert "stopping" in Path(log.name).read_text()


@pytest.mark.parametrize("window,message", [
    (["--since", "5", "--until", "2"], "expected --since <= --until (media seconds), got --since 5 > --until 2"),
    (["--since", "-1"], "argument --since: expected media seconds, a finite number >= 0, got '-1'"),
    (["--until", "inf"], "argument --until: expected media seconds, a finite number >= 0, got 'inf'"),
    (["--since", "ten"], "argument --since: expected media seconds, a finite number >= 0, got 'ten'"),
])
def test_ask_bad_window_exits_2_before_connecting(window: list[str], message: str) -> None:
    """A bad --since/--until is refused by the command line itself (usage error, exit 2, no traceback) before
    it joins any cluster: the address here has nothing behind it."""
    done = tokdyn("ask", "--address", "127.0.0.1:9", "cam", "What moves?", *window, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_scale_parses_a_listing_and_a_resize() -> None:
    listing = build_parser().parse_args(["scale", "--address", "10.0.0.1:6379"])
    assert (listing.role, listing.count, listing.address, listing.namespace, listing.func) == (
        None, None, "10.0.0.1:6379", "tokdyn", cmd_scale)
    resize = build_parser().parse_args(["scale", "llm", "3", "--namespace", "cams"])
    assert (resize.role, resize.count, resize.namespace, resize.func) == ("llm", 3, "cams", cmd_scale)


@pytest.mark.parametrize("argv,message", [
    (["gpu", "2"], "argument role: invalid choice: 'gpu' (choose from 'encoder', 'llm')"),
    (["encoder"], "scale: expected ROLE and N together (e.g. `tokdyn scale encoder 2`), got no N"),
    (["encoder", "0"], f"argument N: expected a number of replicas, an integer 1..{MAX_REPLICAS}, got '0'"),
    (["llm", str(MAX_REPLICAS + 1)], f"an integer 1..{MAX_REPLICAS}, got '{MAX_REPLICAS + 1}'"),
    (["llm", "two"], f"an integer 1..{MAX_REPLICAS}, got 'two'"),
    (["llm", "1.5"], f"an integer 1..{MAX_REPLICAS}, got '1.5'"),
])
def test_scale_bad_values_exit_2_before_connecting(argv: list[str], message: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A bad ROLE or N is a usage error (exit 2) before the command joins any cluster: nothing listens at
    the address, which would be a different error."""
    with pytest.raises(SystemExit) as exit_:
        main(["scale", "--address", "127.0.0.1:9", *argv])
    out = capsys.readouterr()
    assert exit_.value.code == 2 and message in out.err and out.out == "", out.err


def test_replica_table_and_event_line() -> None:
    encoder = ReplicaStatus("encoder", "tokdyn-encoder-1", "0123456789abcdef0123", "alive", streams=3,
                            frames_per_s=6.25, batch_fill=0.5, queue_depth=2)
    llm = ReplicaStatus("llm", "tokdyn-llm-1", None, "unavailable", answers_in_flight=1)
    header, *rows = replica_table([encoder, llm])
    assert header.split() == ["ROLE", "REPLICA", "STATE", "NODE", "STREAMS", "FRAMES/S", "FILL", "QUEUE",
                              "ANSWERING"]
    assert rows[0].split() == ["encoder", "tokdyn-encoder-1", "alive", "0123456789ab", "3", "6.25", "0.50", "2", "-"]
    assert rows[1].split() == ["llm", "tokdyn-llm-1", "unavailable", "-", "0", "-", "-", "-", "1"]
    event = ScaleEvent(at=0.0, role="encoder", action="add", replica="tokdyn-encoder-2", replicas=2,
                       reason="autoscale: lag")
    assert event_line(event) == "1970-01-01 00:00:00Z  encoder add tokdyn-encoder-2 -> 2 replica(s) (autoscale: lag)"


def test_compress_and_inspect_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    video = write_video(tmp_path / "v.mp4", seconds=3.0)
    out = tmp_path / "v.tdz"
    assert main(["compress", str(video), "-o", str(out), "--budget", "16"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["frames"] == 6 and figures["base_tokens"] == 16
    assert figures["compression_ratio"] == 6 * 196 / 16
    assert main(["inspect", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    from PIL import Image

    with Image.open(shown["png"]) as image:
        assert image.size == (6 * 96, 2 * 96)  # frames on top, key map overlay below
    assert shown["clusters_used"] <= 16


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: {batch_frames: 0}\n")
    assert main(["serve", "-c", str(bad)]) == 2
    assert "encoder.batch_frames: expected >= 1, got 0" in capsys.readouterr().err


def test_probe_reports_a_working_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sheet = tmp_path / "sheet.png"
    assert main(["probe", "synthetic://?width=160&height=120&fps=10&seconds=2", "--sheet", str(sheet),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True and sheet.exists()
    assert main(["probe", str(tmp_path / "missing.mp4"), "--sheet", ""]) == 1


@pytest.mark.ray
def test_demo_runs_end_to_end_and_exits_1_when_a_question_fails() -> None:
    """`tokdyn demo` (its own local Ray cluster, so in its own process): progress, answers, figures, a clean
    shutdown; a question the model refuses (longer than its context) is reported, the others are still
    answered, and the exit status says one failed."""
    # At least 40,000 prompt tokens whatever the tokenizer merges ("why" and "?" are separate pre-tokens): over
    # the tiny model's 32,768-token context.
    too_long = "why? " * 20_000
    done = tokdyn("demo", "--seconds", "3", "--question", "What moves?", "--question", too_long, timeout=400)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "NOT meaningful" not in out and "Q: What moves?" in out  # the shipped model is trained
    assert out.count("failed:") == 1 and "1 question(s) failed." in out
    assert "compression ratio" in out
