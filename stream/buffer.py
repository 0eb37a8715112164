"""Bounded hand-off between a reader thread and the consumer for the DROP_OLDEST policy."""

from __future__ import annotations

import collections
import threading
import time

from stream.frames import Frame


class FrameBuffer:
    """A bounded FIFO of frames: ``put`` never blocks (a full buffer drops its oldest frame), ``get`` skips
    frames that arrived more than ``max_staleness_s`` ago. Both kinds of drop are counted in ``dropped``.

    The producer ends the stream with ``finish(error)``; ``get`` then drains what is left and raises the
    error (if any) once the buffer is empty.
    """

    def __init__(self, capacity: int, max_staleness_s: float) -> None:
        self._frames: collections.deque[Frame] = collections.deque()
        self._capacity = capacity
        self._max_staleness_s = max_staleness_s
        self._cond = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames will come; ``error`` (if given) is raised by ``get`` after the last frame."""
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def get(self, timeout_s: float | None = None) -> Frame | None:
        """Next fresh frame; None at the end of the stream or after ``timeout_s`` without a frame.

        Raises the producer's error once every frame before it has been handed out.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                while self._frames:
                    frame = self._frames.popleft()
                    if time.time() - frame.arrival <= self._max_staleness_s:
                        return frame
                    self.dropped += 1
                if self._finished:
                    if self._error is not None:
                        raise self._error
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
