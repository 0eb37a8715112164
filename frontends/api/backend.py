"""What the HTTP app needs from the pipeline: the `Backend` protocol.

The app (frontends/api/app.py) only talks to a `Backend`, so it runs in-process in tests against any object
with these methods, and in production against `RayBackend` (frontends/api/ray_backend.py), a thin layer over
`actors.client.client.PipelineClient`. A Backend raises the pipeline's own errors (actors/errors.py), `ConfigError`
for a bad stream spec and `InputError` for bad messages; the app maps each to one HTTP status
(frontends/api/errors.py), and nothing else crosses the boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from actors.status import ReplicaStatus, ScaleEvent, StreamStatus


class Backend(Protocol):
    """The pipeline as the HTTP app sees it: the controller's and the LLM actor's operations.

    Streams are reported as `actors.status.StreamStatus` (URL redacted; a value may be None while an actor
    restarts); ``list_streams`` gives one per stream (`/metrics` renders them with one call).
    """

    async def add_stream(self, spec: dict[str, Any]) -> StreamStatus:
        """Start a stream from a StreamSpec dict; returns its status. Raises StreamExists, ConfigError."""
        ...

    async def list_streams(self) -> list[StreamStatus]: ...

    async def stream_status(self, stream_id: str) -> StreamStatus:
        """Telemetry of one stream. Raises StreamNotFound."""
        ...

    async def remove_stream(self, stream_id: str) -> int | None:
        """Stop a stream and release its actors; how many alert rules went with it. Raises StreamNotFound."""
        ...

    # Alerts (frontends/api/alerts.py; actors/control/alerts.py has the rule and event shapes). Raise
    # ConfigError naming the field, StreamNotFound, AlertNotFound.
    async def add_alert(self, spec: dict[str, Any]) -> dict[str, Any]: ...

    async def list_alerts(self, stream_id: str | None = None) -> list[dict[str, Any]]: ...

    async def get_alert(self, rule_id: str) -> dict[str, Any]: ...

    async def delete_alert(self, rule_id: str) -> None: ...

    async def test_alert(self, rule_id: str) -> dict[str, Any]: ...

    async def alert_events(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Retained firings with id > `after`, oldest first, at most `limit`."""
        ...

    async def alert_stats(self) -> dict[str, Any]: ...

    def ask(
        self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
        stop: list[str] | None = None, window: tuple[float, float] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Answer from the stream's newest snapshot, or, with `window` = (t_start, t_end) media seconds, from
        a memory of that window built from the stream's segments (WindowUnavailable when none holds it).

        Yields ``{"type": "delta", "text": str}`` items, then one ``{"type": "done", "usage": {prompt_tokens,
        visual_tokens, completion_tokens, total_tokens}, "span": {t_start, t_end}, "snapshot_version": int,
        "finish_reason": "stop" | "length", "model": str, "ttft_s": float}``. Raises StreamNotFound or
        StreamNotReady before the first item when the stream cannot be asked about, InputError for bad messages.
        `stop`: up to 4 strings; the answer ends before the first of them (finish_reason "stop").
        """
        ...

    async def latest_frame(self, stream_id: str, at: float | None = None) -> dict[str, Any] | None:
        """A recently sampled frame as the encoder got it: the newest, or the one nearest media time `at`.
        ``{"t": media s, "image": [S, S, 3] uint8}``; None before the first chunk. Raises StreamNotFound."""
        ...

    async def key_map(self, stream_id: str) -> dict[str, Any] | None:
        """The newest frame's key map (compressor.keymap_view.KeyMapView.to_dict: version, t, grid, ids
        [H][W], tokens [{id, first_seen, last_seen}], t_start, t_end); None before the first chunk or for a
        method without a key map. Raises StreamNotFound."""
        ...

    async def models(self) -> list[str]:
        """Names of the models that answer (the ``model`` field of chat requests)."""
        ...

    async def ready(self) -> bool:
        """Whether the pipeline can take requests now (the actors answer)."""
        ...

    async def replicas(self) -> list[ReplicaStatus]:
        """Every encoder and LLM replica with its telemetry, role then name order."""
        ...

    async def scale_events(self) -> list[ScaleEvent]:
        """The replica pools' recent changes (add, remove, reassign), oldest first."""
        ...

    async def scale_event_totals(self) -> dict[tuple[str, str], int]:
        """Pool changes counted by (role, action) since the pipeline's control plane began (a counter)."""
        ...

    async def scale(self, role: str, count: int) -> list[ReplicaStatus]:
        """Run `count` replicas of `role` (one of actors.status.ROLES); returns every replica after the change.
        Raises ConfigError for a bad role or count, ScaleRefused when the cluster cannot host them."""
        ...
