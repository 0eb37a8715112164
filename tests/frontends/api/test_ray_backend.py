"""RayBackend's error translation, without a cluster: pipeline and Ray failures -> Backend error types."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayTaskError

from frontends.api.backend import (
    BackendUnavailable,
    InvalidQuestion,
    InvalidStreamSpec,
    StreamExistsError,
    StreamNotReady,
    UnknownStreamError,
)
from frontends.api.ray_backend import translate
from actors.config import ConfigError
from actors.controller import NoSuchStream, StreamExists
from actors.llm import NotReady, UnknownStream
from vlm.base import InputError


def remote(cause: Exception) -> Exception:
    """The exception Ray raises in the caller for `cause` raised inside an actor method."""
    return RayTaskError("ask", "Traceback (remote) ...", cause).as_instanceof_cause()


@pytest.mark.parametrize("cause, expected", [
    (NoSuchStream("stream 'x': expected one of []"), UnknownStreamError),
    (UnknownStream("stream 'x': expected one of []"), UnknownStreamError),
    (StreamExists("stream 'x': already exists"), StreamExistsError),
    (NotReady("stream 'x': no snapshot yet"), StreamNotReady),
    (ConfigError("stream.sample_rate_hz: expected > 0, got -1"), InvalidStreamSpec),
    (InputError("messages[-1].role: expected 'user'"), InvalidQuestion),
])
def test_remote_pipeline_errors_become_backend_errors_with_the_remote_message(cause, expected):
    translated = translate(remote(cause))
    assert type(translated) is expected
    assert str(translated) == str(cause)  # the message, not the remote traceback


@pytest.mark.parametrize("exc", [ActorUnavailableError("restarting", None), GetTimeoutError("10 s"), TimeoutError()])
def test_unreachable_actors_become_backend_unavailable(exc):
    assert isinstance(translate(exc), BackendUnavailable)


def test_unknown_failures_pass_through_for_a_500():
    exc = remote(ZeroDivisionError("bug"))
    assert translate(exc) is exc
