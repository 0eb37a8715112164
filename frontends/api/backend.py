"""What the HTTP app needs from the pipeline: the `Backend` protocol, its errors, and `RayBackend`.

The app (frontends/api/app.py) only talks to a `Backend`, so it runs in-process in tests against any object
with these methods, and in production against `RayBackend`, which calls the controller and LLM actors
(actors/controller.py, actors/llm.py) and turns their failures into the error types below. The app maps
each error type to one HTTP status; nothing else crosses the boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class UnknownStreamError(ValueError):
    """No stream with this id (HTTP 404)."""


class StreamExistsError(ValueError):
    """A stream with this id is already running (HTTP 409)."""


class InvalidStreamSpec(ValueError):
    """The stream spec was rejected by the pipeline (HTTP 400); the message names the bad key."""


class InvalidQuestion(ValueError):
    """The model rejected the messages (HTTP 400); the message says what it expected."""


class StreamNotReady(RuntimeError):
    """The stream exists but has no snapshot to answer from yet (HTTP 409, retry shortly)."""


class BackendUnavailable(RuntimeError):
    """The pipeline's actors cannot be reached right now (dead, restarting): HTTP 503."""


class Backend(Protocol):
    """The pipeline as the HTTP app sees it (the controller + LLM contract of CONTRACTS.md).

    Stream dicts are JSON-ready: ``stream_status`` gives the telemetry (stream_id, url (redacted), state,
    frames_in, frames_sampled, dropped, reconnects, lag_s, tokens_held, tokens_seen, compression_ratio,
    t_start, t_end, snapshot_version, last_error; a value may be None while an actor restarts), and
    ``list_streams`` one such dict per stream (`/metrics` renders them with one call).
    """

    async def add_stream(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start a stream from a StreamSpec dict; returns its status. Raises StreamExistsError, InvalidStreamSpec."""
        ...

    async def list_streams(self) -> list[dict[str, Any]]: ...

    async def stream_status(self, stream_id: str) -> dict[str, Any]:
        """Telemetry of one stream. Raises UnknownStreamError."""
        ...

    async def remove_stream(self, stream_id: str) -> None:
        """Stop a stream and release its actors. Raises UnknownStreamError."""
        ...

    def ask(
        self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer from the stream's newest snapshot.

        Yields ``{"type": "delta", "text": str}`` items, then one ``{"type": "done", "usage": {prompt_tokens,
        visual_tokens, completion_tokens, total_tokens}, "span": {t_start, t_end}, "snapshot_version": int,
        "finish_reason": "stop" | "length", "model": str, "ttft_s": float}``. Raises UnknownStreamError or
        StreamNotReady before the first item when the stream cannot be asked about.
        """
        ...

    async def models(self) -> list[str]:
        """Names of the models that answer (the ``model`` field of chat requests)."""
        ...

    async def ready(self) -> bool:
        """Whether the pipeline can take requests now (the actors answer)."""
        ...
