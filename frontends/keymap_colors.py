"""Key map colours: one colour per base token, the same in `tokdyn inspect` PNGs and the web console."""

from __future__ import annotations

import colorsys

import numpy as np


def palette(k: int) -> np.ndarray:
    """[k, 3] uint8 distinct colours (golden-angle hues), one per base token; colour i does not depend on k."""
    hues = (np.arange(k) * 0.618033988749895) % 1.0
    rgb = np.array([colorsys.hsv_to_rgb(h, 0.85, 0.95) for h in hues]).reshape(k, 3)
    return (rgb * 255).astype(np.uint8)


def hex_colours(k: int) -> list[str]:
    """The palette as k CSS colours ``#rrggbb`` (the console draws its legend and hover box with them)."""
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in palette(k).tolist()]


def overlay(thumbs: np.ndarray, key_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Frames [T, s, s, 3] with their key map [T, gh, gw] painted over in colours -> [T, s, s, 3] uint8."""
    s_h, s_w = thumbs.shape[1], thumbs.shape[2]
    colours = palette(int(key_map.max()) + 1)[key_map.astype(np.int64)]  # [T, gh, gw, 3]
    rows = np.arange(s_h) * key_map.shape[1] // s_h
    cols = np.arange(s_w) * key_map.shape[2] // s_w
    painted = colours[:, rows][:, :, cols]  # [T, s, s, 3] nearest-neighbour upsampling
    return (thumbs * (1 - alpha) + painted * alpha).astype(np.uint8)
