"""`RayBackend`: the Backend protocol over a running pipeline, through `actors.client.client.PipelineClient`.

Control operations (streams, replica pools, alert rules: the Backend methods named in
actors/client/operations.py) go to the controller actor through the client's `_async` methods; questions go
straight to the LLM actor as a Ray streaming generator (one object per answer event), so text reaches the HTTP
client while it is generated. The client
already turns Ray's failures into the pipeline's errors (actors/errors.py), so the app never sees Ray.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from actors.client.client import PipelineClient
from actors.client.operations import BY_NAME

READY_TIMEOUT_S = 5.0


class RayBackend:
    """Backend over a running pipeline's ControllerActor handle (and the LLMActor it owns)."""

    def __init__(self, controller: Any) -> None:
        self.client = PipelineClient(controller)

    def __getattr__(self, name: str) -> Any:
        """A Backend method that is a control operation (actors/client/operations.py): the client's `_async`."""
        if name in BY_NAME:
            return getattr(self.client, f"{name}_async")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

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

    def ask(self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int, temperature: float,
            stop: list[str] | None = None, window: tuple[float, float] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The LLM actor's answer events as they are generated; cancels the generation if abandoned."""
        return self.client.ask_async(stream_id, messages, max_tokens, temperature, stop, window)
