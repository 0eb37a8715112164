"""The streaming pipeline as Ray actors: plain worker classes (source, encoder, memory, LLM) with thin Ray
shells (``remote``), the controller that wires them per stream, and ``pipeline`` to start and stop it all."""
