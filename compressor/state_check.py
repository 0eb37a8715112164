"""Validation of restored compressor state: every key, dtype, shape, id range and count, against each other.

A state file either restores into a state that ``update``, ``snapshot`` and ``to_bytes`` work on, or is
refused with ``InvalidState`` naming the first thing that is wrong. The checksum (``serial.py``) catches
damaged bytes; these checks catch well-formed files that do not describe a consistent state (a bug in a
writer, a hand-edited file, another version's layout).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.errors import InvalidState
from compressor.serial import unpack_array


def expect(ok: bool, what: str, expected: str, got: Any) -> None:
    """Raise ``InvalidState("<what>: expected <expected>, got <got>")`` unless ``ok``."""
    if not ok:
        text = repr(got)
        raise InvalidState(f"{what}: expected {expected}, got {text[:120]}")


def keys(state: Any, what: str, names: set[str]) -> dict[str, Any]:
    """``state`` as a dict with exactly the keys ``names``."""
    expect(isinstance(state, dict), what, "a map", type(state).__name__)
    expect(set(state) == names, what, f"keys {sorted(names)}", sorted(map(str, state)))
    return state


def integer(value: Any, what: str, low: int = 0, high: int = 2**62) -> int:
    """``value`` as an int in ``[low, high]`` (bool is not an int)."""
    expect(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, what,
           f"an int in [{low}, {high}]", value)
    return int(value)


def real(value: Any, what: str) -> float:
    """``value`` as a finite float."""
    expect(isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value), what,
           "a finite number", value)
    return float(value)


def array(packed: Any, what: str, dtype: Any, shape: tuple[int, ...], finite: bool = False) -> np.ndarray:
    """Unpack ``packed`` and check its dtype and shape (``-1`` in ``shape`` matches any length); a writable
    copy. ``finite``: no NaN/Inf anywhere."""
    keys(packed, what, {"dtype", "shape", "data"})
    expect(packed["dtype"] == np.dtype(dtype).str, f"{what}.dtype", np.dtype(dtype).str, packed["dtype"])
    got = packed["shape"]
    expect(isinstance(got, list) and len(got) == len(shape) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 and (want < 0 or n == want)
        for n, want in zip(got, shape)), f"{what}.shape", str(list(shape)), got)
    out = unpack_array(packed).copy()
    if finite:
        expect(bool(np.all(np.isfinite(out))), what, "finite values", "NaN/Inf")
    return out


def ids(values: np.ndarray, what: str, low: int, high: int) -> None:
    """Every value of an integer array is in ``[low, high)``."""
    if values.size:
        expect(int(values.min()) >= low and int(values.max()) < high, what, f"ids in [{low}, {high})",
               f"[{int(values.min())}, {int(values.max())}]")


# Largest magnitude a restored running statistic may have: far above any count or media time (a year of
# 1,000 tokens/s is 3e10), far below float32 overflow when features are computed from it.
MAX_STATISTIC = 1e15


def same_layout(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    """``got`` has the names, dtypes and shapes of ``want`` (a freshly built reference, every slot at its
    initial value), and every float is finite and at most ``MAX_STATISTIC`` in magnitude, or equal to the
    reference's non-finite initial value (e.g. +inf for a "first seen" that has not happened)."""
    expect(set(got) == set(want), what, f"arrays {sorted(want)}", sorted(got))
    for name, ref in want.items():
        value = got[name]
        expect(value.dtype == ref.dtype and value.shape == ref.shape, f"{what}.{name}",
               f"{ref.dtype} {ref.shape}", f"{value.dtype} {value.shape}")
        if value.dtype.kind == "f":
            ok = (np.isfinite(value) & (np.abs(value) <= MAX_STATISTIC)) | (~np.isfinite(ref) & (value == ref))
            expect(bool(ok.all()), f"{what}.{name}", f"finite values within {MAX_STATISTIC:g} (or the initial "
                   "value)", value[~ok][:3].tolist())


def clusters(counts: np.ndarray, norm_sums: np.ndarray, first: np.ndarray, active: np.ndarray, sums: np.ndarray,
             centroids: np.ndarray, k_max: int, tokens_seen: int) -> None:
    """The per-cluster arrays of a streaming Token Dynamics state (``[S]`` and ``[S, D]``) agree: 1..k_max
    active clusters with positive weights no larger than the tokens seen, sums of unit tokens no longer than
    their (equally decayed) counts, unit centroids, first-token indices inside the stream."""
    k = int(active.sum())
    expect(1 <= k <= k_max, "active", f"1..{k_max} active clusters", k)
    weight, length = counts[active], np.linalg.norm(sums[active].astype(np.float64), axis=1)
    expect(bool(np.all(weight > 0) and np.all(weight <= tokens_seen) and np.all(length <= weight * 1.001 + 1e-3)),
           "counts/sums", "0 < |sum| <= count <= tokens seen for every active cluster", weight[:4].tolist())
    expect(bool(np.all(norm_sums[active] >= 0) and np.all(norm_sums[active] <= MAX_STATISTIC)), "norm_sums",
           f"0..{MAX_STATISTIC:g}", norm_sums[active][:4].tolist())
    unit = np.linalg.norm(centroids[active].astype(np.float64), axis=1)
    expect(bool(np.all(np.abs(unit - 1.0) < 1e-3)), "centroids", "unit rows for active clusters", unit[:4].tolist())
    ids(first[active], "first", 0, tokens_seen)
