"""Fixtures: the tiny model, an in-process backend of real parts, and the API served on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from frontends.api.server import ApiServer
from actors.config import ApiConfig, PipelineConfig
from vlm.config import ModelConfig
from vlm.registry import load_vlm
from tests.frontends.api.local_backend import LocalBackend

API_KEY = "test-key-0123456789"
MAX_BODY = 64 * 1024


@pytest.fixture(scope="session")
def tiny_model():
    return load_vlm(ModelConfig())


@pytest.fixture
def backend(tiny_model) -> LocalBackend:
    return LocalBackend(tiny_model)


@pytest.fixture
def server(backend):
    with ApiServer(backend, ApiConfig(port=0, api_key=API_KEY, max_body_bytes=MAX_BODY)) as srv:
        yield srv


@pytest.fixture
def http(server):
    """Plain HTTP client that sends the right API key."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
        yield client


@pytest.fixture
def client(server) -> openai.OpenAI:
    """The official OpenAI client pointed at the API (no retries: a test must see the first answer)."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=30)


def video_question(stream_id: str, text: str = "What moves?") -> list[dict]:
    """A user message naming the stream the primary way: a video_url content part."""
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"tokdyn://{stream_id}"}},
                                         {"type": "text", "text": text}]}]


@contextlib.contextmanager
def served_pipeline(config: PipelineConfig) -> Iterator[tuple[Any, str, Any]]:
    """A pipeline started from `config` on the connected Ray cluster and its HTTP API actor (which finds the
    controller by name): yields (pipeline client, API URL, API actor); both are stopped afterwards."""
    import ray  # imported here: the in-process API tests of this folder need no Ray

    from actors.client.pipeline import start_pipeline
    from frontends.api.server import start_api

    client = start_pipeline(config)
    actor, url = start_api(config.api, namespace=config.ray.namespace)
    try:
        yield client, url, actor
    finally:
        ray.kill(actor, no_restart=True)
        client.shutdown()
