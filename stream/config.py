"""Source settings (one frozen dataclass, checked on construction) and URL redaction."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from configs.schema import check


class BufferPolicy(str, enum.Enum):
    """What happens when the consumer is slower than the source.

    WAIT: the source waits for the consumer (files: nothing is lost).
    DROP_OLDEST: a reader thread keeps decoding into a bounded buffer; when it is full the oldest frame is
    dropped, and frames older than ``max_staleness_s`` are dropped on the way out (live: freshest wins).
    Every drop is counted in ``SourceStatus.dropped``.
    """

    WAIT = "wait"
    DROP_OLDEST = "drop_oldest"


MAX_DECODER_THREADS = 64  # FFmpeg caps frame threads lower; more is a typo


@dataclass(frozen=True)
class SourceConfig:
    """How to open and read a source. Times in seconds.

    realtime: pace a file / synthetic source at its frame rate, as if it were live (a network camera is
        paced by its own clock: no extra pacing, but it still counts as live for the default policy).
    policy: buffer policy; None picks DROP_OLDEST for live sources (network, realtime) and WAIT otherwise.
    buffer_frames: capacity of the DROP_OLDEST buffer (decoded frames).
    max_staleness_s: DROP_OLDEST hands out no frame that arrived longer ago than this.
    open_timeout_s / read_timeout_s: network open and per-read timeouts (a frozen camera raises instead of
        hanging; a watchdog reports a stall at the read timeout, stream/stall.py).
    transport: RTSP lower transport, "tcp" (default, survives packet loss) or "udp".
    reconnect_initial_s / reconnect_max_s / reconnect_jitter: capped exponential backoff between reconnect
        attempts: delay = min(max, initial * 2**attempt), scaled by a random factor in [1 - jitter, 1].
    retry_first_open: keep retrying when the very first open fails; False (default) raises at once so a
        wrong URL or closed port is a clear, fast error. After one successful open a live source
        reconnects forever.
    loop: replay a file forever (for demos); timestamps keep increasing across loops.
    decode: what the decoder may skip of what the sampler drops (stream/decode.py): "auto" (default: skip
        non-reference frames the sampler drops, keyframes only while the sampled frames are keyframes; the
        sampled frames stay exactly those of full decoding), "full", "nonref" (exact too) or "nonkey"
        (keyframes only: the first keyframe at or after each grid point, up to a keyframe interval late).
    hwaccel: hardware decoding: "auto" (CUDA/NVDEC where FFmpeg and the node have it), "cuda", "none";
        software is the fallback, said once in the log.
    decoder_threads: FFmpeg decoding threads; 0 = auto: 1 for a live source (a camera or a paced file needs a
        small share of one core, and every frame thread holds frame buffers of its own: 7 MB more per 720p
        stream with 2 threads, bench/host_memory.py), FFmpeg's own choice (one per core) for a file read as
        fast as it decodes.
    """

    realtime: bool = False
    policy: BufferPolicy | None = None
    buffer_frames: int = 16
    max_staleness_s: float = 2.0
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    transport: str = "tcp"
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 10.0
    reconnect_jitter: float = 0.5
    retry_first_open: bool = False
    loop: bool = False
    decode: str = "auto"
    hwaccel: str = "auto"
    decoder_threads: int = 0

    def __post_init__(self) -> None:
        from stream.decode import DecodeMode, HwAccel

        for name, kind in (("decode", DecodeMode), ("hwaccel", HwAccel)):
            values = [m.value for m in kind]
            check(getattr(self, name) in values, name, f"one of {values}", getattr(self, name))
        if self.policy is not None:
            policies = [p.value for p in BufferPolicy]
            check(self.policy in policies, "policy", f"one of {policies} or None", self.policy)
            object.__setattr__(self, "policy", BufferPolicy(self.policy))
        check(self.transport in ("tcp", "udp"), "transport", "'tcp' or 'udp'", self.transport)
        check(self.buffer_frames >= 1, "buffer_frames", ">= 1", self.buffer_frames)
        check(0 <= self.decoder_threads <= MAX_DECODER_THREADS, "decoder_threads",
              f"0 (auto) .. {MAX_DECODER_THREADS}", self.decoder_threads)
        for name in ("max_staleness_s", "open_timeout_s", "read_timeout_s", "reconnect_initial_s",
                     "reconnect_max_s"):
            check(getattr(self, name) > 0, name, "> 0", getattr(self, name))
        check(self.reconnect_max_s >= self.reconnect_initial_s, "reconnect_max_s",
              f">= reconnect_initial_s ({self.reconnect_initial_s})", self.reconnect_max_s)
        check(0 <= self.reconnect_jitter < 1, "reconnect_jitter", "in [0, 1)", self.reconnect_jitter)


_SECRET_KEYS = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred", re.IGNORECASE)
REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with the password (and secret-looking query values) replaced by ``***``.

    ``rtsp://admin:hunter2@cam/stream?token=abc`` -> ``rtsp://admin:***@cam/stream?token=***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparseable: show nothing rather than risk a secret
    netloc = parts.netloc
    secret_query = any(_SECRET_KEYS.search(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    if "@" not in netloc and not secret_query:
        return url  # nothing to hide: keep the URL exactly as given
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with every secret of ``url`` replaced by ``***``."""
    text = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
        secrets += [v for k, v in parse_qsl(parts.query) if _SECRET_KEYS.search(k)]
    except ValueError:
        secrets = []
    for secret in secrets:
        if len(secret) >= 3:  # never blank out one-letter substrings all over a message
            text = text.replace(secret, REDACTED)
    return text
