"""An albedo texture on MANO-HD's vertices (not in the paper; `network.albedo_at: mesh`): one colour per vertex of
the avatar's mesh, interpolated barycentrically at the point where a ray meets the posed mesh
(`handavatar.render.surface.mesh_lookup`). A skin point keeps its vertices from frame to frame, wherever PairOF's
surface lies, so the texture can hold what the anchor codes blur (nails, palm lines, creases).

    texture = VertexTexture(vertices=V)
    texture.initialise(colours)                  # (V, 3) in [0, 1], e.g. the textured-mesh baseline's unprojection
    albedo = texture(vertex_ids, weights)        # (H, 3) ids and barycentric weights -> (H, 3) albedo
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["VertexTexture"]


class VertexTexture(nn.Module):
    """(V, 3) colours, stored as logits (a sigmoid keeps them in (0, 1), as the albedo field's output)."""

    def __init__(self, vertices: int, grey: float = 0.5):
        super().__init__()
        self.logits = nn.Parameter(torch.full((vertices, 3), float(np.log(grey / (1 - grey)))))

    @torch.no_grad()
    def initialise(self, colours: np.ndarray | Tensor, *, margin: float = 0.02) -> None:
        """Set the colours to (V, 3) values in [0, 1], clamped to [margin, 1 - margin] (where the sigmoid still
        moves)."""
        colours = torch.as_tensor(np.asarray(colours), dtype=self.logits.dtype, device=self.logits.device)
        if colours.shape != self.logits.shape:
            raise ValueError(f"colours of shape {tuple(colours.shape)} for a texture of {tuple(self.logits.shape)}")
        if not torch.isfinite(colours).all():
            raise ValueError("the texture's initial colours hold NaN or infinite values")
        self.logits.copy_(torch.logit(colours.clamp(margin, 1 - margin)))

    def colours(self) -> Tensor:
        """(V, 3) the vertex colours in (0, 1)."""
        return torch.sigmoid(self.logits)

    def forward(self, vertex_ids: Tensor, weights: Tensor) -> Tensor:
        """(H, 3) vertex ids and (H, 3) weights (barycentrics; rows sum to 1) -> (H, 3) albedo."""
        return (weights[..., None].to(self.logits.dtype) * torch.sigmoid(self.logits[vertex_ids])).sum(-2)
