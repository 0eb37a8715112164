"""Pieces every actor shares: its background loop thread, the host its sockets bind, stage timings.

Each worker owns one thread that owns its ZeroMQ sockets (a socket is used by one thread only); Ray calls
on the actor only swap plain Python values under a lock, and the loop picks them up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from stream.curve import CurveKeys
from stream.transport import Socket

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
POLL_MS = 100  # how long a loop blocks on a socket before it looks at its stop flag again
EXIT_CODE_CRASH = 70  # exit status of an actor process whose loop crashed (Ray restarts it)


def bind_host(bind: str) -> str:
    """Address sockets bind to: loopback, or the node IP Ray reports (reachable from other nodes)."""
    if bind == "loopback":
        return LOOPBACK
    if bind == "node":
        import ray

        return ray.util.get_node_ip_address()
    raise ValueError(f"transport.bind: expected 'loopback' or 'node', got {bind!r}")


def bind_spec(pattern: str, host: str) -> str:
    """Socket address that binds `pattern` ("pull", "sub", ...) on an ephemeral tcp port of `host`."""
    return f"{pattern}+bind:tcp://{host}:*"


def open_sticky(pattern: str, host: str, port_file: Path, hwm: int, keys: CurveKeys | None = None) -> Socket:
    """Bind `pattern` on `host`, on the port recorded in `port_file` if it is still free, else on a new
    ephemeral port (recorded for next time). With `keys` it is a CURVE server of that deployment.

    A restarted actor thus usually comes back on the address its peers already connect to: ZeroMQ peers
    reconnect by themselves and the messages they queued meanwhile are delivered instead of lost.
    """
    if port_file.exists():
        try:
            return Socket.open(f"{pattern}+bind:tcp://{host}:{int(port_file.read_text())}", hwm=hwm, keys=keys)
        except (zmq.ZMQError, ValueError) as exc:
            log.info("%s: recorded port unusable (%s), binding a new one", port_file.name, exc)
    sock = Socket.open(bind_spec(pattern, host), hwm=hwm, keys=keys)
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(sock.endpoint.rsplit(":", 1)[1])
    return sock


class LoopThread:
    """Runs `body(stop_event)` in a daemon thread.

    An exception escaping `body` is a bug or a broken dependency, not a bad message (those are counted where
    they are read): with `exit_on_crash` the whole process exits so Ray restarts the actor from its
    checkpoint instead of leaving a live actor with a dead loop; without it (plain-class tests) the error is
    kept in `error`.
    """

    def __init__(self, name: str, body: Callable[[threading.Event], None], exit_on_crash: bool = False) -> None:
        self.name = name
        self.stop_event = threading.Event()
        self.error: str | None = None
        self._body = body
        self._exit_on_crash = exit_on_crash
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._body(self.stop_event)
        except Exception as exc:  # noqa: BLE001 - see the class docstring: die loudly, never limp on
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: loop crashed", self.name)
            if self._exit_on_crash:
                os._exit(EXIT_CODE_CRASH)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the loop to end and wait for it (bounded: loops poll the flag every POLL_MS)."""
        self.stop_event.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)


@dataclass
class StageTimes:
    """Running totals of seconds spent per pipeline stage, for telemetry and the benchmark."""

    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] = self.totals.get(stage, 0.0) + float(seconds)
        self.counts[stage] = self.counts.get(stage, 0) + 1

    def merge(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.add(stage, seconds)

    def means(self) -> dict[str, float]:
        """Mean seconds per chunk and stage."""
        return {s: self.totals[s] / self.counts[s] for s in self.totals if self.counts[s]}

