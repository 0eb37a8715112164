"""Swap the reduction method by name: every method behind the one streaming interface."""

from __future__ import annotations

from compressor.config import CompressorConfig
from compressor.errors import InvalidConfig, InvalidState
from compressor.serial import loads
from compressor.stream_base import StreamCompressor, StreamCompressorBase
from compressor.stream_baselines import (StreamingToMe, WindowedDyCoke, WindowedOfflineTokenDynamics,
                                         WindowedPooling, WindowedUniform)
from compressor.streaming import StreamingTokenDynamics

STREAM_COMPRESSORS: dict[str, type[StreamCompressorBase]] = {
    cls.method: cls for cls in (StreamingTokenDynamics, WindowedOfflineTokenDynamics, WindowedUniform,
                                WindowedPooling, WindowedDyCoke, StreamingToMe)
}


def make_stream_compressor(config: CompressorConfig) -> StreamCompressor:
    """A fresh streaming compressor for ``config.method``.

    Raises:
        InvalidConfig: unknown method.
    """
    try:
        cls = STREAM_COMPRESSORS[config.method]
    except KeyError:
        raise InvalidConfig(f"method: expected one of {sorted(STREAM_COMPRESSORS)}, got {config.method!r}") from None
    return cls(config)


def restore_stream_compressor(data: bytes) -> StreamCompressor:
    """Restore any method's state from ``to_bytes`` output (dispatch on the method stored in the bytes).

    Raises:
        InvalidState: undecodable bytes, wrong schema version or unknown method.
    """
    method, _ = loads(data)
    if method not in STREAM_COMPRESSORS:
        raise InvalidState(f"state: expected a method in {sorted(STREAM_COMPRESSORS)}, got {method!r}")
    return STREAM_COMPRESSORS[method].from_bytes(data)
