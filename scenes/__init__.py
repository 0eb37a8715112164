"""Procedural video-QA with known answers: scenes (scene.py), their questions (questions.py), the
evaluation sets (suites.py) and scenes as video (video.py: the ``scene://`` camera, H.264 files).

Pure numpy (no torch, no Ray): the pipeline plays a scene through ``stream.sources`` (``scene://``), the
trainer and the benchmarks read the truth from here.
"""
