"""CURVE security for the data sockets: one key set per deployment, a ZAP check on every bound socket.

A deployment (one pipeline) has two CURVE key pairs: the *server* pair, held by every socket that binds, and
the *client* pair, held by every socket that connects. A connecting socket must know the server's public key
(else the handshake fails), and a bound socket's ZAP handler lets in only peers that present the deployment's
client public key; either way a peer without the deployment's keys never gets a message to a handler, and the
traffic is encrypted. The keys are made once per deployment (``CurveKeys.generate``) and travel to actors
inside their constructor arguments (through Ray); ``repr`` never shows them.

ZAP runs per ZeroMQ context: ``secure`` starts one authenticator thread on the context the first time a bound
socket asks for it, and registers the socket's deployment as a ZAP domain (several deployments in one process
each admit only their own clients).
"""

from __future__ import annotations

import hashlib
import logging
import threading

import zmq
from zmq.auth.thread import ThreadAuthenticator


class CurveKeys:
    """The CURVE key pairs of one deployment (Z85 bytes). Pickled with the config that carries it."""

    __slots__ = ("server_public", "server_secret", "client_public", "client_secret")

    def __init__(self, server_public: bytes, server_secret: bytes, client_public: bytes,
                 client_secret: bytes) -> None:
        for name, key in (("server_public", server_public), ("server_secret", server_secret),
                          ("client_public", client_public), ("client_secret", client_secret)):
            if not isinstance(key, bytes) or len(key) != 40:
                raise ValueError(f"CurveKeys.{name}: expected a 40-byte Z85 key, got {type(key).__name__}")
        self.server_public, self.server_secret = server_public, server_secret
        self.client_public, self.client_secret = client_public, client_secret

    @classmethod
    def generate(cls) -> CurveKeys:
        """A fresh key set (libzmq's CSPRNG)."""
        if not zmq.has("curve"):
            raise RuntimeError("transport.curve: expected a libzmq built with CURVE, this one has none "
                               "(set transport.curve: false to run on plain sockets)")
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public, server_secret, client_public, client_secret)

    @property
    def domain(self) -> str:
        """ZAP domain of this deployment: a digest of the server's public key (never a secret)."""
        return "tokdyn-" + hashlib.sha256(self.server_public).hexdigest()[:16]

    def __getstate__(self) -> tuple[bytes, bytes, bytes, bytes]:
        return self.server_public, self.server_secret, self.client_public, self.client_secret

    def __setstate__(self, state: tuple[bytes, bytes, bytes, bytes]) -> None:
        self.server_public, self.server_secret, self.client_public, self.client_secret = state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CurveKeys) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash(self.server_public)

    def __repr__(self) -> str:
        return f"CurveKeys(domain={self.domain!r}, keys=<redacted>)"


class _Admitted:
    """ZAP credentials provider: the client public keys admitted per domain (one per deployment)."""

    def __init__(self) -> None:
        self.keys: dict[str, set[bytes]] = {}

    def callback(self, domain: str, client_key: bytes) -> bool:
        return client_key in self.keys.get(domain, ())


_ZAP_LOG = logging.getLogger("tokdyn.zap")  # refused peers are counted by the sockets, not logged one by one
_ZAP_LOG.setLevel(logging.WARNING)
_LOCK = threading.Lock()
_AUTH: dict[int, tuple[ThreadAuthenticator, _Admitted]] = {}  # id(context) -> its authenticator


def _admit(ctx: zmq.Context, keys: CurveKeys) -> None:
    """Start ``ctx``'s authenticator once, and admit ``keys``' client in ``keys``' domain."""
    with _LOCK:
        entry = _AUTH.get(id(ctx))
        if entry is None:
            auth, admitted = ThreadAuthenticator(ctx, log=_ZAP_LOG), _Admitted()
            auth.start()
            entry = _AUTH[id(ctx)] = (auth, admitted)
        auth, admitted = entry
        if keys.domain not in admitted.keys:
            admitted.keys[keys.domain] = {keys.client_public}
            auth.configure_curve_callback(domain=keys.domain, credentials_provider=admitted)


def secure(sock: zmq.Socket, keys: CurveKeys, server: bool) -> None:
    """Make ``sock`` (not yet bound or connected) a CURVE server (binds) or client (connects) of ``keys``."""
    if server:
        _admit(sock.context, keys)
        sock.setsockopt(zmq.ZAP_DOMAIN, keys.domain.encode())
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
