"""Long-stream section of bench/compressor.py: a camera that runs for hours, content that keeps changing.

Content: 1 frame per media second, in episodes of ``episode_s`` seconds that cycle through real clips in
sequence (vtest.avi, bigbuckbunny.mp4, slowed or looped to fill the episode) and, where the ``scenes``
package exists, generated scenes (a new seed each time). Every episode gets its own view of its clip (crop,
zoom, mirror, colour-channel order picked by the episode number), so no two episodes repeat tokens.
Tokens: 16x16 RGB pixel patches at 224x224 (196 per frame, 768 values), made chunk by chunk.

One stream runs the whole way: the live memory (``StreamingTokenDynamics`` with the default recency) and,
beside it, the segments a memory actor writes (``SegmentStore``, in a temporary folder). Measured (the
issue's targets in brackets):
    latest episode at the end: live fidelity / a fresh stream's on the same frames          [>= 0.98]
    first episode at the end through the window query / live fidelity right after it       [>= 0.95]
    window memory of the first episode / offline Token Dynamics fitted on it alone, same K  [>= 0.97]
    per-chunk update cost after the whole stream / after 1 minute (round-robin, same chunk) [<= 1.2]
    bytes of live state + segments per stream-day (segments scaled from the run, state as is) [<= 50 MB]
    new clusters created after the first 10% of the stream (recency at work)
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from compressor.config import CompressorConfig
from compressor.metrics import fidelity_keymap
from compressor.offline import token_dynamics
from compressor.segments import SegmentStore
from compressor.streaming import StreamingTokenDynamics
from stream.samples import sample_path
from testkit.token_sources import pixel_patch_tokens

FRAMES_PER_CHUNK = 4
STORE_SIZE = 256  # decoded frames are kept at 256x256 (the tokens see 224x224 crops of them)


@functools.lru_cache(maxsize=4)
def decode_small(path: Path, max_frames: int) -> np.ndarray:
    """Every frame of ``path`` (up to ``max_frames``) resized to ``[T, 256, 256, 3]`` uint8 (decoded once per
    process: bench/compressor.py builds two Contents from the same clips); callers never write to it."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(frame.reformat(width=STORE_SIZE, height=STORE_SIZE, format="rgb24").to_ndarray())
            if len(out) >= max_frames:
                break
    return np.stack(out)


class Content:
    """Frame ``i`` (media second ``i``) of the ever-changing stream: ``frames(start, count)`` ->
    ``[count, 224, 224, 3]`` uint8."""

    def __init__(self, episode_s: int) -> None:
        self.episode_s = episode_s
        self.clips = {"vtest": decode_small(sample_path("vtest"), 800),
                      "bigbuckbunny": decode_small(sample_path("bigbuckbunny"), 200)}
        try:
            from scenes.video import SceneVideo
            from scenes.scene import SceneSpec
            self._scene = lambda seed: SceneVideo(SceneSpec(seed=seed, seconds=episode_s, fps=1.0))
            self.sources = ("vtest", "bigbuckbunny", "scene")
        except ImportError:
            self._scene = None
            self.sources = ("vtest", "bigbuckbunny")
        self._scenes: dict[int, object] = {}

    def source(self, episode: int) -> str:
        return self.sources[episode % len(self.sources)]

    def frame(self, i: int) -> np.ndarray:
        episode, t = divmod(i, self.episode_s)
        name = self.source(episode)
        if name == "scene":
            if episode not in self._scenes:  # planned once per episode (setdefault would plan it every frame)
                self._scenes[episode] = self._scene(episode)
            video = self._scenes[episode]
            image = video.frame(t)[0]
            image = np.asarray(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
                width=STORE_SIZE, height=STORE_SIZE).to_ndarray())
        else:
            clip = self.clips[name]
            image = clip[(t * clip.shape[0]) // self.episode_s if name == "vtest" else t % clip.shape[0]]
        return view(image, episode)

    def frames(self, start: int, count: int) -> np.ndarray:
        return np.stack([self.frame(i) for i in range(start, start + count)])


def view(image: np.ndarray, episode: int) -> np.ndarray:
    """The episode's own view of a ``[256, 256, 3]`` frame: a 224x224 crop (offset and zoom by episode),
    mirrored on odd cycles, colour channels in one of 6 orders."""
    rng = np.random.default_rng(episode)
    size = int(rng.integers(160, STORE_SIZE + 1))
    y, x = rng.integers(0, STORE_SIZE - size + 1, size=2)
    crop = image[y:y + size, x:x + size]
    if size != 224:
        crop = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24").reformat(
            width=224, height=224).to_ndarray()
    if rng.integers(2):
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop[..., rng.permutation(3)])


def tokens_of(content: Content, start: int, count: int) -> torch.Tensor:
    """``[count, 14, 14, 768]`` pixel-patch tokens of frames ``start ..``."""
    return pixel_patch_tokens(content.frames(start, count))


def time_update(states: dict[str, bytes], chunks: list[tuple[torch.Tensor, np.ndarray]],
                rounds: int) -> dict[str, float]:
    """Median thread CPU seconds of one update on a fresh copy of each state, over every ``(chunk, times)`` and
    ``rounds`` rounds, timed round-robin (the same chunks and machine load for every state)."""
    spent: dict[str, list[float]] = {name: [] for name in states}
    for _ in range(rounds):
        for chunk, times in chunks:
            for name, data in states.items():
                copy = StreamingTokenDynamics.from_bytes(data)
                start = time.thread_time()
                copy.update(chunk, times)
                spent[name].append(time.thread_time() - start)
    return {name: statistics.median(values) for name, values in spent.items()}


def bench_long_stream(media_s: int, episode_s: int, segment_s: float, rounds: int, **config_changes) -> dict:
    """Run the long stream once and measure every figure of the module docstring (default config, K=32,
    with ``segment_s`` and any ``config_changes``)."""
    config = CompressorConfig(budget=32, segment_s=segment_s, **config_changes)
    content = Content(episode_s)
    live = StreamingTokenDynamics(config)
    folder = tempfile.TemporaryDirectory(prefix="tokdyn-long-")
    segments = SegmentStore(folder.name, config)
    first = tokens_of(content, 0, episode_s)
    states: dict[str, bytes] = {}
    first_fidelity = None
    new_clusters_at_10pct = None
    started = time.perf_counter()
    for frame in range(0, media_s, FRAMES_PER_CHUNK):
        chunk = first[frame:frame + FRAMES_PER_CHUNK] if frame < episode_s else \
            tokens_of(content, frame, FRAMES_PER_CHUNK)
        times = np.arange(frame, frame + chunk.shape[0], dtype=np.float64)
        live.update(chunk, times)
        segments.update(chunk, times)
        done = frame + chunk.shape[0]
        if done == 60:
            states["1 minute"] = live.to_bytes()
        if done == episode_s:
            first_fidelity = fidelity_keymap(first, torch.from_numpy(live.snapshot().base.copy()),
                                             live.key_map(0, episode_s))
        if new_clusters_at_10pct is None and done >= media_s // 10:
            new_clusters_at_10pct = live.new_clusters
    stream_s = time.perf_counter() - started
    states["end"] = live.to_bytes()
    # latest episode: live memory vs a fresh stream on the same frames
    latest = tokens_of(content, media_s - episode_s, episode_s)
    fresh = StreamingTokenDynamics(config)
    for i in range(0, episode_s, FRAMES_PER_CHUNK):
        fresh.update(latest[i:i + FRAMES_PER_CHUNK], np.arange(i, i + FRAMES_PER_CHUNK, dtype=np.float64))
    latest_live = fidelity_keymap(latest, torch.from_numpy(live.snapshot().base.copy()),
                                  live.key_map(media_s - episode_s, media_s))
    latest_fresh = fidelity_keymap(latest, torch.from_numpy(fresh.snapshot().base.copy()), fresh.key_map())
    # first episode at the end, through the window query; and offline Token Dynamics on it alone
    start = time.perf_counter()
    window = segments.window(0.0, episode_s - 1.0)
    window_s = time.perf_counter() - start
    window_fidelity = fidelity_keymap(first, torch.from_numpy(window.snapshot.base.copy()), window.key_map)
    offline = token_dynamics(first, config.base_budget, seed=config.seed)
    offline_fidelity = float(torch.nn.functional.cosine_similarity(offline.reconstruct(), first, dim=-1).mean())
    # update cost: the same next chunk on copies of the 1-minute and the end state
    following = [(tokens_of(content, media_s + i * FRAMES_PER_CHUNK, FRAMES_PER_CHUNK),
                  media_s + i * FRAMES_PER_CHUNK + np.arange(FRAMES_PER_CHUNK, dtype=np.float64)) for i in range(8)]
    cost = time_update(states, following, rounds)
    state_bytes, segment_bytes = len(states["end"]), segments.nbytes()
    # segments grow with media time; the live state does not (its key map keeps keymap_frames recent frames)
    per_day = segment_bytes * 86400 / media_s + state_bytes
    folder.cleanup()
    return {
        "media_s": media_s, "episode_s": episode_s, "segment_s": segment_s, "fps": 1.0,
        "half_life_s": config.half_life_s, "sources": list(content.sources), "K": config.base_budget,
        "stream_wall_s": stream_s,
        "latest_live": latest_live, "latest_fresh": latest_fresh, "latest_ratio": latest_live / latest_fresh,
        "first_when_seen": first_fidelity, "first_via_window": window_fidelity,
        "first_ratio": window_fidelity / first_fidelity, "window_segments": window.segments, "window_s": window_s,
        "offline_on_window": offline_fidelity, "window_vs_offline": window_fidelity / offline_fidelity,
        "update_ms_1min": cost["1 minute"] * 1e3, "update_ms_end": cost["end"] * 1e3,
        "update_ratio": cost["end"] / cost["1 minute"],
        "state_bytes": state_bytes, "segment_bytes": segment_bytes, "bytes_per_day": per_day,
        "new_clusters_total": live.new_clusters, "new_clusters_after_10pct": live.new_clusters - new_clusters_at_10pct,
        "merges": live.merges,
    }


TARGETS = (  # (key, comparison, target, label)
    ("latest_ratio", ">=", 0.98, "latest episode at the end vs a fresh stream"),
    ("first_ratio", ">=", 0.95, "first episode at the end (window query) vs right after it"),
    ("window_vs_offline", ">=", 0.97, "window memory vs offline Token Dynamics on the window"),
    ("update_ratio", "<=", 1.2, "update cost at the end vs after 1 minute"),
    ("bytes_per_day", "<=", 50e6, "live state + segments per stream-day (bytes)"),
)


def long_stream_lines(result: dict) -> list[str]:
    """The section's table rows: figure, measured, target, met or missed."""
    lines = []
    for key, op, target, label in TARGETS:
        value = result[key]
        ok = value >= target if op == ">=" else value <= target
        shown = f"{value / 1e6:.1f} MB" if key == "bytes_per_day" else f"{value:.3f}"
        lines.append(f"{label:<58} {shown:>10}  target {op} {target:g}  {'met' if ok else 'MISSED'}")
    lines.append(f"{'new clusters after the first 10% of the stream':<58} {result['new_clusters_after_10pct']:>10}"
                 f"  (of {result['new_clusters_total']})")
    return lines
