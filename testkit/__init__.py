"""Helpers that tests and benchmarks share, kept out of the product packages (not installed with tokdyn).

- ``rtsp_server``: ``RtspServer``, a real RTSP camera on loopback (Debian's gst-rtsp-server).
- ``token_sources``: weight-free token sources (pixel patches, a random tiny SigLIP) for measuring
  compression on real video without downloaded weights.
"""
