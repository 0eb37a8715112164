"""Errors raised by the compressor. All are ValueError subclasses and state expected vs actual."""

from __future__ import annotations

from configs.schema import ConfigError


class CompressorError(ValueError):
    """Base class of every error the compressor raises on bad input or bad configuration."""


class InvalidTokens(CompressorError):
    """A token chunk (or its timestamps) was rejected: wrong rank, grid/D mismatch, NaN/Inf, empty."""


class InvalidConfig(CompressorError, ConfigError):
    """A configuration value is out of range (budget < 1, k_min > k_max, unknown method, ...); a ConfigError, so
    the pipeline's config loader reports it like every other config error."""


class InvalidState(CompressorError):
    """Serialised state could not be restored (bad schema version, method, or missing field)."""


class FramesForgotten(CompressorError):
    """A read asked for frames older than the state still holds (see ``keymap_frames``; segments hold them)."""
