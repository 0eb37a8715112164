"""A network source's stall watchdog: no packet for ``read_timeout_s`` means the connection is dead.

Why not FFmpeg's own timeouts alone: PyAV's read timeout restarts with every ``av_read_frame`` call, and a
frozen RTSP camera (SIGSTOP) still yields a packet from FFmpeg's reorder queue when a read is interrupted,
so the timeout fired only after two or more read timeouts (measured: 4-7 s for a 2 s timeout), or never for
a 6 s freeze with a 5 s timeout, while the source kept saying ``streaming``.

``StallWatch.packets`` wraps a demuxer: while the caller waits for a packet, a daemon thread watches the
clock, and when no packet came for ``timeout_s`` it calls ``on_stall(idle_s)`` once (the source reports
itself reconnecting at once). The wait then ends, the next packet or PyAV's own read timeout (which fires
at most ``timeout_s`` after the read began), with ``Stalled``: the source drops that connection and opens a
fresh one. Time the caller spends with a packet (decoding, handing frames out, pacing) is not waiting and
never counts. A thread cannot safely close a container another thread is reading (FFmpeg frees what the
read still uses), so the watchdog never touches the container itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

MAX_TICK_S = 0.1  # how late after the timeout the watchdog may notice (less for short timeouts)

T = TypeVar("T")


class Stalled(TimeoutError):
    """No packet for the read timeout: the connection is to be dropped."""


class StallWatch:
    """``packets(demux)`` yields the demuxer's packets, calling ``on_stall(idle_s)`` (once, from the watchdog
    thread or the reading one, whichever sees it first) when a wait for one lasted over ``timeout_s``."""

    def __init__(self, timeout_s: float, on_stall: Callable[[float], None], name: str = "stall-watch") -> None:
        self.timeout_s = timeout_s
        self._on_stall = on_stall
        self._name = name
        self._tick_s = min(MAX_TICK_S, timeout_s / 10)
        self._waiting_since: float | None = None  # monotonic start of the current wait for a packet
        self._lock = threading.Lock()
        self._fired = False
        self._done = threading.Event()

    @property
    def fired(self) -> bool:
        return self._fired

    def _fire(self, idle_s: float) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
        self._on_stall(idle_s)

    def _watch(self) -> None:
        while not self._done.wait(self._tick_s):
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self.timeout_s:
                self._fire(time.monotonic() - since)
                return

    def packets(self, demux: Iterable[T]) -> Iterator[T]:
        """The packets of `demux`; raises Stalled after the watchdog fired (the connection is dead)."""
        thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
        thread.start()
        source = iter(demux)
        try:
            while True:
                self._waiting_since = started = time.monotonic()
                try:
                    packet = next(source)
                except StopIteration:
                    return
                finally:
                    self._waiting_since = None
                idle_s = time.monotonic() - started
                if idle_s > self.timeout_s:  # a late packet (one FFmpeg flushed when its read was interrupted)
                    self._fire(idle_s)
                if self._fired:
                    raise Stalled(f"no data for {self.timeout_s:g} s (stall watchdog)")
                yield packet
        finally:
            self._done.set()
            if thread is not threading.current_thread():
                thread.join()
