"""`PipelineClient`: a running pipeline's controller actor behind plain method calls.

The CLI, the demo, the HTTP API's backend, benches and tests call these methods instead of
`controller.x.remote(...)`, the way Ray's util/queue.py wraps its private actor. Each method comes in a
blocking form and an `_async` form (for the API's event loop); the control operations are declared once, in
actors/client/operations.py. Failures arrive as the pipeline's own
errors (actors/errors.py), `ConfigError` or the model's `InputError`, never as Ray's wrappers: a remote
error is unwrapped to its cause, and an actor that is dead, restarting or too slow becomes
`PipelineUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from actors.errors import PipelineError, PipelineUnavailable, StreamFailed, StreamNotFound, StreamNotReady
from actors.client.operations import CALL_TIMEOUT_S, with_operations
from actors.client.routing import LLMRouter
from actors.control.table import stop_all
from actors.status import ReplicaStatus, ScaleEvent, StreamStatus

log = logging.getLogger(__name__)



def unwrap(exc: BaseException) -> BaseException:
    """The error a caller should see for `exc` raised by a Ray call on the pipeline.

    A remote exception -> its cause (the pipeline's own error, with its message and no remote traceback);
    a dead, restarting or silent actor -> PipelineUnavailable; anything else unchanged.
    """
    if isinstance(exc, RayTaskError) and exc.cause is not None and not isinstance(exc.cause, RayError):
        return exc.cause
    if isinstance(exc, (RayError, asyncio.TimeoutError)):  # RayActorError, GetTimeoutError, ...
        return PipelineUnavailable(f"pipeline actor unavailable ({type(exc).__name__}): retry shortly")
    return exc


@with_operations
class PipelineClient:
    """Calls on one pipeline's controller (an ActorHandle of actors.control.controller.ControllerActor): the
    control operations of actors/client/operations.py (each blocking and `_async`), questions, life cycle."""

    def __init__(self, controller: Any, call_timeout_s: float = CALL_TIMEOUT_S, namespace: str = "tokdyn") -> None:
        """`namespace`: the Ray namespace the pipeline lives in (its table, for a shutdown without it)."""
        self.controller = controller
        self.namespace = namespace
        self.call_timeout_s = call_timeout_s
        self.adopted = False  # set by actors.client.pipeline.start_pipeline: it found this pipeline running
        self.router = LLMRouter(self.llm_handles)

    # --- plumbing ---------------------------------------------------------------------------------------

    def call(self, method: Any, *args: Any, timeout_s: float | None = None) -> Any:
        """`method.remote(*args)` on any of the pipeline's actors, its result or its unwrapped error."""
        try:
            return ray.get(method.remote(*args), timeout=timeout_s or self.call_timeout_s)
        except Exception as exc:
            raise unwrap(exc) from None

    async def call_async(self, method: Any, *args: Any, timeout_s: float | None = None) -> Any:
        """`call` for an event loop."""
        try:
            return await asyncio.wait_for(method.remote(*args), timeout_s or self.call_timeout_s)
        except Exception as exc:
            raise unwrap(exc) from None

    def _get(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        return self.call(getattr(self.controller, method), *args, timeout_s=timeout_s)

    async def _get_async(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        return await self.call_async(getattr(self.controller, method), *args, timeout_s=timeout_s)

    # --- shared actors ----------------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the controller answers (it does once its shared actors started); raises what went
        wrong at start-up, or PipelineUnavailable after `timeout_s`."""
        self._get("ready", timeout_s=timeout_s)

    async def ready_async(self, timeout_s: float | None = None) -> bool:
        """Whether the controller answers within `timeout_s`; never raises."""
        try:
            return bool(await self._get_async("ready", timeout_s=timeout_s))
        except PipelineUnavailable:
            return False

    def llm(self) -> Any:
        """The handle of the LLM replica the next question would go to (the least busy from this client)."""
        return self._pick_llm()[1]

    async def llm_async(self) -> Any:
        return (await self._pick_llm_async())[1]

    def _pick_llm(self) -> tuple[str, Any]:
        if self.router.stale():
            self.router.update(self.llm_handles())
        return self._picked()

    async def _pick_llm_async(self) -> tuple[str, Any]:
        if self.router.stale():
            self.router.update(await self.llm_handles_async())
        return self._picked()

    def _picked(self) -> tuple[str, Any]:
        try:
            return self.router.pick()
        except LookupError:
            raise PipelineUnavailable("no LLM replica is alive (restarting or being added): retry shortly") from None

    def encoder(self) -> Any:
        """The first encoder replica's handle (tools and fault drills; `encoder_handles()` has them all)."""
        return next(iter(self.encoder_handles().values()))

    async def models_async(self) -> list[str]:
        """Names of the models that answer."""
        return await self.call_async((await self.llm_async()).models)

    # --- questions --------------------------------------------------------------------------------------

    def ask(self, stream_id: str, question: str | list[dict[str, Any]], max_tokens: int = 64,
            temperature: float = 0.0, stop: list[str] | None = None,
            window: tuple[float, float] | None = None) -> Iterator[dict[str, Any]]:
        """Events of one answer as they are generated: {"type": "delta", "text"} ..., then one
        {"type": "done", usage, span, snapshot_version, finish_reason, model, ttft_s}. `stop`: up to 4
        strings the answer ends before. `window`: (t_start, t_end) media seconds to answer about, from a memory
        of that window the stream's memory worker builds from its segments and Ray carries to the LLM replica
        (WindowUnavailable when none holds it); None: the live memory.

        Raises before the first event: StreamNotFound (no such stream), StreamNotReady (no snapshot yet),
        StreamFailed (no snapshot and the source failed for good: its last_error says why),
        PipelineUnavailable (an actor restarting, or the LLM catching up after a restart), InputError for
        bad messages (PromptTooLong over the prompt cap).
        """
        messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
        memory = None if window is None else self.stream_handles(stream_id)["memory"]
        name, llm = self._pick_llm()
        unavailable = False
        try:
            for ref in llm.ask.remote(stream_id, messages, max_tokens, temperature, stop, _window(memory, window)):
                yield ray.get(ref)
        except Exception as exc:
            error = unwrap(exc)
            unavailable = isinstance(error, PipelineUnavailable)
            if isinstance(error, (StreamNotFound, StreamNotReady)):
                error = _explained(error, stream_id, self._status_or_none(stream_id))
            raise error from None
        finally:
            self.router.done(name, unavailable)

    async def ask_async(self, stream_id: str, messages: list[dict[str, Any]], max_tokens: int,
                        temperature: float, stop: list[str] | None = None,
                        window: tuple[float, float] | None = None) -> AsyncIterator[dict[str, Any]]:
        """`ask` for an event loop; an abandoned answer (client gone, failure) is cancelled in the LLM."""
        memory = None if window is None else (await self.stream_handles_async(stream_id))["memory"]
        name, llm = await self._pick_llm_async()
        finished = unavailable = False
        answer = llm.ask.remote(stream_id, messages, max_tokens, temperature, stop, _window(memory, window))
        try:
            async for ref in answer:
                yield await ref
            finished = True
        except Exception as exc:
            error = unwrap(exc)
            unavailable = isinstance(error, PipelineUnavailable)
            if isinstance(error, (StreamNotFound, StreamNotReady)):
                try:
                    status = await self.stream_status_async(stream_id)
                except PipelineError:
                    status = None
                error = _explained(error, stream_id, status)
            raise error from None
        finally:
            self.router.done(name, unavailable)
            if not finished:  # free the LLM for other questions
                _cancel(answer)

    def _status_or_none(self, stream_id: str) -> StreamStatus | None:
        try:
            return self.stream_status(stream_id)
        except PipelineError:
            return None

    # --- life cycle -------------------------------------------------------------------------------------

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop every actor of the pipeline (checkpoints stay on disk) and the controller itself. If the
        controller cannot (restarting, or dead), it is killed first and its table's actors are killed here:
        they are detached and would outlive it."""
        try:
            self._get("shutdown", timeout_s=timeout_s)
        except PipelineUnavailable:
            ray.kill(self.controller, no_restart=True)
            killed = stop_all(self.namespace)
            log.warning("shutdown: the controller did not answer; killed the %d actors its table names", killed)
        finally:
            ray.kill(self.controller, no_restart=True)


def _window(memory: Any, window: tuple[float, float] | None) -> Any:
    """The `window` argument of an LLM's `ask`: None, or the ObjectRef of the stream memory's window memory
    (Ray resolves it before the LLM runs, wherever the two actors are; its error, if any, is the answer's)."""
    return None if window is None else memory.window.remote(*window)


def _explained(error: PipelineError, stream_id: str, status: StreamStatus | None) -> PipelineError:
    """What the LLM's "unknown stream" / "no snapshot" means, from the controller's status of the stream.

    The LLM knows streams and snapshots only as the controller and the memories re-send them, about once a
    second, so right after it restarts (or a stream is added) it lags behind: then the answer is "retry"
    (PipelineUnavailable), never "no such stream". A stream whose source failed before any snapshot will
    never have one: StreamFailed with the source's (redacted) last error.
    """
    if status is None:  # the controller does not have it either (StreamNotFound) or cannot say
        return error
    if status.snapshot_version is not None:
        return PipelineUnavailable(f"stream {stream_id!r}: the LLM is catching up with the stream's memory "
                                   "(restarted or just added), retry shortly")
    if status.failed:
        return StreamFailed(f"stream {stream_id!r} failed and has nothing to answer from: "
                            f"{status.last_error or 'no error recorded'}", status.last_error)
    if isinstance(error, StreamNotFound):
        return PipelineUnavailable(f"stream {stream_id!r}: the LLM has not been told about it yet, retry shortly")
    return error


def _cancel(answer: Any) -> None:
    try:
        ray.cancel(answer)
    except Exception as exc:  # best effort: the task may be finished or its actor gone already
        log.debug("could not cancel an abandoned answer: %s", exc)
