"""The deformer (reference §4.1-4.2): pose-conditioned offsets of every MANO-HD template vertex, which carry the
subject's identity shape (the published code zeroes the betas) and pose-dependent detail."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from handavatar.model.embedder import positional_encoding

__all__ = ["Deformer"]


class Deformer(nn.Module):
    """MLP over [gamma_6(template vertex), hand pose] -> 3-D offset, the same weights for every vertex.

    Args:
        template: (V, 3) template vertices, metres (embedded once, stored as a buffer).
        centre_weights: (V,) joint-regressor row of the centre joint (joint 4): the deformed template is moved so
            that this joint stays where the template has it.
        levels: positional-encoding frequencies of the vertices (6 -> 39 inputs).
        pose_dim: width of the pose condition (45).
        dims: hidden widths (ReLU).
    """

    def __init__(self, template: Tensor, centre_weights: Tensor, *, levels: int = 6, pose_dim: int = 45,
                 dims: tuple[int, ...] = (128, 128, 128, 128)):
        super().__init__()
        self.register_buffer("template", template.clone())
        self.register_buffer("centre_weights", centre_weights.clone())
        self.register_buffer("embedded", positional_encoding(template, levels))
        sizes = [self.embedded.shape[1] + pose_dim, *dims, 3]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        nn.init.normal_(self.layers[-1].weight, 0.0, 1e-3)
        nn.init.zeros_(self.layers[-1].bias)

    def offsets(self, hand_pose: Tensor) -> Tensor:
        """(B, 45) hand pose -> (B, V, 3) offsets, metres."""
        batch, vertices = hand_pose.shape[0], self.embedded.shape[0]
        h = torch.cat([self.embedded.expand(batch, -1, -1), hand_pose[:, None].expand(-1, vertices, -1)], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def forward(self, hand_pose: Tensor) -> Tensor:
        """(B, 45) hand pose -> (B, V, 3) deformed template (pass to the MANO-HD layer as `shaped_verts`), with the
        centre joint kept where the template has it."""
        deformed = self.template + self.offsets(hand_pose)
        shift = (self.centre_weights @ deformed) - self.centre_weights @ self.template  # (B, 3)
        return deformed - shift[:, None]
