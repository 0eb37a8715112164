"""Errors the API answers with, all in the OpenAI error shape.

Every failure leaves the server as one JSON body::

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}

Client mistakes are 4xx with ``type="invalid_request_error"`` (401 uses ``authentication_error``); a failing
backend is a 5xx with ``type="server_error"``. Handlers raise :class:`ApiError`; the app turns it into a
response, so no handler builds error bodies by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.responses import JSONResponse

from configs.schema import ConfigError
from actors.errors import (
    PipelineUnavailable,
    ScaleRefused,
    StreamExists,
    StreamFailed,
    StreamNotFound,
    StreamNotReady,
    WindowUnavailable,
)
from vlm.base import InputError
from vlm.serving import PromptTooLong

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"


class ApiError(Exception):
    """An HTTP error with an OpenAI-shaped body.

    Args:
        status: HTTP status code (4xx for the client's mistakes, 5xx for ours).
        message: what went wrong, for a person: name what was expected and what arrived.
        type: OpenAI error type; defaults from the status.
        param: the request field at fault, dotted (``messages[0].content``), or None.
        code: a short machine-readable code (``stream_not_found``, ``invalid_json``, ...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or (SERVER_ERROR if status >= 500 else INVALID_REQUEST)
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The OpenAI error object, ready for JSON."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    """A 400 for a request whose JSON parsed but whose content is wrong."""
    return ApiError(400, message, param=param, code=code)


@contextmanager
def backend_errors(stream_id: str | None = None) -> Iterator[None]:
    """Turn a Backend's errors into HTTP errors; anything unexpected becomes a clean 500, never a crash."""
    try:
        yield
    except ApiError:
        raise
    except StreamNotFound as exc:
        raise ApiError(404, f"unknown stream {stream_id!r}: {exc}", param="stream_id",
                       code="stream_not_found") from None
    except StreamExists as exc:
        raise ApiError(409, str(exc), param="id", code="stream_exists") from None
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_stream") from None
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), param="messages", code="prompt_too_long") from None
    except InputError as exc:
        raise ApiError(400, str(exc), param="messages", code="invalid_question") from None
    except WindowUnavailable as exc:
        raise ApiError(400, str(exc), param="messages", code="window_unavailable") from None
    except StreamNotReady as exc:
        raise ApiError(409, f"stream {stream_id!r} has no snapshot yet, retry shortly: {exc}", param="stream_id",
                       code="stream_not_ready") from None
    except StreamFailed as exc:
        raise ApiError(409, f"stream {stream_id!r} failed: {exc.last_error or exc}", param="stream_id",
                       code="stream_failed") from None
    except ScaleRefused as exc:  # the request was fine; the cluster cannot host it now (the message says why)
        raise ApiError(409, f"scale refused: {exc}", param="replicas", code="scale_refused") from None
    except PipelineUnavailable as exc:
        raise ApiError(503, f"pipeline unavailable: {exc}", code="backend_unavailable") from None
    except Exception:  # the pipeline failed in a way it does not name: answer 500, keep serving
        # The details (a remote traceback: pids, node IPs, actor ids, source paths) go to the server log
        # only; the client learns that it was not its fault, and nothing about the machine.
        log.exception("backend call failed")
        raise ApiError(500, "pipeline failed unexpectedly (details in the server log)", code="backend_error") from None
