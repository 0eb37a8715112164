"""`RayBackend`: the Backend protocol over the pipeline's actors (actors/controller.py, actors/llm.py).

Stream management goes to the controller actor; questions go straight to the LLM actor as a Ray streaming
generator (one object per answer event), so text reaches the HTTP client while it is generated. Every Ray
or pipeline failure is translated here into the Backend error types, so the app never sees Ray.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from frontends.api.backend import (
    BackendUnavailable,
    InvalidQuestion,
    InvalidStreamSpec,
    StreamExistsError,
    StreamNotReady,
    UnknownStreamError,
)
from actors.config import ConfigError
from actors.controller import START_TIMEOUT_S, NoSuchStream, StreamExists
from actors.llm import NotReady, UnknownStream
from vlm.base import InputError

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0  # a control call on a live pipeline answers well within this (status polls: ~10 ms)
READY_TIMEOUT_S = 5.0

# Pipeline errors -> Backend errors (checked in order; Ray re-raises remote errors as subclasses of them).
_TRANSLATIONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], type[Exception]], ...] = (
    ((NoSuchStream, UnknownStream), UnknownStreamError),
    (StreamExists, StreamExistsError),
    (NotReady, StreamNotReady),
    (ConfigError, InvalidStreamSpec),
    (InputError, InvalidQuestion),
    ((RayActorError, GetTimeoutError, asyncio.TimeoutError), BackendUnavailable),
)


def translate(exc: BaseException) -> BaseException:
    """The Backend error for a pipeline/Ray exception, with the remote message (not its traceback)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    for pipeline_types, backend_type in _TRANSLATIONS:
        if isinstance(exc, pipeline_types) or isinstance(cause, pipeline_types):
            return backend_type(str(cause) or type(cause).__name__)
    return exc


class RayBackend:
    """Backend over a running pipeline's ControllerActor handle (and the LLMActor it owns)."""

    def __init__(self, controller: ray.actor.ActorHandle, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.controller = controller
        self.call_timeout_s = call_timeout_s
        self._llm: ray.actor.ActorHandle | None = None

    async def _call(self, method: Any, *args: Any, timeout_s: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(method.remote(*args), timeout_s or self.call_timeout_s)
        except Exception as exc:
            raise translate(exc) from None

    async def _llm_handle(self) -> ray.actor.ActorHandle:
        if self._llm is None:  # the same actor for the pipeline's life (Ray restarts it in place)
            self._llm = await self._call(self.controller.llm_handle)
        return self._llm

    async def add_stream(self, spec: dict[str, Any]) -> dict[str, Any]:
        # The controller waits for the stream's new actors to start (imports, on a busy machine: minutes);
        # giving up sooner would report a failure for a stream that then appears anyway.
        return await self._call(self.controller.add_stream, spec, timeout_s=START_TIMEOUT_S)

    async def list_streams(self) -> list[dict[str, Any]]:
        return await self._call(self.controller.list_streams)

    async def stream_status(self, stream_id: str) -> dict[str, Any]:
        return await self._call(self.controller.stream_status, stream_id)

    async def remove_stream(self, stream_id: str) -> None:
        await self._call(self.controller.remove_stream, stream_id)

    async def models(self) -> list[str]:
        return await self._call((await self._llm_handle()).models)

    async def ready(self) -> bool:
        try:
            return bool(await self._call(self.controller.ready, timeout_s=READY_TIMEOUT_S))
        except BackendUnavailable:
            return False

    async def ask(self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int,
                  temperature: float) -> AsyncIterator[dict[str, Any]]:
        """The LLM actor's answer events as they are generated; cancels the generation if abandoned."""
        llm = await self._llm_handle()
        answer = llm.ask.remote(stream_id, messages, max_tokens, temperature)
        finished = False
        try:
            async for ref in answer:
                try:
                    event = await ref
                except Exception as exc:
                    raise translate(exc) from None
                yield event
            finished = True
        except RayActorError as exc:  # the LLM actor died between events
            raise translate(exc) from None
        finally:
            if not finished:  # client gone or failure: free the LLM for other questions
                try:
                    ray.cancel(answer)
                except Exception as exc:  # best effort: the task may be finished or its actor gone
                    log.debug("could not cancel an abandoned answer: %s", exc)
