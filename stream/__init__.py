"""Getting frames in and moving data between processes (no Ray, no models).

- ``sources``: ``open_source(url, SourceConfig) -> Source`` for files, RTSP/HTTP (any FFmpeg URL) and
  ``synthetic://`` video; state machine, counters, reconnect with backoff, buffer policies.
- ``urls``: what a URL means, decided once: ``is_live_url``, ``resolve_url`` (``sample://`` clips), schemes.
- ``sampling``: ``Sampler`` (by timestamp), ``resize_frames``, ``Chunker`` and ``chunks(...)``, the one loop.
- ``codec``: ``Message`` <-> multipart frames (msgpack header + zero-copy buffers), ``ProtocolError``.
- ``tensors``: torch <-> wire arrays (bfloat16 as raw bits); imports torch lazily.
- ``transport``: ``Socket.open("push+bind:tcp://127.0.0.1:*")``, ``SequenceTracker`` (gaps, EOS).
- ``probe``: ``probe(url) -> ProbeReport`` and the ``tokdyn probe`` command.
- ``synthetic``: moving squares with known positions; ``write_video`` encodes frames with PyAV.

Submodules are imported on demand (``import stream`` stays cheap).
"""
