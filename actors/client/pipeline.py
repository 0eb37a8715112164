"""Starting and finding a pipeline (as a PipelineClient). Used by the CLI, the demo, tests and benchmarks.

A pipeline is one named controller actor ("tokdyn-controller" in the config's Ray namespace) that owns
every other actor. `tokdyn serve` starts one; other processes (`tokdyn streams ...`, `tokdyn ask ...`) join
the same Ray cluster with `ray.init(address="auto")` and look the controller up by name.
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.client.client import PipelineClient
from actors.client.cluster import head_node_id, join, start_local
from actors.config import PipelineConfig, RayConfig
from actors.control.controller import CONTROLLER_NAME, START_TIMEOUT_S, ControllerActor

CONTROLLER_CONCURRENCY = 16  # control calls served at once (status polls must not wait behind add_stream)


def init_ray(config: RayConfig) -> None:
    """Start a local cluster (on 127.0.0.1 only) or join one, unless this process is already connected."""
    if ray.is_initialized():
        return
    if config.address == "local":
        start_local(config.num_cpus, config.namespace, log_to_driver=False)
    else:
        join(config.address, config.namespace, log_to_driver=False)


def start_pipeline(config: PipelineConfig) -> PipelineClient:
    """The pipeline of this Ray namespace: the running one if the cluster has it (adopted as it is: its own
    config wins), else a new controller (which starts the replicas and the config's streams); waits until
    it answers. `client.adopted` says which.

    The controller is detached and restarted by Ray when its process dies (the new one re-adopts every
    running actor from the table it keeps in Ray's GCS store), so neither a dead controller nor a dead
    `tokdyn serve` stops a stream. It runs on the head node (as Ray Serve's controller does): a worker node's
    loss then costs its streams a move, not the control plane a restart. `client.shutdown()` stops it all
    (checkpoints stay on disk).
    """
    init_ray(config.ray)
    try:
        controller, adopted = ray.get_actor(CONTROLLER_NAME, namespace=config.ray.namespace), True
    except ValueError:
        head = head_node_id()
        placement = {} if head is None else {"scheduling_strategy": NodeAffinitySchedulingStrategy(head, soft=False)}
        controller = ControllerActor.options(
            name=CONTROLLER_NAME, namespace=config.ray.namespace, lifetime="detached", get_if_exists=True,
            max_restarts=-1, num_cpus=0, max_concurrency=CONTROLLER_CONCURRENCY, **placement,
        ).remote(config)
        adopted = False
    client = PipelineClient(controller, namespace=config.ray.namespace)
    client.adopted = adopted
    client.wait_ready(START_TIMEOUT_S)
    return client


def connect(address: str = "auto", namespace: str = "tokdyn") -> PipelineClient:
    """A client over the controller of a running pipeline (started by `tokdyn serve` on this cluster).

    Raises LookupError when no pipeline runs in `namespace`.
    """
    if not ray.is_initialized():
        join(address, namespace, log_to_driver=False)  # a wrong address: a LookupError in seconds
    try:
        return PipelineClient(ray.get_actor(CONTROLLER_NAME, namespace=namespace), namespace=namespace)
    except ValueError:
        raise LookupError(f"no running pipeline: actor {CONTROLLER_NAME!r} not found in namespace "
                          f"{namespace!r} (start one with `tokdyn serve`)") from None
