"""Which Ray cluster a process starts or joins, and on which addresses that cluster listens.

A local cluster (`ray.address: local`, the default) stays on this machine: Ray's GCS, raylet, workers and
agents all listen on 127.0.0.1 only, with Ray's token authentication left as Ray sets it (on). Ray 2.60
binds its servers to the node IP, and for a local cluster it replaces 127.0.0.1 by the machine's outward
IP unless its "no cluster" switch (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the mode Ray uses on laptops) is
set; it is set for this process and, inherited, for every Ray process it starts. (Verified by
tests/frontends/test_serve_network.py, which lists the sockets of a default `tokdyn serve`.) Joining an existing
cluster (`configs/cluster.yaml`: `address: auto` after `ray start`) keeps that cluster's own addresses: that
is where a user opts into node addresses.

A process that joins by address first checks that something listens there, so a wrong `--address` fails
in seconds with one line instead of Ray retrying for minutes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from typing import Any

LOOPBACK = "127.0.0.1"
LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PROBE_TIMEOUT_S = 2.5  # the whole probe (connect + protocol check): a wrong --address fails within 3 s
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def local_only() -> None:
    """Make Ray keep this process's node, and the Ray processes it starts, on 127.0.0.1."""
    os.environ.update(LOCAL_ONLY_ENV)  # read at import by every Ray process this one starts
    # ... and already read by this process's `import ray`: set the value it derived from it (Ray consults
    # it when it resolves the node address, services.get_node_ip_address).
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def start_local(num_cpus: int | None, namespace: str, **options: Any) -> None:
    """Start a fresh single-node cluster on 127.0.0.1 in this process (`ray.init(address="local")`)."""
    import ray  # here, not at the top: the CLI probes an address before it pays for importing Ray

    local_only()
    ray.init(address="local", num_cpus=num_cpus, namespace=namespace, include_dashboard=False,
             _node_ip_address=LOOPBACK, **options)


def head_node_id() -> str | None:
    """The id of the cluster's head node (where Ray's GCS runs: the node whose loss ends the cluster anyway),
    or None when no node says it is the head."""
    import ray

    return next((n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]),
                None)


def join(address: str, namespace: str, **options: Any) -> None:
    """Join the running cluster at `address` ("auto": the one on this machine; "HOST:PORT"; "ray://...").

    Raises LookupError in seconds when nothing answers there. A cluster on 127.0.0.1 (a `tokdyn serve`
    on the default config) is joined from 127.0.0.1, so this driver listens on loopback only too.
    """
    import ray

    target = address
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            target = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise LookupError("no running Ray cluster found on this machine: start `tokdyn serve`, or pass "
                              "the address it printed") from None
    check_reachable(target)
    _use_token_if_any()
    host = target.rpartition(":")[0].strip("[]")
    if "://" not in target and _is_loopback(host):
        local_only()
        options["_node_ip_address"] = LOOPBACK
    ray.init(address=target, namespace=namespace, **options)


def _use_token_if_any() -> None:
    """Send Ray's auth token when joining, as `ray.init(address="local")` does when it starts a cluster.

    A new local cluster turns token auth on by default (RAY_AUTH_MODE unset), but a process that joins one
    with RAY_AUTH_MODE unset sends no token and is refused ("InvalidAuthToken"). Ray's own rule for
    `ray start` fixes that: with the mode unset and a token available (~/.ray/auth_token, RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH), use it. An explicit RAY_AUTH_MODE is left alone.
    """
    import logging

    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its "auth is on" notice would be the CLI's only output
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        logger.setLevel(level)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise LookupError in at most `timeout_s` when `address` ("host:port") has no listener, or one that
    does not speak Ray's protocol (gRPC: HTTP/2).

    "auto", "local" and "ray://" addresses are left to Ray (they name no GCS port to probe here).
    """
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise LookupError(f"--address: expected 'auto' or HOST:PORT of a Ray cluster, got {address!r}")
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
            speaks = os.environ.get("RAY_USE_TLS", "0") not in ("0", "") or _speaks_http2(sock, deadline)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise LookupError(f"no Ray cluster at {address} ({reason.lower()}): pass the address "
                          "`tokdyn serve` printed") from None
    if not speaks:
        raise LookupError(f"no Ray cluster at {address} (something else listens there, not Ray's GCS): pass the "
                          "address `tokdyn serve` printed")


def _speaks_http2(sock: socket.socket, deadline: float) -> bool:
    """Whether the listener answers an HTTP/2 client preface with a SETTINGS frame, as Ray's GCS (gRPC)
    does; an HTTP/1 server, a silent one or one that hangs up does not (raises TimeoutError at `deadline`)."""
    sock.sendall(HTTP2_PREFACE + HTTP2_EMPTY_SETTINGS)
    header = b""
    while len(header) < 9:  # the server's first frame header: length (3), type (1) = 4 for SETTINGS, ...
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(9 - len(header))
        if not data:
            return False
        header += data
    return header[3] == 4
