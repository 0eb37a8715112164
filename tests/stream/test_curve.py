"""CURVE on the data sockets: only peers holding the deployment's keys get a message through; the rest are
refused at the handshake and counted. Real sockets on loopback."""

from __future__ import annotations

import pickle
import time

import numpy as np
import zmq

from actors.config import TransportConfig
from stream.codec import Kind, Message
from stream.curve import CurveKeys
from stream.transport import Socket


def _msg(seq: int) -> Message:
    return Message(Kind.TOKENS, "cam", seq, {}, {"x": np.full(4, seq, np.float32)})


def _drain(sock: Socket, seconds: float) -> list[int]:
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = sock.recv(100)
        if msg is not None:
            got.append(msg.seq)
    return got


def test_only_the_deployments_clients_reach_a_curve_server() -> None:
    """Given a CURVE PULL of one deployment, when a plain peer, a peer of another deployment, a peer that
    knows the server key but not the client key, and a peer of this deployment send, then only the last
    message arrives and the three others are counted as refused peers."""
    keys, other = CurveKeys.generate(), CurveKeys.generate()
    impostor = CurveKeys(keys.server_public, keys.server_secret, other.client_public, other.client_secret)
    with Socket.open("pull+bind:tcp://127.0.0.1:*", keys=keys) as pull:
        peers = [Socket.open(pull.peer_spec()), Socket.open(pull.peer_spec(), keys=other),
                 Socket.open(pull.peer_spec(), keys=impostor)]
        good = Socket.open(pull.peer_spec(), keys=keys)
        try:
            for i, peer in enumerate(peers):
                peer.send(_msg(100 + i), timeout_ms=0)
            assert good.send(_msg(1), timeout_ms=5000)
            got = _drain(pull, 2.0)
            assert got == [1]
            assert pull.stats.refused >= 3 and pull.stats.bad == 0
        finally:
            for peer in [*peers, good]:
                peer.close()


def test_pub_sub_snapshots_travel_encrypted_only_between_keyed_peers() -> None:
    """Given a CURVE SUB (the LLM side), a keyed PUB's messages arrive and a plain PUB's never do."""
    keys = CurveKeys.generate()
    with Socket.open("sub+bind:tcp://127.0.0.1:*", keys=keys) as sub, \
            Socket.open(sub.peer_spec(), keys=keys) as pub, Socket.open(sub.peer_spec()) as plain:
        deadline = time.monotonic() + 10
        got: list[int] = []
        while 7 not in got:
            assert time.monotonic() < deadline, "the keyed publisher never got through"
            plain.send(_msg(66), timeout_ms=0)
            pub.send(_msg(7), timeout_ms=0)
            got += _drain(sub, 0.2)
        assert 66 not in got and sub.stats.refused >= 1


def test_keys_never_show_and_survive_pickling() -> None:
    """The keys travel to actors pickled inside the config; no repr (logs, tracebacks) shows a key."""
    transport = TransportConfig()
    keys = transport.keys
    assert isinstance(keys, CurveKeys) and zmq.has("curve")
    for text in (repr(transport), repr(keys), str(keys)):
        for key in (keys.server_secret, keys.client_secret, keys.client_public, keys.server_public):
            assert key.decode() not in text
    again = pickle.loads(pickle.dumps(transport))
    assert again.keys == keys and again == transport
    assert TransportConfig().keys != keys  # one key set per deployment
    assert TransportConfig(curve=False).keys is None
