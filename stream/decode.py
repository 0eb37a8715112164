"""Decode only what the sampler keeps: FFmpeg's ``skip_frame`` chosen per packet, and hardware decoding.

A 30 fps camera sampled at 2 Hz keeps 2 frames of 30; an inter-frame codec still needs every frame that a
kept one refers to, but no frame refers to a non-reference frame, and nothing after a keyframe refers to what
came before it. ``SkipPlanner`` says, packet by packet, what the decoder may skip (``DecodeMode``):

- ``full``: every frame decoded (as before this module).
- ``nonref``: a packet whose frame the sampler will not keep is decoded with ``skip_frame = NONREF``: FFmpeg
  skips it if no other frame refers to it, and decodes it anyway if one does. Whether the sampler keeps a
  frame is known before decoding it: the sampler keeps the first frame at or after each grid point, i.e. a
  frame whose grid cell is later than its predecessor's in presentation time (``Sampler.would_keep``), and
  the demuxer gives every packet's timestamp before it is decoded. **The sampled frames and their timestamps
  are exactly those of full decoding**: a frame is skipped only when the sampler would drop it (unknown
  timestamps, a clock discontinuity or the frames before the sampler's first decode everything).
- ``nonkey``: keyframes only (``skip_frame = NONKEY``): the sampler keeps the first *keyframe* at or after
  each grid point, up to one keyframe interval late; grid points with no keyframe of their own are missed.
  Chosen explicitly, it trades exactness for cost.
- ``auto`` (the default): ``nonref``, and keyframes only while that gives the same frames: when the keyframe
  interval is regular (two intervals within half a camera frame), no longer than the sampling period, and the
  last ``AUTO_KEYS_KEPT`` frames the sampler kept were all keyframes (the grid falls on keyframes, e.g. a
  keyframe every 15 frames of 30 fps sampled at 2 Hz). A keyframe that breaks the rhythm by half a frame or
  more returns it to ``nonref`` from that keyframe on; the grid points before it were served by keyframes
  (so a camera that changes its keyframe interval may get one frame from the nearest keyframe instead).

A stream without B-frames has no non-reference frames (``nonref`` then decodes everything, as ``full``); a
stream of keyframes only loses nothing in any mode.

Hardware decoding (``hwaccel``): ``auto`` decodes on CUDA (NVDEC) where FFmpeg was built with it and the node
has an NVIDIA device, ``cuda`` insists (still falling back to software if the device cannot be opened),
``none`` never tries; each fallback to software is said once in the log.
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
import os
from typing import Any, Callable

log = logging.getLogger(__name__)

RECENT_PACKETS = 64  # demuxed timestamps kept to find a packet's predecessor in presentation time
AUTO_KEYS_KEPT = 2  # consecutive kept keyframes before auto decodes keyframes only
REORDER_SLACK_S = 1.0  # a packet this much before the newest one is a clock jump: decode fully for a while
UNSAFE_PACKETS = 32  # packets decoded fully after a clock jump or a timestamp offset change

WouldKeep = Callable[[float | None, float], bool]  # (predecessor's media time or None, media time) -> kept


class DecodeMode(str, enum.Enum):
    """What the decoder may skip; see the module docstring."""

    AUTO = "auto"
    FULL = "full"
    NONREF = "nonref"
    NONKEY = "nonkey"


class HwAccel(str, enum.Enum):
    """Hardware decoding: ``auto`` (CUDA where present), ``cuda`` (try it), ``none`` (software only)."""

    AUTO = "auto"
    CUDA = "cuda"
    NONE = "none"


_hw_fallback_said: set[str] = set()


def hwaccel_for(choice: HwAccel | str) -> Any | None:
    """A PyAV ``HWAccel`` for CUDA decoding, or None for software; says once per reason why not."""
    choice = HwAccel(choice)
    if choice is HwAccel.NONE:
        return None
    from av.codec.hwaccel import HWAccel, hwdevices_available

    reason = None
    if "cuda" not in hwdevices_available():
        reason = "FFmpeg has no CUDA support"
    elif choice is HwAccel.AUTO and not os.path.exists("/dev/nvidia0"):
        reason = "no NVIDIA device on this node"
    if reason is not None:
        if reason not in _hw_fallback_said:
            _hw_fallback_said.add(reason)
            log.info("hardware decoding unavailable (%s): decoding in software", reason)
        return None
    return HWAccel("cuda", allow_software_fallback=True)


def note_hw_failure(exc: BaseException) -> None:
    """Log (once) that opening the hardware decoder failed and software decoding is used instead."""
    reason = f"opening the CUDA decoder failed ({type(exc).__name__})"
    if reason not in _hw_fallback_said:
        _hw_fallback_said.add(reason)
        log.warning("%s: %s; decoding in software", reason, exc)


class SkipPlanner:
    """Per packet, the ``skip_frame`` setting that keeps every frame the sampler will keep.

    mode: the configured ``DecodeMode``.
    would_keep: the sampler's prediction (``Sampler.would_keep``); None (no sampler) decodes everything.
    fps: the camera's nominal frame rate (half a frame is the tolerance of keyframe rhythm checks).
    period_s: the sampling period (keyframes only is considered when the keyframe interval is not longer).
    """

    def __init__(self, mode: DecodeMode | str, would_keep: WouldKeep | None, fps: float | None,
                 period_s: float | None) -> None:
        self.mode = DecodeMode(mode)
        self._would_keep = would_keep
        self._half_frame = 0.5 / fps if fps and fps > 0 else 1 / 60
        self._period = period_s
        self._recent: list[float] = []  # sorted media times of recently demuxed packets
        self._unsafe = 0  # packets still to decode fully
        self._offset: float | None = None
        self._keys: list[float] = []  # media times of the latest keyframe packets
        self._kept_keys = 0  # consecutive kept frames that were keyframes
        self.keyframes_only = self.mode is DecodeMode.NONKEY
        self.counts = {"full": 0, "nonref": 0, "nonkey": 0}  # packets sent with each setting

    def setting(self, raw_s: float | None, is_keyframe: bool, offset: float) -> str:
        """The ``skip_frame`` value for the next packet: ``DEFAULT``, ``NONREF`` or ``NONKEY``.

        raw_s: its raw presentation time (s; None if it has none); offset: the clock's current correction
        (corrected = raw + offset while no discontinuity intervenes)."""
        out = self._decide(raw_s, is_keyframe, offset)
        self.counts["full" if out == "DEFAULT" else out.lower()] += 1
        return out

    def _decide(self, raw_s: float | None, is_keyframe: bool, offset: float) -> str:
        if self.mode is DecodeMode.FULL or self._would_keep is None:
            return "DEFAULT"
        if raw_s is None:
            self._unsafe = UNSAFE_PACKETS
            return "NONKEY" if self.keyframes_only and not is_keyframe else "DEFAULT"
        t = raw_s + offset
        if self._offset is not None and offset != self._offset:
            self._unsafe, self._recent = UNSAFE_PACKETS, []  # the clock was corrected: old times are stale
        self._offset = offset
        if self._recent and t < self._recent[-1] - REORDER_SLACK_S:
            self._unsafe, self._recent = UNSAFE_PACKETS, []  # time went back: a jump the clock will correct
        i = bisect.bisect_left(self._recent, t)
        prev = self._recent[i - 1] if i else None
        self._recent.insert(i, t)
        if len(self._recent) > RECENT_PACKETS:
            del self._recent[0]
        if is_keyframe and self.mode is DecodeMode.AUTO:
            self._on_keyframe(t)
        if self.keyframes_only:
            return "DEFAULT" if is_keyframe else "NONKEY"
        if self._unsafe:
            self._unsafe -= 1
            return "DEFAULT"
        return "DEFAULT" if self._would_keep(prev, t) else "NONREF"

    def _on_keyframe(self, t: float) -> None:
        """Auto: switch to keyframes only, or back, at a keyframe (see the module docstring)."""
        self._keys = (self._keys + [t])[-3:]
        regular = len(self._keys) == 3 and abs((self._keys[2] - self._keys[1]) - (self._keys[1] - self._keys[0])) \
            < self._half_frame
        if self.keyframes_only and not regular:
            self.keyframes_only, self._kept_keys = False, 0
            log.info("decode: keyframe rhythm changed at %.3f s: back to skipping non-reference frames only", t)
        elif (not self.keyframes_only and regular and self._unsafe == 0 and self._period is not None
              and self._keys[2] - self._keys[1] <= self._period + self._half_frame
              and self._kept_keys >= AUTO_KEYS_KEPT):
            self.keyframes_only = True
            log.info("decode: the sampled frames are keyframes (every %.3f s): decoding keyframes only",
                     self._keys[2] - self._keys[1])

    def kept(self, key_frame: bool) -> None:
        """The sampler kept a frame (a keyframe or not): auto's evidence that the grid falls on keyframes."""
        self._kept_keys = self._kept_keys + 1 if key_frame else 0


def grid_index(t: float, t0: float, period: float, eps_s: float) -> int:
    """The sampling grid cell of media time ``t`` (grid points ``t0 + k * period``, ``eps_s`` tolerance)."""
    return math.floor((t - t0) / period + eps_s / period)
