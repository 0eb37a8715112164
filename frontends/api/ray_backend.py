"""`RayBackend`: the Backend protocol over a running pipeline, through `actors.client.client.PipelineClient`.

Stream management goes to the controller actor; questions go straight to the LLM actor as a Ray streaming
generator (one object per answer event), so text reaches the HTTP client while it is generated. The client
already turns Ray's failures into the pipeline's errors (actors/errors.py), so the app never sees Ray.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from actors.client.client import PipelineClient
from actors.status import ReplicaStatus, ScaleEvent, StreamStatus

READY_TIMEOUT_S = 5.0


class RayBackend:
    """Backend over a running pipeline's ControllerActor handle (and the LLMActor it owns)."""

    def __init__(self, controller: Any) -> None:
        self.client = PipelineClient(controller)

    async def add_stream(self, spec: dict[str, Any]) -> StreamStatus:
        return await self.client.add_stream_async(spec)

    async def list_streams(self) -> list[StreamStatus]:
        return await self.client.list_streams_async()

    async def stream_status(self, stream_id: str) -> StreamStatus:
        return await self.client.stream_status_async(stream_id)

    async def remove_stream(self, stream_id: str) -> int:
        return await self.client.remove_stream_async(stream_id)

    async def add_alert(self, spec: dict[str, Any]) -> dict[str, Any]:
        return await self.client.alerts.add_async(spec)

    async def list_alerts(self, stream_id: str | None = None) -> list[dict[str, Any]]:
        return await self.client.alerts.list_async(stream_id)

    async def get_alert(self, rule_id: str) -> dict[str, Any]:
        return await self.client.alerts.get_async(rule_id)

    async def delete_alert(self, rule_id: str) -> None:
        await self.client.alerts.delete_async(rule_id)

    async def alert_events(self, after: int, limit: int) -> list[dict[str, Any]]:
        return await self.client.alerts.events_async(after, limit)

    async def alert_stats(self) -> dict[str, Any]:
        return await self.client.alerts.stats_async()

    async def latest_frame(self, stream_id: str, at: float | None = None) -> dict[str, Any] | None:
        # Straight to the stream's source actor: the frame (up to 384x384x3) never passes the controller.
        handles = await self.client.stream_handles_async(stream_id)
        return await self.client.call_async(handles["source"].frame, at)

    async def key_map(self, stream_id: str) -> dict[str, Any] | None:
        handles = await self.client.stream_handles_async(stream_id)
        return await self.client.call_async(handles["memory"].keymap_view)

    async def models(self) -> list[str]:
        return await self.client.models_async()

    async def ready(self) -> bool:
        return await self.client.ready_async(timeout_s=READY_TIMEOUT_S)

    async def replicas(self) -> list[ReplicaStatus]:
        return await self.client.replicas_async()

    async def scale_events(self) -> list[ScaleEvent]:
        return await self.client.scale_events_async()

    async def scale_event_totals(self) -> dict[tuple[str, str], int]:
        return await self.client.scale_event_totals_async()

    async def scale(self, role: str, count: int) -> list[ReplicaStatus]:
        return await self.client.scale_async(role, count)

    def ask(self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
            stop: list[str] | None = None, window: tuple[float, float] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The LLM actor's answer events as they are generated; cancels the generation if abandoned."""
        return self.client.ask_async(stream_id, messages, max_tokens, temperature, stop, window)
