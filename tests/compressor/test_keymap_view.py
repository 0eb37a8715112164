"""The console's key map view: the newest frame's key map, and when each base token was first / last seen."""

from __future__ import annotations

import numpy as np

from compressor.config import CompressorConfig
from compressor.keymap_view import latest_key_map
from compressor.stream_baselines import WindowedUniform
from compressor.streaming import StreamingTokenDynamics
from tests.compressor.helpers import clustered_tokens, feed


def test_the_view_is_the_newest_frame_of_the_key_map_with_token_times() -> None:
    # given a stream of 10 frames at 0.5 s (timestamps 0.0 .. 4.5) compressed to at most 6 base tokens
    compressor = StreamingTokenDynamics(CompressorConfig(budget=6, seed=0))
    feed(compressor, clustered_tokens(frames=10, grid=(3, 4), dim=8, centres=9, noise=0.2, seed=1), 3)
    # when the view is taken
    view = latest_key_map(compressor, t=4.5)
    # then it is the last frame's row of the key map, ids into the snapshot's base
    k = compressor.snapshot().base.shape[0]
    assert view.ids.shape == (3, 4) and np.array_equal(view.ids, compressor.key_map(9, 10)[0])
    assert view.first_seen.shape == view.last_seen.shape == (k,)
    # and every base token was seen inside the stream's span, first no later than last
    assert np.all(compressor.t_start <= view.first_seen) and np.all(view.first_seen <= view.last_seen)
    assert np.all(view.last_seen <= compressor.t_end)
    # and a token present in the newest frame was last seen then
    assert np.all(view.last_seen[np.unique(view.ids)] == compressor.t_end)
    as_json = view.to_dict()
    assert as_json["grid"] == [3, 4] and len(as_json["tokens"]) == k and as_json["version"] == compressor.version


def test_no_view_before_the_first_chunk_or_for_a_method_without_a_key_map() -> None:
    assert latest_key_map(StreamingTokenDynamics(CompressorConfig(budget=4)), t=0.0) is None
    uniform = WindowedUniform(CompressorConfig(method="uniform", budget=4))
    feed(uniform, clustered_tokens(frames=4, grid=(3, 4), dim=8, centres=3, noise=0.1, seed=0), 2)
    assert latest_key_map(uniform, t=1.0) is None
