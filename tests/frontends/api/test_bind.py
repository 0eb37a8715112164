"""The API listens on 127.0.0.1 only, unless configured to listen elsewhere.

To show that other addresses are refused we need an address of this machine that is NOT loopback: a
connection to 127.0.0.2 never leaves the loopback interface either, so refusing it proves little (and
Linux routes all of 127/8 to lo anyway). We use the host's own non-loopback IPv4 address (as
`hostname -I` lists it): a client on the network reaches the machine through exactly that address.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess

import httpx
import pytest

from frontends.api.server import ApiServer, bind_socket
from actors.config import ApiConfig


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this host outside 127/8 (from `hostname -I`), or None if it has none."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for word in out.split():
        try:
            address = ipaddress.ip_address(word)
        except ValueError:
            continue
        if address.version == 4 and not address.is_loopback:
            return word
    return None


HOST_IP = non_loopback_ipv4()
needs_host_ip = pytest.mark.skipif(HOST_IP is None, reason="this machine has no non-loopback IPv4 address")


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except ConnectionRefusedError:
        return False


@needs_host_ip
def test_default_bind_refuses_the_hosts_network_address(backend):
    with ApiServer(backend, ApiConfig(port=0)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/health").status_code == 200
        assert not connects(HOST_IP, server.port)


@needs_host_ip
def test_configured_host_is_reachable_on_it(backend):
    with ApiServer(backend, ApiConfig(host=HOST_IP, port=0)) as server:
        assert httpx.get(f"http://{HOST_IP}:{server.port}/health").status_code == 200
        assert not connects("127.0.0.1", server.port)  # bound to that address only


def test_port_in_use_fails_at_once_naming_the_address(backend):
    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            ApiServer(backend, ApiConfig(port=port))


@needs_host_ip
def test_listening_beyond_loopback_without_a_key_is_warned_about(backend, caplog):
    with ApiServer(backend, ApiConfig(host=HOST_IP, port=0)):
        pass
    assert "without an api_key" in caplog.text
    caplog.clear()
    with ApiServer(backend, ApiConfig(port=0)):
        pass
    assert "without an api_key" not in caplog.text
