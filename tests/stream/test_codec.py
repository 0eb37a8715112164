"""Wire codec: round trips (hypothesis), bfloat16 bits, validation and fuzzing (only ProtocolError)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stream import codec
from stream.codec import (BFLOAT16, Kind, Message, ProtocolError, bf16_to_float32, chunk_to_message, decode, encode,
                          eos, float32_to_bf16, message_to_chunk)
from stream.frames import Chunk
from stream.tensors import from_wire_array, to_wire_array

DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool"]


def roundtrip(msg: Message) -> Message:
    # bytes() mimics what arrives from the network: separate memory, not the sender's arrays
    return decode([bytes(f) for f in encode(msg)])


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)))


@settings(max_examples=60, deadline=None)
@given(arrays=st.dictionaries(st.text(min_size=1, max_size=8), arrays, max_size=4),
       meta=st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
                                                         st.text(max_size=20), st.lists(st.floats(allow_nan=False)))),
       kind=st.sampled_from(list(Kind)), seq=st.integers(0, 2**63 - 1))
def test_roundtrip_any_arrays(arrays, meta, kind, seq):
    """Given arrays of every whitelisted dtype and shape (incl. empty and 0-d), decode(encode(m)) == m."""
    msg = Message(kind, "cam-1", seq, meta, arrays)
    out = roundtrip(msg)
    assert (out.kind, out.stream_id, out.seq, out.meta) == (kind, "cam-1", seq, meta)
    assert out.arrays.keys() == arrays.keys()
    for name, arr in arrays.items():
        assert same_array(out.arrays[name], arr)


@settings(max_examples=40, deadline=None)
@given(arr=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=30)),
       step=st.integers(1, 3), transpose=st.booleans())
def test_roundtrip_non_contiguous(arr, step, transpose):
    view = arr[::step]
    view = view.swapaxes(0, 1) if transpose else view
    assert same_array(roundtrip(Message(Kind.TOKENS, "s", 0, {}, {"x": view})).arrays["x"], np.ascontiguousarray(view))


def test_roundtrip_big_endian_and_large():
    big = np.arange(12, dtype=">f4").reshape(3, 4)
    assert np.array_equal(roundtrip(Message(Kind.TOKENS, "s", 0, {}, {"x": big})).arrays["x"], big)
    large = np.random.default_rng(0).random((16, 196, 896)).astype(np.float16)  # one real chunk of tokens
    frames = encode(Message(Kind.TOKENS, "s", 0, {}, {"x": large}))
    assert len(frames) == 2 and isinstance(frames[1], memoryview)
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), large)  # zero-copy on send
    out = decode(frames)
    assert np.shares_memory(out.arrays["x"], large) and not out.arrays["x"].flags.writeable  # zero-copy on receive
    assert same_array(out.arrays["x"], large)


@settings(max_examples=50, deadline=None)
@given(values=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=20)))
def test_bfloat16_bits_match_torch(values):
    """float32 -> bf16 bits rounds like torch; the bits travel unchanged; torch tensors come back equal."""
    tensor = torch.from_numpy(values.copy()).to(torch.bfloat16)
    wire = to_wire_array(tensor)
    assert wire.dtype == BFLOAT16 and wire.shape == values.shape
    ours = float32_to_bf16(values)
    finite = np.isfinite(values)
    assert np.array_equal(ours.view(np.uint16)[finite], wire.view(np.uint16)[finite])
    back = from_wire_array(roundtrip(Message(Kind.TOKENS, "s", 0, {}, {"t": wire})).arrays["t"])
    assert back.dtype == torch.bfloat16 and torch.equal(back.view(torch.int16), tensor.view(torch.int16))
    np.testing.assert_array_equal(bf16_to_float32(wire), tensor.float().numpy())


def test_float16_tensor_roundtrip():
    tensor = torch.randn(2, 14, 14, 8).half()
    back = from_wire_array(roundtrip(Message(Kind.TOKENS, "s", 1, {}, {"t": to_wire_array(tensor)})).arrays["t"])
    assert back.dtype == torch.float16 and torch.equal(back, tensor)


def test_chunk_message_roundtrip_and_eos():
    chunk = Chunk("cam", 7, np.zeros((2, 8, 8, 3), np.uint8), np.array([0.0, 0.5]), np.array([1.0, 1.5]))
    out = message_to_chunk(roundtrip(chunk_to_message(chunk)))
    assert (out.stream_id, out.seq) == ("cam", 7) and np.array_equal(out.timestamps, chunk.timestamps)
    end = roundtrip(eos("cam", 8, "file ended"))
    assert end.kind is Kind.EOS and end.meta == {"reason": "file ended"}
    with pytest.raises(ProtocolError, match="expected a frames message"):
        message_to_chunk(end)
    bad = Message(Kind.FRAMES, "cam", 0, {}, {"frames": np.zeros((2, 8, 8), np.uint8),
                                            "timestamps": np.zeros(2), "arrivals": np.zeros(2)})
    with pytest.raises(ProtocolError, match=r"expected uint8 \[T, H, W, 3\]"):
        message_to_chunk(roundtrip(bad))


@pytest.mark.parametrize("msg, error", [
    (Message(Kind.TOKENS, "", 0), "stream_id"),
    (Message(Kind.TOKENS, "s", -1), "seq"),
    (Message(Kind.TOKENS, "s", 0, {}, {"x": np.zeros(3, np.complex64)}), "whitelist"),
    (Message(Kind.TOKENS, "s", 0, {}, {"x": [1, 2]}), "numpy.ndarray"),
    (Message(Kind.TOKENS, "s", 0, {}, {f"a{i}": np.zeros(1) for i in range(codec.MAX_ARRAYS + 1)}), "at most"),
    (Message(Kind.TOKENS, "s", 0, {"t": np.float32(1.0)}), "plain Python values"),
    (Message(Kind.TOKENS, "s", 0, {}, {3: np.zeros(1)}), "names must be str"),
])
def test_encode_rejects_what_decode_would(msg, error):
    with pytest.raises((TypeError, ValueError), match=error):
        encode(msg)


def _header(frames) -> dict:
    return msgpack.unpackb(frames[0], raw=False)


def _with_header(frames, **changes) -> list:
    header = _header(frames)
    header.update(changes)
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


GOOD = encode(Message(Kind.TOKENS, "s", 3, {"t": [0.5]}, {"x": np.zeros((4, 100), np.float32),
                                                        "small": np.arange(3, dtype=np.int64)}))


@pytest.mark.parametrize("frames, error", [
    ([], "non-empty"),
    ([b"\xc1"], "not valid msgpack"),
    ([msgpack.packb([1, 2])], "expected a map"),
    (_with_header(GOOD, v=2), "schema version"),
    (_with_header(GOOD, k="video"), "kind"),
    (_with_header(GOOD, s=5), "stream_id"),
    (_with_header(GOOD, q=-3), "seq"),
    (_with_header(GOOD, m=[1]), "meta"),
    (_with_header(GOOD, a=[["x", "float32", [4, 100], 9], ["small", "int64", [3], b"\0" * 24]]), "frame index"),
    (_with_header(GOOD, a=[["x", "object", [4, 100], 1], ["small", "int64", [3], b"\0" * 24]]), "whitelist"),
    (_with_header(GOOD, a=[["x", "float32", [4, 99], 1], ["small", "int64", [3], b"\0" * 24]]), "buffer has 1600"),
    (_with_header(GOOD, a=[]), "referenced"),
    (_with_header(GOOD, a=[["x", "float32", [-4, 100], 1], ["small", "int64", [3], b"\0" * 24]]), "bad shape"),
    (GOOD[:1], "frame index"),
    ([GOOD[0], bytes(GOOD[1])[:-1]], "buffer has"),
    ([msgpack.packb({"v": 1, "k": "eos", "s": "s", "q": 0, "m": {"t": msgpack.ExtType(5, b"x")}, "a": []})],
     "extension type"),
])
def test_decode_rejects_with_clear_protocol_error(frames, error):
    with pytest.raises(ProtocolError, match=error):
        decode(frames)


def test_decode_size_limit():
    with pytest.raises(ProtocolError, match="limit 100"):
        decode(GOOD, max_bytes=100)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_fuzz_random_bytes_only_protocol_error(data):
    try:
        decode(data)
    except ProtocolError:
        pass


header_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                                       st.text(max_size=10), st.binary(max_size=40)),
                             lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                             max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["v", "k", "s", "q", "m", "a", "extra"]), value=header_values,
       spec_field=st.integers(0, 3), drop_frame=st.booleans())
def test_fuzz_mutated_headers_only_protocol_error(key, value, spec_field, drop_frame):
    """Replace one header field (or one field of an array spec) by anything msgpack can carry."""
    header = _header(GOOD)
    if key == "a":
        header["a"][0][spec_field] = value
    else:
        header[key] = value
    frames = [msgpack.packb(header, use_bin_type=True), *GOOD[1:]]
    try:
        decode(frames[:-1] if drop_frame else frames)
    except ProtocolError:
        pass
