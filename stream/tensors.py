"""torch tensor <-> wire array helpers (torch is imported lazily: ``stream/`` has no model code).

bfloat16 tensors travel as raw bits in ``codec.BFLOAT16``; every other supported dtype maps one to one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from stream.codec import BFLOAT16

if TYPE_CHECKING:
    import torch


def to_wire_array(tensor: "torch.Tensor") -> np.ndarray:
    """CPU copy (or view, if already on CPU and contiguous) of ``tensor`` as a numpy array, same shape.

    bfloat16 -> ``BFLOAT16`` raw bits; other dtypes keep their numpy equivalent.
    """
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def from_wire_array(array: np.ndarray, device: "str | torch.device" = "cpu") -> "torch.Tensor":
    """Tensor of the same shape from a wire array (``BFLOAT16`` -> torch.bfloat16).

    Received arrays are read-only views of the network buffer, so this copies (torch needs writable memory).
    """
    import torch

    if array.dtype == BFLOAT16:
        out = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    else:
        out = torch.from_numpy(np.array(array, copy=True))
    return out.to(device) if str(device) != "cpu" else out
