"""The pipeline's errors: one vocabulary for the controller, the LLM actor, the HTTP API and the CLI.

Raised inside actors, they cross Ray as the `cause` of a RayTaskError (actors/client/client.py unwraps them), so
callers catch these classes and nothing Ray-specific. Each front-end maps a class to one outcome (the API:
one HTTP status each, see frontends/api/errors.py; the CLI: one exit code). Bad configs are
`actors.config.ConfigError` and bad questions `vlm.base.InputError`: those name a key or a message field,
not a pipeline state.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every pipeline state error; the message names the stream and what was expected."""


class StreamNotFound(PipelineError, LookupError):
    """An operation named a stream id that the pipeline does not have (HTTP 404)."""


class StreamExists(PipelineError, ValueError):
    """add_stream with an id that is already running (HTTP 409)."""


class StreamNotReady(PipelineError):
    """The stream exists but has no snapshot to answer from yet (HTTP 409: ask again shortly)."""


class StreamFailed(PipelineError):
    """The stream's source failed for good (e.g. a file that does not decode); nothing more will arrive.

    `last_error` is the source's redacted error text (no credentials), for the user to act on.
    """

    def __init__(self, message: str, last_error: str | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error  # restored by pickling's __dict__ copy, so it survives Ray


class WindowUnavailable(PipelineError, ValueError):
    """A question asked about a time window the memory no longer (or not yet) holds (HTTP 400)."""


class PipelineUnavailable(PipelineError):
    """The pipeline's actors cannot be reached right now (dead, restarting, timed out): HTTP 503, retry."""


class ScaleRefused(PipelineError, ValueError):
    """A scale request the cluster cannot meet now (no free resources for another replica, or the last
    replica of a role): HTTP 409, with what is missing."""


class AlertNotFound(PipelineError, LookupError):
    """An operation named an alert rule id that the pipeline does not have (HTTP 404)."""
