"""The stall watchdog (stream/stall.py) on a fake demuxer: fires once when a wait for a packet outlasts the
timeout, from its thread or on a late packet, and never counts time the caller spends with a packet."""

from __future__ import annotations

import threading
import time

import pytest

from stream.stall import Stalled, StallWatch
from tests.helpers import wait_for

TIMEOUT_S = 0.3


def demux(waits: list[float], release: threading.Event | None = None):
    """Packets 0, 1, ... each after its wait; a wait of None blocks until `release` is set."""
    for i, wait in enumerate(waits):
        if wait is None:
            release.wait(10)
        else:
            time.sleep(wait)
        yield i


def test_a_blocked_read_is_reported_within_the_timeout_and_the_next_packet_raises():
    stalls: list[tuple[float, float]] = []
    release = threading.Event()
    watch = StallWatch(TIMEOUT_S, lambda idle: stalls.append((time.monotonic(), idle)))
    packets = watch.packets(demux([0.0, None, 0.0], release))
    assert next(packets) == 0
    started = time.monotonic()
    reader = threading.Thread(target=lambda: pytest.raises(Stalled, next, packets), daemon=True)
    reader.start()
    wait_for(lambda: stalls, 10, "the watchdog (the read is still blocked: only its thread can see it)")
    assert reader.is_alive() and watch.fired
    assert TIMEOUT_S < stalls[0][0] - started < TIMEOUT_S + 1.0 and stalls[0][1] > TIMEOUT_S
    release.set()  # the blocked read returns a (stale) packet: the connection is dropped, not resumed
    reader.join(10)
    assert not reader.is_alive() and len(stalls) == 1


def test_a_late_packet_fires_even_before_the_watchdog_ticks():
    stalls = []
    watch = StallWatch(TIMEOUT_S, stalls.append)
    watch._tick_s = 60.0  # the thread would notice far too late: the reading side must
    packets = watch.packets(demux([0.0, TIMEOUT_S + 0.1]))
    assert next(packets) == 0
    with pytest.raises(Stalled, match="no data for 0.3 s"):
        next(packets)
    assert len(stalls) == 1 and stalls[0] > TIMEOUT_S


def test_time_with_the_packet_is_not_waiting():
    """A slow consumer (or pacing) between packets is no stall: only waits inside the demuxer count."""
    stalls = []
    watch = StallWatch(TIMEOUT_S, stalls.append)
    got = []
    for packet in watch.packets(demux([0.0] * 3)):
        got.append(packet)
        time.sleep(TIMEOUT_S * 2)
    assert got == [0, 1, 2] and not stalls and not watch.fired
