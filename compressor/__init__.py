"""Token Dynamics compressor: offline and streaming video-token compression under a token budget.

Public entry points: ``CompressorConfig`` (config.py), ``make_stream_compressor`` /
``restore_stream_compressor`` (registry.py), ``Snapshot`` (snapshot.py), ``CrossDynamicsAttention`` /
``visual_tokens`` (attention.py), ``token_dynamics`` (offline.py).
"""

from compressor.attention import CrossDynamicsAttention, visual_tokens
from compressor.config import CompressorConfig
from compressor.errors import CompressorError, InvalidConfig, InvalidState, InvalidTokens
from compressor.offline import token_dynamics
from compressor.registry import make_stream_compressor, restore_stream_compressor
from compressor.snapshot import Snapshot
from compressor.stream_base import StreamCompressor

__all__ = [
    "CompressorConfig", "CompressorError", "CrossDynamicsAttention", "InvalidConfig", "InvalidState",
    "InvalidTokens", "Snapshot", "StreamCompressor", "make_stream_compressor", "restore_stream_compressor",
    "token_dynamics", "visual_tokens",
]
