"""Starting, finding and stopping a pipeline; asking its LLM. Used by the CLI, the demo, tests and benchmarks.

A pipeline is one named controller actor ("tokdyn-controller" in the config's Ray namespace) that owns
every other actor. `tokdyn serve` starts one; other processes (`tokdyn streams ...`, `tokdyn ask ...`) join
the same Ray cluster with `ray.init(address="auto")` and look the controller up by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ray

from actors.config import PipelineConfig, RayConfig
from actors.controller import CONTROLLER_NAME, START_TIMEOUT_S, ControllerActor

CONTROLLER_CONCURRENCY = 16  # control calls served at once (status polls must not wait behind add_stream)


def init_ray(config: RayConfig) -> None:
    """Start a local cluster or join one, unless this process is already connected."""
    if ray.is_initialized():
        return
    if config.address == "local":
        ray.init(address="local", num_cpus=config.num_cpus, namespace=config.namespace, include_dashboard=False,
                 log_to_driver=False)
    else:
        ray.init(address=config.address, namespace=config.namespace, log_to_driver=False)


def start_pipeline(config: PipelineConfig) -> Any:
    """Create the controller (which starts the encoder, the LLM and the config's streams); wait until ready.

    Returns the controller's ActorHandle. The controller is not restarted by Ray: it owns every other actor
    (they fate-share with it), so `tokdyn serve` exits when it dies instead of running half a pipeline.
    """
    init_ray(config.ray)
    controller = ControllerActor.options(
        name=CONTROLLER_NAME, namespace=config.ray.namespace, max_restarts=0, num_cpus=0,
        max_concurrency=CONTROLLER_CONCURRENCY,
    ).remote(config)
    ray.get(controller.ready.remote(), timeout=START_TIMEOUT_S)
    return controller


def connect(address: str = "auto", namespace: str = "tokdyn") -> Any:
    """The controller of a running pipeline (started by `tokdyn serve` on this cluster)."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, log_to_driver=False)
    try:
        return ray.get_actor(CONTROLLER_NAME, namespace=namespace)
    except ValueError:
        raise LookupError(f"no running pipeline: actor {CONTROLLER_NAME!r} not found in namespace "
                          f"{namespace!r} (start one with `tokdyn serve`)") from None


def stop_pipeline(controller: Any, timeout_s: float = 60.0) -> None:
    """Stop every actor of the pipeline (checkpoints stay on disk) and the controller itself."""
    try:
        ray.get(controller.shutdown.remote(), timeout=timeout_s)
    finally:
        ray.kill(controller, no_restart=True)


def ask(llm: Any, stream_id: str, question: str | list[dict], max_tokens: int = 64,
        temperature: float = 0.0) -> Iterator[dict]:
    """Events of one answer as they are generated: {"type": "delta", "text"} ..., then {"type": "done", ...}.

    Raises the LLM's UnknownStream / NotReady (ValueErrors) when the stream cannot be asked about.
    """
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    for ref in llm.ask.remote(stream_id, messages, max_tokens, temperature):
        yield ray.get(ref)
