"""msgpack envelope for compressor state: format version, method name, payload and a checksum.

A state file is ``msgpack({"sha256": <32 bytes>, "data": <inner bytes>})`` where the inner bytes are
``msgpack({"format": "tokdyn-compressor", "schema": 2, "method": ..., "state": payload})`` and the digest is
SHA-256 of the inner bytes, so any changed byte (payload, method or version) is refused before parsing.
Arrays inside the payload are ``{dtype, shape, data}`` with raw C-order bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from compressor.errors import InvalidState

FORMAT = "tokdyn-compressor"
SCHEMA_VERSION = 2  # 2: checksum envelope, decayed counts (float64); 1 had neither


def pack_array(array: np.ndarray) -> dict[str, Any]:
    """``array`` as a msgpack-able dict ``{dtype, shape, data}`` (C-order bytes, exact)."""
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def unpack_array(packed: dict[str, Any]) -> np.ndarray:
    """Inverse of ``pack_array`` (read-only view over the bytes; copy before mutating)."""
    try:
        dtype = np.dtype(packed["dtype"])
        if dtype.kind not in "biuf":  # no object, string or structured arrays from a file
            raise ValueError(f"dtype {dtype} is not a plain number type")
        return np.frombuffer(packed["data"], dtype=dtype).reshape(packed["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidState(f"array: expected {{dtype, shape, data}} with matching sizes, got error {exc}") from exc


def _unpack(data: Any, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException) as exc:
        raise InvalidState(f"{what}: expected msgpack bytes, got undecodable data ({exc})") from exc


def dumps(method: str, payload: dict[str, Any]) -> bytes:
    """Serialise one compressor's state (see the module docstring)."""
    inner = msgpack.packb({"format": FORMAT, "schema": SCHEMA_VERSION, "method": method, "state": payload},
                          use_bin_type=True)
    return msgpack.packb({"sha256": hashlib.sha256(inner).digest(), "data": inner}, use_bin_type=True)


def loads(data: bytes, method: str | None = None) -> tuple[str, dict[str, Any]]:
    """Parse ``dumps`` output; returns ``(method, payload)``.

    Raises:
        InvalidState: not msgpack, a checksum that does not match, another format or schema version, or (when
            ``method`` is given) another method's state.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidState(f"state: expected bytes, got {type(data).__name__}")
    outer = _unpack(data, "state")
    if not isinstance(outer, dict) or set(outer) != {"sha256", "data"} or not isinstance(outer["data"], bytes):
        raise InvalidState("state: expected a checksummed envelope {sha256, data} (schema 2), got something else "
                           "(a file from an older version, or not a state file)")
    if hashlib.sha256(outer["data"]).digest() != outer["sha256"]:
        raise InvalidState("state: expected the SHA-256 stored with the data, got another digest (damaged file)")
    envelope = _unpack(outer["data"], "state data")
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
        raise InvalidState(f"state: expected format {FORMAT!r}, got something else")
    if envelope.get("schema") != SCHEMA_VERSION:
        raise InvalidState(f"state: expected schema version {SCHEMA_VERSION}, got {envelope.get('schema')!r}")
    if method is not None and envelope.get("method") != method:
        raise InvalidState(f"state: expected method {method!r}, got {envelope.get('method')!r}")
    if not isinstance(envelope.get("method"), str) or not isinstance(envelope.get("state"), dict):
        raise InvalidState("state: expected a method name and a state map, got something else")
    return envelope["method"], envelope["state"]


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` so a reader (or a restart after kill -9) sees the old file or the new one, never half.
    ``durable=False`` skips the fsync: for hints whose loss in a power cut costs nothing (they are checked
    when read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
