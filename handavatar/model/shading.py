"""SelF, the self-occlusion-aware shading field (reference §4.3): a scalar shading in (0, 1) per ray sample from
the running maximum of the soft part occupancies along the ray (how much of each part the ray has already passed
through), the sample's blended anchor embedding and the hand pose. Colour = albedo x shading.

Optionally (not in the paper) SelF also sees the sample's posed surface normal in the camera frame: with lights
fixed to the camera, diffuse shading is then a simple function of an input, instead of a product of rotations the
network must learn from the pose's axis-angles (see the README's avatar section for what it changes)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pairof.networks import ImplicitNet

__all__ = ["SelF"]


class SelF(nn.Module):
    """IGR-style MLP (Softplus beta 100, skip at layer 2, geometric init) with a sigmoid output.

    Args:
        parts: soft part occupancies per sample (16).
        anchor_dim: width of the anchor embedding (21 for gamma_3 of 3-D positions).
        pose_dim: width of the pose input (48: global rotation and finger pose).
        normal: also take the (3,) posed surface normal of each sample (camera frame).
        dims: hidden widths; skip_in: layers that receive the input again.
    """

    def __init__(self, parts: int = 16, anchor_dim: int = 21, pose_dim: int = 48, *, normal: bool = False,
                 dims: tuple[int, ...] = (256, 256, 256, 256), skip_in: tuple[int, ...] = (2,)):
        super().__init__()
        self.normal = normal
        self.net = ImplicitNet(parts + anchor_dim + pose_dim + (3 if normal else 0), 1, dims, skip_in)

    @staticmethod
    def occlusion(soft_part_occupancy: Tensor) -> Tensor:
        """(R, S, K) soft part occupancies at samples near to far -> their running maximum along the ray, detached
        (shading never pushes on the geometry)."""
        return torch.cummax(soft_part_occupancy.detach(), dim=1).values

    def forward(self, occlusion: Tensor, anchor_embedding: Tensor, pose: Tensor, normal: Tensor | None = None
                ) -> Tensor:
        """Shading of samples.

        Args:
            occlusion: (..., 16) `occlusion` of the samples' soft part occupancies.
            anchor_embedding: (..., anchor_dim) blended over the nearest anchors.
            pose: (..., pose_dim), or (pose_dim,) for all samples: the pose of the frame.
            normal: (..., 3) posed surface normals, camera frame (required with `normal`, ignored without).

        Returns:
            (..., 1) in (0, 1).
        """
        inputs = [occlusion, anchor_embedding, pose.expand(*occlusion.shape[:-1], -1)]
        if self.normal:
            if normal is None:
                raise ValueError("this SelF was built with normal=True: pass the samples' surface normals")
            inputs.append(normal)
        return torch.sigmoid(self.net(torch.cat(inputs, dim=-1)))
