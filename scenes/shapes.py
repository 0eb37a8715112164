"""The shapes and colours scene objects are drawn with: pixel masks of a shape at a sub-pixel centre.

Every shape fits in a disc of radius ``REACH * size`` around its centre and contains that centre, which is
what lets the scene planner guarantee that no object ever hides another object's centre pixel.
"""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross")
# Saturated and far apart in hue, so each stays distinct on the grey background after H.264 and resizing.
COLOUR_RGB = {
    "red": (225, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 235),
    "yellow": (235, 215, 30),
    "magenta": (215, 40, 215),
    "cyan": (30, 210, 220),
}
COLOURS = tuple(COLOUR_RGB)
REACH = 0.6  # every shape lies within REACH * size of its centre (a square's corner: 0.42 * sqrt(2))


def _star(points: int = 5, outer: float = 0.5, inner: float = 0.23) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _triangle() -> np.ndarray:
    angles = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3  # pointing up; the centroid is the centre
    return 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


_ARM = 0.17  # half-width of the cross's arms, as a fraction of the size
POLYGONS = {  # vertices (x, y) in units of the object's size, centred on (0, 0); y points down
    "square": np.array([(-0.42, -0.42), (0.42, -0.42), (0.42, 0.42), (-0.42, 0.42)]),
    "triangle": _triangle(),
    "star": _star(),
    "cross": np.array([(-_ARM, -0.5), (_ARM, -0.5), (_ARM, -_ARM), (0.5, -_ARM), (0.5, _ARM), (_ARM, _ARM),
                       (_ARM, 0.5), (-_ARM, 0.5), (-_ARM, _ARM), (-0.5, _ARM), (-0.5, -_ARM), (-_ARM, -_ARM)]),
}


def _inside_polygon(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: bool array shaped like ``px`` / ``py``, True inside the polygon ``vertices`` [V, 2]."""
    inside = np.zeros(np.broadcast(px, py).shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside


def shape_mask(shape: str, size: float, cx: float, cy: float, height: int, width: int
               ) -> tuple[tuple[slice, slice], np.ndarray]:
    """Pixels of ``shape`` (``size`` pixels across) centred at continuous pixel coordinates (cx, cy).

    Pixel (row r, column c) covers [c, c+1) x [r, r+1) and is inside when its centre is.
    Returns ((rows, cols) slices of the bounding box clipped to the frame, bool mask [h, w] of that box).
    """
    if shape not in SHAPES:
        raise ValueError(f"shape: expected one of {SHAPES}, got {shape!r}")
    reach = REACH * size
    x0, x1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach) + 1)
    # Offsets of pixel centres from the shape's centre, in units of its size: [h, 1] and [1, w].
    dy = ((np.arange(y0, y1) + 0.5 - cy) / size)[:, None]
    dx = ((np.arange(x0, x1) + 0.5 - cx) / size)[None, :]
    if shape == "circle":
        mask = dx * dx + dy * dy <= 0.25
    else:
        mask = _inside_polygon(dx, dy, POLYGONS[shape])
    return (slice(y0, y1), slice(x0, x1)), mask
