"""Offline: compress a whole video file (decode -> sample -> encode -> offline Token Dynamics) and inspect it.

File format (`.tdz`): one msgpack map, no pickle:
    {"format": "tokdyn-offline", "version": 1, "video": str (credentials redacted), "model": str, "rate_hz", "k",
     "base": [K, D] f32, "key_map": [T, gh, gw] uint, "timestamps": [T] f64, "thumbs": [T, s, s, 3] uint8,
     "tokens_seen": int, "inertia": float, "seconds": {"decode", "encode", "compress"}}
Arrays are stored as {"dtype", "shape", "data"} (compressor/serial.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import numpy as np

from frontends.keymap_colors import overlay
from vlm import ModelConfig, load_vlm
from compressor.offline import token_dynamics
from compressor.serial import pack_array, unpack_array
from stream.config import SourceConfig, redact_url
from stream.sampling import chunks, resize_frames
from stream.sources import open_source

FORMAT = "tokdyn-offline"
VERSION = 1
THUMB = 96  # thumbnail side stored per sampled frame (px), for `inspect`


def compress_file(video: str, output: str, config: ModelConfig, rate_hz: float = 2.0, budget: int = 32,
                  max_frames: int = 256, seed: int = 0) -> dict:
    """Compress `video` offline into `output`; returns the figures (also stored in the file)."""
    started = time.perf_counter()
    frames, stamps = [], []
    with open_source(video, SourceConfig()) as source:
        vlm = load_vlm(config)
        for chunk in chunks(source, rate_hz, 16, vlm.image_size, "offline"):
            frames.append(chunk.frames)
            stamps.append(chunk.timestamps)
            if sum(len(f) for f in frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"video {redact_url(video)!r}: expected at least one frame at {rate_hz} Hz, got none")
    video_frames = np.concatenate(frames)[:max_frames]  # [T, S, S, 3] uint8
    timestamps = np.concatenate(stamps)[:max_frames]
    decoded = time.perf_counter()
    tokens = np.concatenate([vlm.encode_frames(part).float().numpy()  # [T, gh, gw, D]
                             for part in np.array_split(video_frames, max(1, len(video_frames) // 16))])
    encoded = time.perf_counter()
    result = token_dynamics(tokens, k=min(budget, tokens.shape[0] * tokens.shape[1] * tokens.shape[2]), seed=seed)
    compressed = time.perf_counter()
    state = {
        "format": FORMAT, "version": VERSION, "video": redact_url(str(video)), "model": vlm.name, "rate_hz": rate_hz,
        "k": result.k, "base": result.base.float().numpy(), "key_map": result.key_map,
        "timestamps": timestamps, "thumbs": resize_frames(video_frames, THUMB),
        "tokens_seen": int(np.prod(tokens.shape[:3])), "inertia": float(result.inertia),
        "seconds": {"decode": decoded - started, "encode": encoded - decoded, "compress": compressed - encoded},
    }
    packed = {key: pack_array(v) if isinstance(v, np.ndarray) else v for key, v in state.items()}
    Path(output).write_bytes(msgpack.packb(packed, use_bin_type=True))
    return summary(state, Path(output).stat().st_size)


def load(path: str) -> dict:
    """Read a `.tdz` file; ValueError if it is not one."""
    state = msgpack.unpackb(Path(path).read_bytes(), raw=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ValueError(f"{path}: expected a {FORMAT} v{VERSION} file, got "
                         f"{state.get('format') if isinstance(state, dict) else type(state).__name__}")
    for key in ("base", "key_map", "timestamps", "thumbs"):
        state[key] = unpack_array(state[key])
    return state


def summary(state: dict, file_bytes: int) -> dict:
    """Figures of a loaded state: frames, tokens seen vs kept, compression ratio, timings."""
    key_map = state["key_map"]  # [T, gh, gw]
    k = int(state["k"])
    return {
        "video": state["video"], "model": state["model"], "frames": int(key_map.shape[0]),
        "grid": list(key_map.shape[1:]), "tokens_seen": state["tokens_seen"], "base_tokens": k,
        "compression_ratio": state["tokens_seen"] / k, "inertia": round(state["inertia"], 4),
        "file_bytes": file_bytes, "seconds": {s: round(v, 3) for s, v in state["seconds"].items()},
    }


def inspect_file(path: str, png: str | None = None, max_frames: int = 16) -> dict:
    """Figures of a `.tdz` file, and a PNG: row 1 sampled frames, row 2 the same with the key map in colours."""
    from PIL import Image

    state = load(path)
    thumbs, key_map = state["thumbs"], state["key_map"]
    pick = np.linspace(0, len(thumbs) - 1, min(max_frames, len(thumbs))).astype(int)
    top = np.concatenate(list(thumbs[pick]), axis=1)  # [s, n*s, 3]
    bottom = np.concatenate(list(overlay(thumbs[pick], key_map[pick])), axis=1)
    png_path = png or str(Path(path).with_suffix(".png"))
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(png_path)
    out = summary(state, Path(path).stat().st_size)
    used = np.bincount(key_map.reshape(-1).astype(np.int64), minlength=int(state["k"]))
    out.update(png=png_path, largest_cluster_share=round(float(used.max() / used.sum()), 4),
               clusters_used=int((used > 0).sum()))
    return out
