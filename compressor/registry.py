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


def restore_stream_compressor(data: bytes, config: CompressorConfig | None = None) -> StreamCompressor:
    """Restore any method's state from ``to_bytes`` output (dispatch on the method stored in the bytes).

    ``config``: what the stream asks for now; a checkpoint of another method, budget, K range, recent window
    or slot count is refused, other fields are taken from it (see ``StreamCompressorBase.from_bytes``).

    Raises:
        InvalidState: the only error: damaged or inconsistent bytes, wrong schema version, unknown method, or a
            config mismatch.
    """
    method, _ = loads(data)
    if method not in STREAM_COMPRESSORS:
        raise InvalidState(f"state: expected a method in {sorted(STREAM_COMPRESSORS)}, got {method!r}")
    if config is not None and config.method != method:
        raise InvalidState(f"config: expected the checkpoint's method {method!r}, got {config.method!r} (refused: "
                           f"start the stream afresh to change it)")
    return STREAM_COMPRESSORS[method].from_bytes(data, config=config)
