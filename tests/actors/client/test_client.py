"""PipelineClient's error unwrapping, without a cluster: what callers see for remote and Ray failures."""

from __future__ import annotations

import pickle

import pytest
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayTaskError

from actors.client.client import unwrap
from configs.schema import ConfigError
from actors.errors import (
    PipelineUnavailable,
    StreamExists,
    StreamFailed,
    StreamNotFound,
    StreamNotReady,
    WindowUnavailable,
)
from vlm.base import InputError


def remote(cause: Exception) -> Exception:
    """The exception Ray raises in the caller for `cause` raised inside an actor method."""
    return RayTaskError("ask", "Traceback (remote) ...", cause).as_instanceof_cause()


@pytest.mark.parametrize("cause", [
    StreamNotFound("stream 'x': expected one of []"),
    StreamExists("stream 'x': already exists"),
    StreamNotReady("stream 'x': no snapshot yet"),
    WindowUnavailable("window 0-10 s: the memory holds 20-80 s"),
    ConfigError("stream.sample_rate_hz: expected > 0, got -1"),
    InputError("messages[-1].role: expected 'user'"),
])
def test_remote_errors_arrive_as_themselves_without_the_remote_traceback(cause):
    unwrapped = unwrap(remote(cause))
    assert type(unwrapped) is type(cause) and str(unwrapped) == str(cause)
    assert "Traceback" not in str(unwrapped)


def test_stream_failed_keeps_its_redacted_last_error_across_a_process_boundary():
    failed = pickle.loads(pickle.dumps(StreamFailed("stream 'cam' failed", "rtsp://u:***@cam: refused")))
    unwrapped = unwrap(remote(failed))
    assert isinstance(unwrapped, StreamFailed) and unwrapped.last_error == "rtsp://u:***@cam: refused"


@pytest.mark.parametrize("exc", [ActorUnavailableError("restarting", None), GetTimeoutError("10 s"), TimeoutError()])
def test_unreachable_actors_become_pipeline_unavailable(exc):
    assert isinstance(unwrap(exc), PipelineUnavailable)


def test_unknown_remote_failures_arrive_as_their_cause_for_a_500():
    unwrapped = unwrap(remote(ZeroDivisionError("bug")))
    assert type(unwrapped) is ZeroDivisionError and str(unwrapped) == "bug"
