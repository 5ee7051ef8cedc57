"""The positional encoding of the published code (reference §4.7)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["positional_encoding"]


def positional_encoding(x: Tensor, levels: int) -> Tensor:
    """[x, sin(x), cos(x), sin(2x), cos(2x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]: frequencies 2^0..2^(L-1), no pi
    factor, sine and cosine interleaved per frequency.

    Args:
        x: (..., D).
        levels: L.

    Returns:
        (..., D (1 + 2 L)).
    """
    parts = [x]
    for k in range(levels):
        parts += [torch.sin(2.0 ** k * x), torch.cos(2.0 ** k * x)]
    return torch.cat(parts, dim=-1)
