"""State files that cannot lie: checksum, format version, full validation, one error type, config mismatch."""

from __future__ import annotations

import copy
import random

import msgpack
import numpy as np
import pytest

from compressor.config import CompressorConfig
from compressor.errors import InvalidState
from compressor.registry import make_stream_compressor, restore_stream_compressor
from compressor.serial import dumps
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, timestamps

CONFIG = CompressorConfig(budget=6, recent_window=1, max_new_clusters=3, novelty_threshold=0.9, half_life_s=5.0)


def stream_state() -> bytes:
    """A state that has seen new clusters, merges and label tables: 12 chunks of changing content."""
    compressor = StreamingTokenDynamics(CONFIG)
    for i in range(12):
        compressor.update(clustered_tokens(3, centres=4, seed=i // 3), timestamps(3 * i, 3))
    assert compressor.merges and compressor.new_clusters
    return compressor.to_bytes()


def payload_of(data: bytes) -> dict:
    return msgpack.unpackb(msgpack.unpackb(data)["data"], raw=False, strict_map_key=False)["state"]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One random byte-level damage: flip bits, overwrite, insert, delete, truncate or extend."""
    b = bytearray(data)
    kind, at = rng.randrange(6), rng.randrange(len(b))
    if kind == 0:
        b[at] ^= 1 << rng.randrange(8)
    elif kind == 1:
        b[at:at + 8] = bytes(rng.randrange(256) for _ in range(8))
    elif kind == 2:
        b.insert(at, rng.randrange(256))
    elif kind == 3:
        del b[at:at + rng.randrange(1, 16)]
    elif kind == 4:
        del b[at:]
    else:
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return bytes(b)


def leaves(tree, path=()):
    """Every (path, value) leaf of a nested dict/list payload; packed arrays count as leaves."""
    if isinstance(tree, dict) and not {"dtype", "shape", "data"} <= set(tree):
        for key, value in tree.items():
            yield from leaves(value, path + (key,))
    else:
        yield path, tree


def mutate_payload(payload: dict, rng: random.Random) -> dict:
    """One well-formed but possibly inconsistent change to one leaf (re-sealed with a valid checksum later)."""
    out = copy.deepcopy(payload)
    paths = list(leaves(out))
    path, value = paths[rng.randrange(len(paths))]
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if isinstance(value, dict) and "data" in value:  # a packed array
        choice = rng.randrange(4)
        if choice == 0 and value["data"]:
            data = bytearray(value["data"])
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            value["data"] = bytes(data)
        elif choice == 1:
            value["dtype"] = rng.choice(["<f4", "<f8", "<i8", "<i4", "|u1", "|b1", "|O", "<U4"])
        elif choice == 2:
            value["shape"] = [n + rng.choice([-1, 1]) for n in value["shape"]] or [1]
        else:
            arr = np.frombuffer(value["data"], dtype=np.dtype(value["dtype"])).copy()
            if arr.size:
                choices = {"i": [-1, 0, 1, 2, 255, 10**6], "u": [0, 1, 2, 255], "b": [False, True]}
                arr[rng.randrange(arr.size)] = rng.choice(choices.get(arr.dtype.kind, [np.nan, np.inf, -1.0, 1e30]))
            value["data"] = arr.tobytes()
    elif isinstance(value, bool):
        parent[key] = not value
    elif isinstance(value, int):
        parent[key] = rng.choice([value + 1, value - 1, -1, 0, 2**40, value * 2, "7", None])
    elif isinstance(value, float):
        parent[key] = rng.choice([value + 1.0, -value - 1.0, float("nan"), float("inf"), "x"])
    elif isinstance(value, list):
        parent[key] = rng.choice([value[:-1], value + [1], [v + 1 for v in value if isinstance(v, int)], None])
    else:
        parent[key] = rng.choice([None, 3, "token_dynamics", [], {}])
    if rng.random() < 0.1:  # sometimes drop or add a key instead
        if rng.random() < 0.5:
            parent.pop(key, None)
        else:
            parent["extra"] = 1
    return out


def test_a_thousand_damaged_files_are_refused_or_equal() -> None:
    # given a real checkpoint
    good = stream_state()
    rng = random.Random(0)
    refused = equal = 0
    for _ in range(1000):
        bad = mutate_bytes(good, rng)
        # when it is damaged anywhere and restored
        try:
            restored = StreamingTokenDynamics.from_bytes(bad)
        except InvalidState:
            refused += 1
            continue
        # then it was refused with the one error type, or it is exactly the original state
        assert restored.to_bytes() == good
        equal += 1
    assert refused + equal == 1000 and refused > 950


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NaN or overflow from an accepted state is a failure
def test_a_thousand_inconsistent_states_are_refused_or_work() -> None:
    # given a real checkpoint, changed leaf by leaf and re-sealed with a valid checksum (a buggy writer)
    good = stream_state()
    payload = payload_of(good)
    rng = random.Random(1)
    refused = worked = 0
    for i in range(1000):
        data = dumps("token_dynamics", mutate_payload(payload, rng))
        try:
            restored = StreamingTokenDynamics.from_bytes(data)
        except InvalidState as exc:
            assert "expected" in str(exc)
            refused += 1
            continue
        # then a state that was accepted is one that update, snapshot and to_bytes work on
        restored.update(clustered_tokens(3, centres=4, seed=100 + i), timestamps(100, 3))
        snapshot = restored.snapshot()
        assert np.all(np.isfinite(snapshot.base)) and np.all(np.isfinite(snapshot.motion))
        assert snapshot.base.shape[0] <= CONFIG.base_budget
        restored.key_map()
        StreamingTokenDynamics.from_bytes(restored.to_bytes())
        worked += 1
    assert refused > 500 and worked > 0


def test_old_schema_and_other_methods_refused() -> None:
    old = msgpack.packb({"schema": 1, "method": "token_dynamics", "state": {}})
    with pytest.raises(InvalidState, match="older version"):
        restore_stream_compressor(old)
    with pytest.raises(InvalidState, match="expected method 'token_dynamics', got 'tome'"):
        StreamingTokenDynamics.from_bytes(make_stream_compressor(CompressorConfig(method="tome")).to_bytes())


@pytest.mark.parametrize("change", [{"budget": 8}, {"adaptive": True}, {"recent_window": 0},
                                    {"max_new_clusters": 4}])
def test_checkpoint_with_another_budget_is_refused(change: dict) -> None:
    # given a checkpoint made with budget 6 (K range 5..5, 1 recent token, 3 new clusters per chunk)
    good = stream_state()
    wanted = CompressorConfig(**{**CONFIG.to_dict(), **change})
    # when the stream is restarted with another shape, then it is refused (not re-fitted), naming the field
    with pytest.raises(InvalidState, match=f"{next(iter(change))}"):
        restore_stream_compressor(good, wanted)


def test_checkpoint_takes_new_tunables() -> None:
    # given a checkpoint, when restored with another half-life and threshold, then those apply from now on
    wanted = CompressorConfig(**{**CONFIG.to_dict(), "half_life_s": 60.0, "novelty_threshold": 0.5})
    restored = restore_stream_compressor(stream_state(), wanted)
    assert restored.config == wanted and restored.frames_seen == 36
