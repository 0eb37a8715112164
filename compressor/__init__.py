"""Token Dynamics compressor: offline and streaming video-token compression under a token budget.

Entry points, imported from their modules (this package imports nothing itself, so a light user of
``compressor.config``, e.g. the CLI reading a pipeline config, does not load torch): ``CompressorConfig``
(config.py), ``make_stream_compressor`` / ``restore_stream_compressor`` (registry.py), ``Snapshot``
(snapshot.py), ``StreamCompressor`` (stream_base.py), ``CrossDynamicsAttention`` / ``visual_tokens``
(attention.py), ``token_dynamics`` (offline.py), the errors (errors.py).
"""
