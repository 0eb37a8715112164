"""Wire codec: one message = a msgpack header + one raw buffer per array (no pickle, zero-copy).

Layout of a message as ZeroMQ multipart frames::

    frame 0      msgpack map {"v": SCHEMA_VERSION, "k": kind, "s": stream_id, "q": seq, "m": meta,
                              "a": [[name, dtype, shape, part], ...]}
    frame 1..n   raw little-endian array buffers, in the order their "part" index names them

An array of at most ``INLINE_MAX_BYTES`` travels inside the header (``part`` is then the bytes themselves),
which saves a frame for timestamps and other small vectors; larger arrays are sent and received without
copying (received arrays are read-only views of the ZeroMQ frame memory: copy before mutating).

numpy has no bfloat16, so bfloat16 travels as raw bits in the structured dtype ``BFLOAT16`` (one uint16
field); ``stream.tensors`` converts torch tensors to and from it. Decoding validates everything and raises
only ``ProtocolError``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

from stream.frames import Chunk

SCHEMA_VERSION = 1
INLINE_MAX_BYTES = 1024
MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024 * 1024  # total array bytes per message
MAX_ARRAYS = 64
MAX_NDIM = 8
MAX_STREAM_ID_CHARS = 256
MAX_META_DEPTH = 8

#: bfloat16 as raw bits: a structured dtype so it can never be mistaken for uint16 data.
BFLOAT16 = np.dtype([("bfloat16", "<u2")])

# The dtype whitelist: wire name -> numpy dtype (all little-endian).
_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32",
                 "float64")
}
_DTYPES["bfloat16"] = BFLOAT16
_WIRE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class ProtocolError(ValueError):
    """A message that does not follow the wire protocol (the only error ``decode`` raises)."""


class Kind(str, enum.Enum):
    """What a message carries."""

    FRAMES = "frames"  # source -> encoder: uint8 frames [T, H, W, 3] + timestamps
    TOKENS = "tokens"  # encoder -> compressor: visual tokens [T, gh, gw, D] (float16 / bfloat16)
    SNAPSHOT = "snapshot"  # compressor -> LLM: compact memory (newest wins)
    EOS = "eos"  # end of stream: no message with this stream id follows
    STATUS = "status"  # telemetry / state changes (meta only)


@dataclass(frozen=True)
class Message:
    """One wire message. ``meta`` holds msgpack-able values only; ``arrays`` holds numpy arrays."""

    kind: Kind
    stream_id: str
    seq: int
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def eos(stream_id: str, seq: int, reason: str = "") -> Message:
    """An end-of-stream message (``seq`` continues the stream's numbering so a gap before it shows)."""
    return Message(Kind.EOS, stream_id, seq, {"reason": reason})


def chunk_to_message(chunk: Chunk, meta: dict[str, Any] | None = None) -> Message:
    """Wrap a ``Chunk`` as a FRAMES message (frames [T, H, W, 3] uint8, timestamps/arrivals [T] float64),
    with ``meta`` (msgpack-able values: send time, stage timings) in its header."""
    return Message(Kind.FRAMES, chunk.stream_id, chunk.seq, dict(meta or {}),
                   {"frames": chunk.frames, "timestamps": chunk.timestamps, "arrivals": chunk.arrivals})


def message_to_chunk(msg: Message) -> Chunk:
    """Inverse of ``chunk_to_message``; raises ProtocolError when the message is not a well-formed chunk."""
    if msg.kind is not Kind.FRAMES:
        raise ProtocolError(f"expected a {Kind.FRAMES.value} message, got {msg.kind.value}")
    try:
        frames, stamps, arrivals = (msg.arrays[k] for k in ("frames", "timestamps", "arrivals"))
    except KeyError as exc:
        raise ProtocolError(f"frames message lacks array {exc}") from None
    for name, arr in (("timestamps", stamps), ("arrivals", arrivals)):
        if arr.dtype != np.float64:
            raise ProtocolError(f"{name}: expected float64, got {arr.dtype}")
    try:
        return Chunk(msg.stream_id, msg.seq, frames, stamps, arrivals)  # checks frames and the [T] shapes
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None


def _wire_array(name: str, arr: np.ndarray) -> tuple[str, np.ndarray]:
    if not isinstance(name, str):
        raise TypeError(f"array names must be str, got {name!r:.40}")
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"array {name!r}: expected numpy.ndarray, got {type(arr).__name__} "
                        "(convert torch tensors with stream.tensors.to_wire_array)")
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    wire = _WIRE_NAMES.get(dtype)
    if wire is None:
        raise TypeError(f"array {name!r}: dtype {arr.dtype} is not on the wire whitelist {sorted(_DTYPES)}")
    # Only non-contiguous or big-endian arrays are copied; everything else is sent from its own memory.
    if arr.flags.c_contiguous and arr.dtype == dtype:
        return wire, arr
    return wire, np.array(arr, dtype=dtype, order="C")  # (ascontiguousarray would turn 0-d into 1-d)


def encode(msg: Message) -> list[bytes | memoryview]:
    """Encode ``msg`` as multipart frames: header first, then the raw buffers (zero-copy views).

    Raises TypeError/ValueError for messages the decoder would reject (wrong types, limits).
    The caller must not mutate the arrays until the frames have been sent.
    """
    kind = Kind(msg.kind)
    _check_ids(msg.stream_id, msg.seq, ValueError)
    if len(msg.arrays) > MAX_ARRAYS:
        raise ValueError(f"at most {MAX_ARRAYS} arrays per message, got {len(msg.arrays)}")
    specs: list[list[Any]] = []
    buffers: list[bytes | memoryview] = []
    total = 0
    for name, arr in msg.arrays.items():
        wire, arr = _wire_array(name, arr)
        total += arr.nbytes
        flat = arr.reshape(-1).view(np.uint8)  # a view: arr is contiguous
        if arr.nbytes <= INLINE_MAX_BYTES:
            part: int | bytes = flat.tobytes()
        else:
            buffers.append(memoryview(flat))
            part = len(buffers)
        specs.append([name, wire, list(arr.shape), part])
    if total > MAX_MESSAGE_BYTES:
        raise ValueError(f"message arrays total {total} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        header = msgpack.packb({"v": SCHEMA_VERSION, "k": kind.value, "s": msg.stream_id, "q": msg.seq,
                                "m": msg.meta, "a": specs}, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"meta: {exc} (meta takes plain Python values; send numpy data as arrays)") from None
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(f"header is {len(header)} bytes, limit {MAX_HEADER_BYTES}")
    return [header, *buffers]


def _check_ids(stream_id: Any, seq: Any, error: type[Exception]) -> None:
    if not isinstance(stream_id, str) or not 0 < len(stream_id) <= MAX_STREAM_ID_CHARS:
        raise error(f"stream_id: expected a str of 1..{MAX_STREAM_ID_CHARS} chars, got {stream_id!r:.80}")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise error(f"seq: expected an int in [0, 2**63), got {seq!r:.80}")


def _buffer(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", frame)  # zmq.Frame exposes its memory as .buffer
    try:
        return memoryview(buf).cast("B")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"frame is not a byte buffer: {type(frame).__name__}") from exc


def _check_meta(value: Any, depth: int = 0) -> None:
    if depth > MAX_META_DEPTH:
        raise ProtocolError(f"meta nested deeper than {MAX_META_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"meta keys must be str, got {type(key).__name__}")
            _check_meta(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_meta(item, depth + 1)
    elif not isinstance(value, (str, bytes, int, float, bool, type(None))):
        raise ProtocolError(f"meta value of type {type(value).__name__} is not allowed")


def _unpack_header(raw: memoryview) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(raw)} bytes, limit {MAX_HEADER_BYTES}")

    def no_ext(code: int, data: bytes) -> Any:
        raise ProtocolError(f"msgpack extension type {code} is not allowed")

    try:
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, ext_hook=no_ext, timestamp=0)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for garbage; all mean the same thing here
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header: expected a map, got {type(header).__name__}")
    if header.get("v") != SCHEMA_VERSION:
        raise ProtocolError(f"schema version: expected {SCHEMA_VERSION}, got {header.get('v')!r:.40}")
    missing = {"k", "s", "q", "m", "a"} - header.keys()
    if missing:
        raise ProtocolError(f"header lacks keys {sorted(missing)}")
    return header


def _decode_array(spec: Any, buffers: list[memoryview], used: set[int]) -> tuple[str, np.ndarray]:
    if not isinstance(spec, list) or len(spec) != 4:
        raise ProtocolError(f"array spec: expected [name, dtype, shape, part], got {spec!r:.80}")
    name, wire, shape, part = spec
    if not isinstance(name, str) or not isinstance(wire, str):
        raise ProtocolError(f"array spec: name and dtype must be str, got {name!r:.40}, {wire!r:.40}")
    dtype = _DTYPES.get(wire)
    if dtype is None:
        raise ProtocolError(f"array {name!r}: dtype {wire!r:.40} not in whitelist {sorted(_DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)):
        raise ProtocolError(f"array {name!r}: bad shape {shape!r:.80} (at most {MAX_NDIM} dims >= 0)")
    expected = math.prod(shape) * dtype.itemsize
    if isinstance(part, bytes):
        data: bytes | memoryview = part
    elif isinstance(part, int) and not isinstance(part, bool) and 1 <= part <= len(buffers):
        if part in used:
            raise ProtocolError(f"array {name!r}: frame {part} referenced twice")
        used.add(part)
        data = buffers[part - 1]
    else:
        raise ProtocolError(f"array {name!r}: part must be bytes or a frame index in 1..{len(buffers)}")
    if len(data) != expected:
        raise ProtocolError(f"array {name!r}: shape {shape} x {dtype.itemsize} bytes = {expected}, "
                            f"buffer has {len(data)}")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    arr.flags.writeable = False  # a view of the network buffer: same contract for every received array
    return name, arr


def decode(frames: Sequence[Any], max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode multipart frames (bytes, memoryview or zmq.Frame) into a ``Message``, zero-copy.

    Raises:
        ProtocolError: anything malformed (and nothing else).
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError("expected a non-empty list of frames")
    if len(frames) > MAX_ARRAYS + 1:
        raise ProtocolError(f"at most {MAX_ARRAYS + 1} frames, got {len(frames)}")
    buffers = [_buffer(f) for f in frames]
    total = sum(len(b) for b in buffers[1:])
    if total > max_bytes:
        raise ProtocolError(f"message payload is {total} bytes, limit {max_bytes}")
    header = _unpack_header(buffers[0])
    try:
        kind = Kind(header["k"])
    except (ValueError, TypeError):
        raise ProtocolError(f"kind: expected one of {[k.value for k in Kind]}, got {header['k']!r:.40}") from None
    _check_ids(header["s"], header["q"], ProtocolError)
    meta, specs = header["m"], header["a"]
    if not isinstance(meta, dict):
        raise ProtocolError(f"meta: expected a map, got {type(meta).__name__}")
    _check_meta(meta)
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ProtocolError(f"arrays: expected a list of at most {MAX_ARRAYS} specs")
    used: set[int] = set()
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name, arr = _decode_array(spec, buffers[1:], used)
        if name in arrays:
            raise ProtocolError(f"array {name!r} appears twice")
        arrays[name] = arr
    if len(used) != len(buffers) - 1:
        raise ProtocolError(f"{len(buffers) - 1} data frames but {len(used)} referenced by the header")
    return Message(kind, header["s"], header["q"], meta, arrays)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 raw bits (``BFLOAT16`` or uint16, any shape) -> float32 of the same shape (exact)."""
    raw = bits.view(np.uint16) if bits.dtype == BFLOAT16 else bits.astype(np.uint16, copy=False)
    return (raw.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 (any shape) -> ``BFLOAT16`` raw bits, round-to-nearest-even like torch (NaN kept NaN)."""
    floats = np.ascontiguousarray(values, dtype=np.float32)
    bits = floats.view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    rounded = np.where(np.isnan(floats), (bits >> 16) | 0x40, rounded)  # keep NaN payload a quiet NaN
    return rounded.astype(np.uint16).view(BFLOAT16)
