"""The networks of PairOF (reference §3.4-3.6): a PointNet with residual blocks, and an IGR-style decoder.

Shapes: S is the set size (points of a part cloud, or the 2 tokens of a pair), C channels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ResnetBlockFC", "ResnetPointnet", "ImplicitNet", "Softplus"]


class ResnetBlockFC(nn.Module):
    """x_s + fc_1(relu(fc_0(relu(x)))), hidden size min(in, out); x_s a bias-free linear map when in != out.
    fc_1 starts at zero, so the block starts as its shortcut."""

    def __init__(self, size_in: int, size_out: int):
        super().__init__()
        hidden = min(size_in, size_out)
        self.fc_0 = nn.Linear(size_in, hidden)
        self.fc_1 = nn.Linear(hidden, size_out)
        self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: Tensor) -> Tensor:
        dx = self.fc_1(torch.relu(self.fc_0(torch.relu(x))))
        return (x if self.shortcut is None else self.shortcut(x)) + dx

    def forward_pooled(self, x: Tensor, pooled: Tensor) -> Tensor:
        """forward(cat([x, pooled])) without building the concatenation: the pooled half of fc_0 and of the
        shortcut is computed once per set and broadcast. x: (..., S, C), pooled: (..., 1, C), 2C = size_in."""
        c = x.shape[-1]
        w0, ws = self.fc_0.weight, self.shortcut.weight
        hidden = torch.relu(x) @ w0[:, :c].T + (torch.relu(pooled) @ w0[:, c:].T + self.fc_0.bias)
        return x @ ws[:, :c].T + pooled @ ws[:, c:].T + self.fc_1(torch.relu(hidden))


def _set_max(h: Tensor) -> Tensor:
    """(..., S, C) -> (..., 1, C) maximum over the set; a pair (S = 2) as one elementwise maximum, which is several
    times faster on the CPU than a reduction over a dimension of 2."""
    if h.shape[-2] == 2:
        return torch.maximum(h[..., :1, :], h[..., 1:, :])
    return h.max(dim=-2, keepdim=True).values


class ResnetPointnet(nn.Module):
    """PointNet with residual blocks: fc_pos (dim -> 2h), then blocks 0, 1, 3 and 4 (2h -> h) with a max-pool over
    the set concatenated to every element after blocks 0, 1 and 3; optionally a final max-pool; fc_c (h -> out).

    The published layer names (block_0, block_1, block_3, block_4; block 2 is unused there) are kept. The forward is
    split in two so that callers can share per-element work: `stem` (fc_pos and block 0, per element, no pooling
    yet) and `head` (the rest).
    """

    def __init__(self, dim: int, hidden: int, out: int, *, final_pool: bool):
        super().__init__()
        self.fc_pos = nn.Linear(dim, 2 * hidden)
        self.block_0 = ResnetBlockFC(2 * hidden, hidden)
        self.block_1 = ResnetBlockFC(2 * hidden, hidden)
        self.block_3 = ResnetBlockFC(2 * hidden, hidden)
        self.block_4 = ResnetBlockFC(2 * hidden, hidden)
        self.fc_c = nn.Linear(hidden, out)
        self.final_pool = final_pool

    def stem(self, first_layer: Tensor) -> Tensor:
        """(..., 2h) output of fc_pos -> (..., h) output of block 0 (per element)."""
        return self.block_0(first_layer)

    def head(self, h: Tensor, select: Tensor | None = None) -> Tensor:
        """(..., S, h) block-0 features of a set -> (..., S, out), or (..., out) with the final pool.

        select: (..., S) bool, without the final pool: only the selected elements' outputs are computed, (n, out)
        in the order of `select.nonzero()` (the pools still see every element of the set)."""
        for block in (self.block_1, self.block_3):  # each sees [element, max over the set]
            h = block.forward_pooled(h, _set_max(h))
        pooled = _set_max(h)
        if select is not None:
            if self.final_pool:
                raise ValueError("select needs a head without the final pool")
            h, pooled = h[select], pooled.expand_as(h)[select]
        h = self.block_4.forward_pooled(h, pooled)
        if self.final_pool:
            h = h.max(dim=-2).values
        return self.fc_c(torch.relu(h))

    def forward(self, x: Tensor) -> Tensor:
        """(..., S, dim) -> (..., S, out), or (..., out) with the final pool."""
        return self.head(self.stem(self.fc_pos(x)))


class Softplus(nn.Softplus):
    """`nn.Softplus` with its input clamped at -30 / beta: the same values (below the clamp the true output is under
    exp(-30) / beta, ~1e-15 at beta 100) and gradients (under exp(-30) ~ 1e-13, now 0), without the exponential's
    underflow path, which some CPUs take at ~15 ns per element (issue 23: 30% of a training step on a 2-core machine
    with AMX). Same state dict as `nn.Softplus` (none)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.softplus(x.clamp_min(-30.0 / self.beta), self.beta, self.threshold)


class ImplicitNet(nn.Module):
    """IGR's decoder: Softplus(beta=100) MLP with a skip connection (concatenate the input, divide by sqrt 2) and
    geometric initialisation (starts close to the signed distance of a unit sphere in feature space).

    Args:
        d_in: input features; d_out: outputs; dims: hidden widths; skip_in: layers that receive the input again.
    """

    def __init__(self, d_in: int = 64, d_out: int = 1, dims: tuple[int, ...] = (128, 128, 128, 128),
                 skip_in: tuple[int, ...] = (2,)):
        super().__init__()
        dims = [d_in, *dims, d_out]
        self.skip_in = tuple(skip_in)
        layers = []
        for i in range(len(dims) - 1):
            out_dim = dims[i + 1] - d_in if i + 1 in self.skip_in else dims[i + 1]
            lin = nn.Linear(dims[i], out_dim)
            if i == len(dims) - 2:
                nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(dims[i]), std=1e-5)
                nn.init.constant_(lin.bias, -1.0)
            else:
                nn.init.normal_(lin.weight, 0.0, math.sqrt(2) / math.sqrt(out_dim))
                nn.init.zeros_(lin.bias)
            layers.append(lin)
        self.layers = nn.ModuleList(layers)
        self.activation = Softplus(beta=100)

    def forward(self, x: Tensor) -> Tensor:
        """(..., d_in) -> (..., d_out), read like a signed distance (positive outside)."""
        h = x
        for i, lin in enumerate(self.layers):
            if i in self.skip_in:
                h = torch.cat([h, x], dim=-1) / math.sqrt(2)
            h = lin(h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h
