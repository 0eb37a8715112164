"""The data plane: one plain class per worker (source, encoder, memory, LLM) that owns a loop thread and its
ZeroMQ sockets (``loop``), testable without Ray, and their thin Ray shells (``remote``). A new worker goes here:
a plain class in its own module plus a shell in ``remote``."""
