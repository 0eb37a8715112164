"""msgpack envelope for compressor state: schema version + method name + payload, arrays as raw bytes."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from compressor.errors import InvalidState

SCHEMA_VERSION = 1


def pack_array(array: np.ndarray) -> dict[str, Any]:
    """``array`` as a msgpack-able dict ``{dtype, shape, data}`` (C-order bytes, exact)."""
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def unpack_array(packed: dict[str, Any]) -> np.ndarray:
    """Inverse of ``pack_array`` (read-only view over the bytes; copy before mutating)."""
    try:
        return np.frombuffer(packed["data"], dtype=np.dtype(packed["dtype"])).reshape(packed["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidState(f"array: expected {{dtype, shape, data}} with matching sizes, got error {exc}") from exc


def dumps(method: str, payload: dict[str, Any]) -> bytes:
    """Serialise one compressor's state."""
    return msgpack.packb({"schema": SCHEMA_VERSION, "method": method, "state": payload}, use_bin_type=True)


def loads(data: bytes, method: str | None = None) -> tuple[str, dict[str, Any]]:
    """Parse ``dumps`` output; returns ``(method, payload)``.

    Raises:
        InvalidState: not msgpack, wrong schema version, or (when ``method`` is given) another method's state.
    """
    try:
        envelope = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException) as exc:
        raise InvalidState(f"state: expected msgpack bytes, got undecodable data ({exc})") from exc
    if not isinstance(envelope, dict) or "schema" not in envelope:
        raise InvalidState("state: expected a dict with a 'schema' key, got something else")
    if envelope["schema"] != SCHEMA_VERSION:
        raise InvalidState(f"state: expected schema version {SCHEMA_VERSION}, got {envelope['schema']}")
    if method is not None and envelope.get("method") != method:
        raise InvalidState(f"state: expected method {method!r}, got {envelope.get('method')!r}")
    return envelope["method"], envelope["state"]
