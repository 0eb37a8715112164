"""Fault run: a loopback RTSP camera killed and frozen, every actor killed, while questions keep arriving.

One local pipeline (tiny model) with two streams, an RTSP camera served by testkit/rtsp_server.py
("cam") and a synthetic camera ("syn"), and the HTTP API as its Ray actor. Two client threads ask about
both streams over HTTP the whole time. Each cycle injects, one after the other, waiting for each to
recover before the next: RTSP server killed (recovered = the source reconnects and new chunks arrive),
RTSP server frozen for twice the read timeout (same), and SIGKILL of the memory actor of "cam", the
encoder, the LLM, the API actor and the controller (recovered = a new pid and, after it, the stream
advancing / a 200 answer / the API answering / the restarted controller reporting "cam" advancing). The run is bounded: `--cycles` cycles, each fault given RECOVERY_S.

Reported: faults injected and recovered (and the slowest recovery), questions answered (200) / 503 /
other statuses, and what was lost: a stream's snapshot version, media time or compressed-chunk count
going backwards across a restart (checkpointed state must never be lost).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0], where bench/compressor.py would shadow the compressor package.
sys.path[0] = str(ROOT)

import httpx  # noqa: E402
import ray  # noqa: E402

from actors.config import ApiConfig, EncoderConfig, LLMConfig, PipelineConfig, RayConfig, TransportConfig  # noqa: E402
from actors.client.pipeline import start_pipeline  # noqa: E402
from bench.common import BenchRun, bench_parser, print_table  # noqa: E402
from frontends.api.server import start_api  # noqa: E402
from testkit.rtsp_server import RtspServer, rtsp_server_available  # noqa: E402
from vlm import ModelConfig  # noqa: E402

RECOVERY_S = 90.0  # a fault not recovered from within this counts as not recovered
READ_TIMEOUT_S = 2.0
POLL_S = 0.2
STREAMS = ("cam", "syn")


def _until(condition: Callable[[], Any], timeout_s: float) -> float | None:
    """Seconds until `condition()` is truthy (polled), or None at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # an actor restarting: not yet
            pass
        time.sleep(POLL_S)
    return None


class Questions:
    """Client threads asking about every stream over HTTP until stopped; statuses counted."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url
        self.statuses: Counter[str] = Counter()
        self.last_ok = 0.0  # monotonic time of the newest 200
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(i,), daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _ask(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            i = index
            while not self._stop.is_set():
                body = {"stream_id": STREAMS[i % len(STREAMS)], "max_tokens": 2,
                        "messages": [{"role": "user", "content": "What moves?"}]}
                i += 1
                try:
                    response = http.post("/v1/chat/completions", json=body)
                    key = str(response.status_code)
                    if response.status_code != 200:
                        key += f" {response.json().get('error', {}).get('code')}"
                    else:
                        self.last_ok = time.monotonic()
                except httpx.HTTPError as exc:  # the API actor itself restarting
                    key = f"no answer ({type(exc).__name__})"
                    time.sleep(POLL_S)
                self.statuses[key] += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)


class Watch:
    """The streams' progress; records anything that went backwards (lost state)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.high: dict[str, dict[str, float]] = {sid: {} for sid in STREAMS}
        self.lost: list[str] = []

    def sample(self) -> dict[str, Any]:
        statuses = {sid: self.client.stream_status(sid) for sid in STREAMS}
        for sid, s in statuses.items():
            for key in ("snapshot_version", "t_end", "chunks_compressed"):
                value = getattr(s, key)
                if value is None:
                    continue  # an actor restarting
                if value < self.high[sid].get(key, value):
                    self.lost.append(f"{sid}.{key} {self.high[sid][key]} -> {value}")
                self.high[sid][key] = max(value, self.high[sid].get(key, value))
        return statuses

    def advanced(self, sid: str, key: str, beyond: float) -> bool:
        value = getattr(self.sample()[sid], key)
        return value is not None and value > beyond


def _pid(handle: Any) -> int:
    return ray.get(handle.pid.remote(), timeout=5)


def _kill_actor(handle: Any, recovered: Callable[[], Callable[[], bool]], watch: Watch) -> float | None:
    """SIGKILL the actor's process; seconds until it has a new pid and the check `recovered()` made just
    before the kill holds."""
    old = _pid(handle)
    check = recovered()
    os.kill(old, signal.SIGKILL)
    return _until(lambda: _pid(handle) != old and check() and watch.sample() is not None, RECOVERY_S)


def run(cycles: int) -> dict[str, Any]:
    ok, why = rtsp_server_available()
    if not ok:
        raise SystemExit(f"faults: needs the loopback RTSP server ({why})")
    with TemporaryDirectory() as tmp, RtspServer(width=320, height=240, fps=15) as camera:
        config = PipelineConfig(
            ray=RayConfig(num_cpus=2), transport=TransportConfig(hwm=8, send_timeout_ms=500),
            model=ModelConfig(path="tiny", max_new_tokens=4), encoder=EncoderConfig(batch_frames=8),
            llm=LLMConfig(max_concurrent=2), api=ApiConfig(port=0), checkpoint_dir=tmp)
        client = start_pipeline(config)
        try:
            client.add_stream({"stream_id": "cam", "url": camera.url, "sample_rate_hz": 2.0,
                               "source": {"open_timeout_s": 3.0, "read_timeout_s": READ_TIMEOUT_S,
                                          "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}})
            client.add_stream({"stream_id": "syn", "url": "synthetic://?width=64&height=48&fps=10",
                               "sample_rate_hz": 2.0})
            api, url = start_api(config.api, namespace=config.ray.namespace)
            watch = Watch(client)
            _until(lambda: all((s.snapshot_version or 0) >= 2 for s in watch.sample().values()), RECOVERY_S)
            questions = Questions(url)
            try:
                faults = _inject(cycles, client, camera, api, url, watch, questions)
            finally:
                questions.stop()
            watch.sample()
        finally:
            client.shutdown()
    return {"faults": faults, "questions": dict(questions.statuses), "lost": watch.lost}


def _camera_fault(kind: str, camera: RtspServer, watch: Watch) -> float | None:
    """Kill (then restart) or freeze (then resume) the RTSP server; seconds from the server being back
    until the source has reconnected and compressed a new chunk."""
    before = watch.sample()["cam"]
    attempts = before.reconnect_attempts or 0
    if kind == "rtsp kill":
        camera.kill()
    else:
        camera.freeze()
    _until(lambda: (watch.sample()["cam"].reconnect_attempts or 0) > attempts, RECOVERY_S)
    if kind == "rtsp kill":
        camera.restart()
    else:
        camera.resume()
    reconnects = watch.sample()["cam"].reconnects or 0
    chunks = watch.sample()["cam"].chunks_compressed or 0
    return _until(lambda: (s := watch.sample()["cam"]).reconnects > reconnects
                  and (s.chunks_compressed or 0) > chunks, RECOVERY_S)


def _inject(cycles: int, client: Any, camera: RtspServer, api: Any, url: str, watch: Watch,
            questions: Questions) -> list[dict[str, Any]]:
    encoder, llm = client.encoder(), client.llm()
    faults = []

    def advanced(sid: str) -> Callable[[], bool]:
        version = watch.sample()[sid].snapshot_version or 0
        return lambda: watch.advanced(sid, "snapshot_version", version)

    def answered_after() -> Callable[[], bool]:
        since = time.monotonic()
        return lambda: questions.last_ok > since

    def api_answers() -> Callable[[], bool]:
        return lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200

    for _ in range(cycles):
        for kind in ("rtsp kill", "rtsp freeze"):
            faults.append({"fault": kind, "recovery_s": _camera_fault(kind, camera, watch)})
        memory = client.stream_handles("cam")["memory"]
        for kind, handle, recovered in (("kill memory(cam)", memory, lambda: advanced("cam")),
                                        ("kill encoder", encoder, lambda: advanced("syn")),
                                        ("kill llm", llm, answered_after),
                                        ("kill api", api, api_answers),
                                        ("kill controller", client.controller, lambda: advanced("cam"))):
            faults.append({"fault": kind, "recovery_s": _kill_actor(handle, recovered, watch)})
        print(f"cycle done: {len(faults)} faults so far, questions {dict(questions.statuses)}", flush=True)
    return faults


def main() -> None:
    parser = bench_parser(__doc__, "one cycle of faults (about a minute on an idle machine; more when loaded)")
    parser.add_argument("--cycles", type=int, default=3, help="fault cycles (6 faults each)")
    args = parser.parse_args()
    bench = BenchRun("faults", args.quick)
    results = run(1 if args.quick else args.cycles)
    rows = []
    for kind in dict.fromkeys(f["fault"] for f in results["faults"]):
        times = [f["recovery_s"] for f in results["faults"] if f["fault"] == kind]
        done = [t for t in times if t is not None]
        rows.append((kind, len(times), len(done), max(done) if done else None))
    print_table([("fault", ""), ("injected", "d"), ("recovered", "d"), ("slowest recovery s", ".1f")], rows)
    print(f"questions: {results['questions']}")
    print(f"lost: {results['lost'] or 'nothing'}")
    bench.finish(results, args.json)


if __name__ == "__main__":
    main()
