"""The albedo field (reference §4.1, §4.3): a learned code per surface anchor, blended over a point's nearest posed
anchors by inverse distance and decoded by an MLP into a colour. It has no view or position input, so it is a
texture attached to the surface."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["AlbedoField", "inverse_distance_weights", "blend_anchors"]


def inverse_distance_weights(dists: Tensor) -> Tensor:
    """(..., k) distances (> 0) to a point's k nearest anchors -> (..., k) weights (1/d) / sum(1/d)."""
    inverse = 1.0 / dists
    return inverse / inverse.sum(-1, keepdim=True)


def blend_anchors(table: Tensor, anchor_dists: Tensor, anchor_ids: Tensor) -> Tensor:
    """Rows of a per-anchor table (A, C) blended by inverse distance over (..., k) nearest anchors -> (..., C)."""
    return (inverse_distance_weights(anchor_dists)[..., None] * table[anchor_ids]).sum(-2)


class AlbedoField(nn.Module):
    """Codebook (anchors x code_dim, N(0, 1)) and a weight-normalised ReLU MLP code_dim -> hidden x layers -> 3 with a
    sigmoid, as the published `color_dict` and `color_network`."""

    def __init__(self, anchors: int = 4096, code_dim: int = 128, hidden: int = 256, layers: int = 4):
        super().__init__()
        self.codes = nn.Parameter(torch.randn(anchors, code_dim))
        dims = [code_dim] + [hidden] * layers + [3]
        self.layers = nn.ModuleList(weight_norm(nn.Linear(a, b)) for a, b in zip(dims[:-1], dims[1:]))

    def features(self, anchor_dists: Tensor, anchor_ids: Tensor) -> Tensor:
        """(..., k) distances and ids of the nearest anchors -> (..., code_dim) blended codes."""
        return blend_anchors(self.codes, anchor_dists, anchor_ids)

    def forward(self, anchor_dists: Tensor, anchor_ids: Tensor) -> Tensor:
        """(..., k) distances and ids of the nearest posed anchors -> (..., 3) albedo in (0, 1)."""
        h = self.features(anchor_dists, anchor_ids)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return torch.sigmoid(h)
