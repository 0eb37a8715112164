"""The control operations, declared once (actors/client/operations.py): each is a controller method, the client
has it blocking and `_async`, the HTTP API's RayBackend serves every Backend method, and a hand-written twin of a
declared operation is refused. No cluster: the client's calls are answered in process."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from actors.client.client import PipelineClient
from actors.client.operations import OPERATIONS, with_operations
from actors.control.controller import Controller
from frontends.api.backend import Backend
from frontends.api.ray_backend import RayBackend


class Recorder(PipelineClient):
    """The real client with its controller calls recorded instead of sent through Ray."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def _get(self, method, *args, timeout_s=None):
        self.calls.append((method, args, timeout_s))
        return method

    async def _get_async(self, method, *args, timeout_s=None):
        return self._get(method, *args, timeout_s=timeout_s)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_each_operation_is_a_controller_method_the_client_calls_both_ways(op):
    assert callable(getattr(Controller, op.name, None)), f"the controller has no {op.name}"
    client = Recorder()
    assert getattr(client, op.name)(1, "x") == op.name
    assert asyncio.run(getattr(client, f"{op.name}_async")(1, "x")) == op.name
    assert client.calls == [(op.name, (1, "x"), op.timeout_s)] * 2
    assert getattr(PipelineClient, op.name).__doc__ == op.doc


def test_ray_backend_serves_every_backend_method():
    backend = RayBackend.__new__(RayBackend)
    backend.client = Recorder()
    wanted = [name for name, _ in inspect.getmembers(Backend, inspect.isfunction) if not name.startswith("_")]
    assert wanted and all(callable(getattr(backend, name)) for name in wanted)
    assert asyncio.run(backend.list_streams()) == "list_streams"  # forwarded to the client's `_async`
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        backend.nothing


def test_a_hand_written_twin_of_a_declared_operation_is_refused():
    with pytest.raises(TypeError, match="declared in actors/client/operations.py"):
        @with_operations
        class Twin:
            def add_stream(self, spec):
                return spec
