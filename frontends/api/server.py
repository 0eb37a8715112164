"""Serving the app: `ApiServer` (uvicorn on a thread), the `ApiActor` Ray shell, and `start_api` for the CLI.

`ApiServer` binds its socket itself, before uvicorn starts, so a port in use or an address this machine
does not have fails at once with an OSError naming the address (uvicorn would `sys.exit` on its thread), and
port 0 resolves to the real port immediately. uvicorn then runs on a daemon thread with its own event loop;
the app's Ray calls (`await ref`) work from any event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import replace

import ray
import uvicorn
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from frontends.api.app import create_app
from frontends.api.backend import Backend
from frontends.api.ray_backend import RayBackend
from actors.config import ApiConfig
from actors.control.controller import CONTROLLER_NAME

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # uvicorn up after the socket is bound
START_TIMEOUT_ACTOR_S = 180.0  # actor process + imports (torch, via the pipeline modules) on a busy machine
STOP_TIMEOUT_S = 5.0
API_ACTOR_NAME = "tokdyn-api"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only "localhost" is known to stay on this machine
        return host == "localhost"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); IPv6 when host contains ':'. SO_REUSEADDR lets a restarted
    actor take its port back while old connections sit in TIME_WAIT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ApiServer:
    """The app over `backend`, served by uvicorn on a background thread at ``config.host:config.port``.

    Usable as a context manager (tests); `url` is ``http://host:port`` with the bound port. With
    `exit_on_crash` (the Ray actor) a server loop that ends without `stop()` ends the process, so Ray
    restarts the actor instead of leaving a live actor that no longer serves HTTP.
    """

    def __init__(self, backend: Backend, config: ApiConfig, exit_on_crash: bool = False) -> None:
        if config.api_key is None and not _is_loopback(config.host):
            log.warning("API on %s without an api_key: anyone who reaches this address can manage streams "
                        "and ask questions", config.host)
        self.config = config
        self._exit_on_crash = exit_on_crash
        self._stopping = False
        self._socket = bind_socket(config.host, config.port)
        self.port: int = self._socket.getsockname()[1]
        uv_config = uvicorn.Config(create_app(backend, config), log_level="warning", access_log=False,
                                   lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self._run, name="tokdyn-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                raise RuntimeError(f"API server on {self.url} did not start within {START_TIMEOUT_S} s")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        finally:
            if self._exit_on_crash and not self._stopping:
                log.critical("API server loop ended unexpectedly; exiting so that Ray restarts the actor")
                os._exit(1)

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests (up to the graceful timeout), release the port."""
        self._stopping = True
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
        self._socket.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class ApiActor:
    """Ray shell over ApiServer + RayBackend: one process serving HTTP, restarted by Ray if it dies.

    `controller` is the controller's actor name (looked up in `namespace`, again after every restart) or
    its handle. Prefer the name: Ray keeps a handle argument in the object store, and warns that a restart
    fails if the handle's owner lets it go.
    """

    def __init__(self, config: ApiConfig, controller: str | ray.actor.ActorHandle,
                 namespace: str | None = None) -> None:
        if isinstance(controller, str):
            controller = ray.get_actor(controller, namespace=namespace)
        self._server = ApiServer(RayBackend(controller), config, exit_on_crash=True)

    def url(self) -> str:
        return self._server.url

    def pid(self) -> int:
        return os.getpid()


def _free_port(host: str) -> int:
    with bind_socket(host, 0) as sock:
        return sock.getsockname()[1]


def start_api(config: ApiConfig, controller: str | ray.actor.ActorHandle = CONTROLLER_NAME,
              namespace: str | None = None, name: str = API_ACTOR_NAME) -> tuple[ray.actor.ActorHandle, str]:
    """Start the HTTP API as a named Ray actor on this node and return (handle, url). Needs ray.init() done.

    `controller`: the pipeline controller's actor name in `namespace` (the default, "tokdyn-controller",
    is what `start_pipeline` creates) or its handle; `namespace` is also the API actor's own namespace.

    The actor is pinned to the node that calls this, so ``host`` (127.0.0.1 by default) means this machine.
    Port 0 is resolved here to a free port first, so a restarted actor listens on the same URL again.
    """
    port = config.port or _free_port(config.host)
    fixed = replace(config, port=port)
    node = ray.get_runtime_context().get_node_id()
    actor = ApiActor.options(
        name=name, namespace=namespace, lifetime=None,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(fixed, controller, namespace)
    url = ray.get(actor.url.remote(), timeout=START_TIMEOUT_ACTOR_S)
    log.info("tokdyn API listening on %s", url)
    return actor, url
