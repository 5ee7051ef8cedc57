"""What the renderers ask of a posed hand, as tensors and callables (as nerfacc's `rendering(..., rgb_sigma_fn=...)`):
the renderers never import a network. `HandAvatar.pose_field` builds one from PairOF, the albedo field and SelF;
a test builds one from an analytic field (tests/test_render.py).

Every point is in the model frame, in decimetres. K part boxes, A anchors, k nearest anchors per point and J soft
part occupancies per point (J = K: one per part).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

__all__ = ["PartBoxes", "PoseField"]


class PartBoxes(NamedTuple):
    """K oriented boxes; outside all of them the field is empty. A point x lies in box k when |R_k^T (x - J_k) -
    centre_k| < half_k in every coordinate."""

    rotations: Tensor  # (K, 3, 3) R_k, the posed bone rotations
    joints: Tensor  # (K, 3) J_k, the posed joints, model frame
    centre: Tensor  # (K, 3) box centres, bone frames
    half: Tensor  # (K, 3) half sizes, bone frames


@dataclass(frozen=True)
class PoseField:
    """One posed hand as the renderers see it.

    Attributes:
        boxes: the part boxes.
        anchors: (A, 3) posed surface anchors (may carry gradients).
        face_normals: (A, 3) unit outward normals of the faces the anchors lie on, detached (band 'auto': a point
            behind its nearest anchor's face is inside the surface).
        neighbours: k, the nearest anchors a point's appearance blends.
        part_boxes: (N, 3) points -> (K, N, 3) the points in each bone frame and (K, N) bool whether they lie in each
            box.
        occupancy: (N, 3) points, their `part_boxes` restricted to them (or None: found again), dense -> (N,)
            occupancy in [0, 1] and (N, J) soft part occupancies; dense: every part pair at every point (the
            reference's query; the same values).
        nearest_anchors: (N, 3) points -> (N, k) distances (differentiable) and (N, k) ids of the nearest anchors,
            nearest first, by brute force (the reference; the fast renderer uses an `AnchorIndex` of `anchors`).
        appearance: (N, k) anchor distances, (N, k) anchor ids, (N, J) occlusion (running maximum of the soft part
            occupancies along the ray, detached) -> (N, 3) albedo in [0, 1] (None when `surface_albedo` is given)
            and (N, 1) shading.
        surface_albedo: None: the albedo is composited from the samples (published); else the albedo of a ray is
            looked up once, at its expected surface point: (3,) ray origin, (H, 3) points, (H, 3) their rays'
            directions, and the renderer's nearest-anchor search ((H, 3) -> (H, k), (H, k)) -> (H, 3) albedo, or the
            albedo and (H, 1) the shading there, which then replaces the composited one
            (`handavatar.render.surface.composite_surface_albedo`).
    """

    boxes: PartBoxes
    anchors: Tensor
    face_normals: Tensor
    neighbours: int
    part_boxes: Callable[[Tensor], tuple[Tensor, Tensor]]
    occupancy: Callable[[Tensor, tuple[Tensor, Tensor] | None, bool], tuple[Tensor, Tensor]]
    nearest_anchors: Callable[[Tensor], tuple[Tensor, Tensor]]
    appearance: Callable[[Tensor, Tensor, Tensor], tuple[Tensor | None, Tensor]]
    surface_albedo: Callable[[Tensor, Tensor, Tensor, Callable], Tensor | tuple[Tensor, Tensor]] | None = None
