"""ZeroMQ helpers: one address string per socket, codec messages in and out, sequence-gap tracking.

An address is ``<pattern>+<bind|connect>:<endpoint>``, e.g. ``push+bind:tcp://127.0.0.1:*`` (ephemeral
port, read the real one from ``Socket.endpoint``), ``pull+connect:tcp://10.0.0.5:5555``,
``sub+connect:ipc:///tmp/tokdyn.sock``. PUSH/PULL carries chunks and tokens (a full PUSH blocks: nothing
lost); PUB/SUB carries snapshots (a slow SUB loses messages: ``recv_newest`` keeps the newest per stream).

A ``Socket`` is not thread-safe (ZeroMQ rule): use it from one thread.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from dataclasses import dataclass, field

import zmq

from stream.codec import MAX_MESSAGE_BYTES, Kind, Message, ProtocolError, decode, encode
from stream.curve import CurveKeys, secure

log = logging.getLogger(__name__)

DEFAULT_HWM = 16  # messages queued per peer before PUSH blocks / PUB drops (a chunk is megabytes)
RECV_TIMEOUT_MS = 1000
LOG_BAD_FIRST = 5  # log the first few bad messages, then every LOG_BAD_EVERY-th: a flood must not flood logs
LOG_BAD_EVERY = 1000
MAX_GAPS = 100  # recent gaps a SequenceTracker keeps for inspection (totals are kept apart)

_PATTERNS = {"push": zmq.PUSH, "pull": zmq.PULL, "pub": zmq.PUB, "sub": zmq.SUB}
_PEER = {"push": "pull", "pull": "push", "pub": "sub", "sub": "pub"}
_REFUSED_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                   | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_SPEC = re.compile(r"^(push|pull|pub|sub)\+(bind|connect):((tcp)://(\[[^\]]+\]|[^:/\[\]]+):(\*|\d{1,5})"
                   r"|(ipc)://.+|(inproc)://.+)$")


class AddressError(ValueError):
    """An address string that does not follow ``<pattern>+<bind|connect>:<endpoint>``."""


@dataclass(frozen=True)
class Address:
    """A parsed socket address: pattern (push/pull/pub/sub), action (bind/connect), endpoint."""

    pattern: str
    action: str
    endpoint: str

    def __str__(self) -> str:
        return f"{self.pattern}+{self.action}:{self.endpoint}"


def parse_address(spec: str) -> Address:
    """Parse ``"push+bind:tcp://127.0.0.1:*"`` and friends (the only place addresses are parsed).

    Raises:
        AddressError: malformed spec, unknown pattern, a wildcard port with connect, or a port > 65535.
    """
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise AddressError(f"address {spec!r}: expected '<push|pull|pub|sub>+<bind|connect>:<endpoint>' "
                           "with endpoint tcp://host:port (port or * to bind), ipc://path or inproc://name")
    pattern, action, endpoint = match.group(1), match.group(2), match.group(3)
    port = match.group(6)
    if port == "*" and action == "connect":
        raise AddressError(f"address {spec!r}: connect needs a real port, not '*'")
    if port not in (None, "*") and not 0 < int(port) <= 65535:
        raise AddressError(f"address {spec!r}: port must be 1..65535, got {port}")
    return Address(pattern, action, endpoint)


@dataclass
class SocketStats:
    """Counters of one socket; ``bad`` messages were counted and skipped, never delivered."""

    sent: int = 0
    send_timeouts: int = 0
    received: int = 0
    bad: int = 0
    refused: int = 0  # peers whose handshake failed (no or wrong CURVE keys): nothing of theirs was read
    last_error: str | None = None


class Socket:
    """A ZeroMQ socket that sends and receives codec ``Message`` objects.

    Use ``Socket.open(spec)``; ``endpoint`` is the real address (ephemeral port resolved) after bind.
    """

    def __init__(self, address: Address, sock: zmq.Socket, max_bytes: int, secured: bool = False) -> None:
        self.address = address
        self._sock = sock
        self._max_bytes = max_bytes
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        # A secured bound socket watches its handshakes, to count the peers it refused (read in recv).
        self._monitor = sock.get_monitor_socket(_REFUSED_EVENTS) if secured and address.action == "bind" else None
        if self._monitor is not None:
            self._poller.register(self._monitor, zmq.POLLIN)
        self.stats = SocketStats()
        self.endpoint = (sock.getsockopt_string(zmq.LAST_ENDPOINT) if address.action == "bind"
                         else address.endpoint)

    @classmethod
    def open(cls, spec: str | Address, hwm: int = DEFAULT_HWM, ctx: zmq.Context | None = None,
             max_bytes: int = MAX_MESSAGE_BYTES, keys: CurveKeys | None = None) -> "Socket":
        """Create, configure (HWM both ways, linger 0, SUB subscribes to all) and bind/connect a socket.

        ``ctx`` defaults to the process-wide ``zmq.Context.instance()`` (never terminated here). With ``keys``
        the socket speaks CURVE (``stream.curve``): a bound one is the server and admits only peers holding
        the deployment's client key (refused handshakes are counted in ``stats.refused``).
        Raises AddressError for bad specs and zmq.ZMQError when the bind fails (e.g. port in use).
        """
        address = spec if isinstance(spec, Address) else parse_address(spec)
        if hwm < 1:
            raise ValueError(f"hwm: expected >= 1, got {hwm}")
        sock = (ctx or zmq.Context.instance()).socket(_PATTERNS[address.pattern])
        try:
            sock.setsockopt(zmq.LINGER, 0)  # close() must never wait for unsent messages
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
            if address.pattern == "sub":
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            if keys is not None:
                secure(sock, keys, server=address.action == "bind")
            if address.action == "bind":
                sock.bind(address.endpoint)
            else:
                sock.connect(address.endpoint)
        except Exception:
            sock.close(linger=0)
            raise
        return cls(address, sock, max_bytes, secured=keys is not None)

    @property
    def raw(self) -> zmq.Socket:
        """The underlying ZeroMQ socket (benchmarks and low-level tests send raw frames through it)."""
        return self._sock

    def peer_spec(self, host: str | None = None) -> str:
        """Address string a peer uses to reach this socket (bound sockets only), e.g. for a PUSH
        bound at ``tcp://0.0.0.0:5000`` and host "10.0.0.5": ``pull+connect:tcp://10.0.0.5:5000``."""
        if self.address.action != "bind":
            raise ValueError(f"peer_spec: socket {self.address} is not bound")
        endpoint = self.endpoint
        if host is not None and endpoint.startswith("tcp://"):
            endpoint = f"tcp://{host}:{endpoint.rsplit(':', 1)[1]}"
        elif endpoint.startswith("tcp://0.0.0.0:"):
            endpoint = endpoint.replace("0.0.0.0", "127.0.0.1", 1)
        return f"{_PEER[self.address.pattern]}+connect:{endpoint}"

    def send(self, msg: Message, timeout_ms: int | None = None) -> bool:
        """Send ``msg`` zero-copy (don't mutate its arrays afterwards). ``timeout_ms`` None blocks until
        queued, 0 never blocks. Returns False (and counts it) if the queue stayed full."""
        frames = encode(msg)
        self._sock.setsockopt(zmq.SNDTIMEO, -1 if timeout_ms is None else int(timeout_ms))
        try:
            self._sock.send_multipart(frames, copy=False)
        except zmq.Again:
            self.stats.send_timeouts += 1
            return False
        self.stats.sent += 1
        return True

    def recv(self, timeout_ms: int | None = RECV_TIMEOUT_MS) -> Message | None:
        """Next valid message, or None after ``timeout_ms`` (None waits forever; 0 polls). Bad messages
        are counted in ``stats.bad``, logged (rate-limited) and skipped without ending the wait."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(self._poller.poll(wait))
            if not ready:
                return None
            if self._monitor is not None and self._monitor in ready:
                self._count_refused()
            if self._sock in ready:
                msg = self._recv_now()
                if msg is not None:
                    return msg
            # A bad message was skipped or a refused peer counted: keep going (past the deadline only while
            # more is queued).

    def _count_refused(self) -> None:
        """Drain the handshake monitor: each event is one peer refused before any of its messages was read."""
        while self._monitor.poll(0):
            self._monitor.recv_multipart()
            self.stats.refused += 1

    def _recv_now(self) -> Message | None:
        """One message that is ready now: decoded, or None if it was bad (counted)."""
        frames = self._sock.recv_multipart(copy=False)
        try:
            msg = decode(frames, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            self.stats.bad += 1
            self.stats.last_error = str(exc)
            if self.stats.bad <= LOG_BAD_FIRST or self.stats.bad % LOG_BAD_EVERY == 0:
                log.warning("%s: skipped bad message #%d: %s", self.address, self.stats.bad, exc)
            return None
        self.stats.received += 1
        return msg

    def recv_newest(self, timeout_ms: int | None = RECV_TIMEOUT_MS) -> dict[str, Message]:
        """Wait up to ``timeout_ms`` for a message, then drain what is queued; return the newest (highest
        seq) message per stream id. For snapshot SUB sockets: the newest wins."""
        newest: dict[str, Message] = {}
        msg = self.recv(timeout_ms)
        while msg is not None:
            held = newest.get(msg.stream_id)
            if held is None or msg.seq >= held.seq:
                newest[msg.stream_id] = msg
            msg = self.recv(0)
        return newest

    def close(self, linger_ms: int = 0) -> None:
        """Close, waiting at most ``linger_ms`` to deliver queued messages (0: discard them at once; a
        sender that must deliver its last messages, such as an EOS before exiting, passes a bound).
        Never waits longer than that. Idempotent."""
        if not self._sock.closed:
            if self._monitor is not None:
                self._sock.disable_monitor()
                self._monitor.close(linger=0)
            self._sock.close(linger=linger_ms)

    def __enter__(self) -> "Socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Gap:
    """Messages ``expected``..``received - 1`` of ``stream_id`` never arrived (or seq went backwards,
    ``received < expected``: the sender restarted)."""

    stream_id: str
    expected: int
    received: int

    @property
    def missing(self) -> int:
        return max(0, self.received - self.expected)


@dataclass
class SequenceTracker:
    """Follows sequence numbers per stream: reports gaps, restarts and end-of-stream.

    ``observe`` returns the Gap (if any) so the caller can log it; ``gaps`` keeps the last MAX_GAPS of them
    and ``lost`` the running total of missing messages per stream (bounded memory in a long-lived actor).
    """

    next_seq: dict[str, int] = field(default_factory=dict)
    gaps: collections.deque[Gap] = field(default_factory=lambda: collections.deque(maxlen=MAX_GAPS))
    lost: dict[str, int] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    def observe(self, msg: Message) -> Gap | None:
        """Record ``msg``; an EOS message closes its stream (a later message reopens it as new)."""
        expected = self.next_seq.get(msg.stream_id)
        gap = None
        if msg.stream_id in self.ended:
            self.ended.discard(msg.stream_id)  # a stream id reused after EOS starts over
        elif expected is not None and msg.seq != expected:
            gap = Gap(msg.stream_id, expected, msg.seq)
            self.gaps.append(gap)
            self.lost[msg.stream_id] = self.lost.get(msg.stream_id, 0) + gap.missing
            log.warning("stream %s: expected seq %d, got %d", msg.stream_id, expected, msg.seq)
        self.next_seq[msg.stream_id] = msg.seq + 1
        if msg.kind is Kind.EOS:
            self.ended.add(msg.stream_id)
        return gap

    def missing(self, stream_id: str) -> int:
        """Total messages lost on ``stream_id`` so far."""
        return self.lost.get(stream_id, 0)
