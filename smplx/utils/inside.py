"""Exact inside tests for closed triangle meshes, used as PairOF's ground truth.

A posed hand can intersect itself (a curled finger sinking into the palm), where ray parity (trimesh's `contains`)
calls the overlap "outside". Both tests here count the winding number instead, so a point inside any part of the hand
is inside:

- `winding_numbers`: Embree (via embreex, as trimesh uses it) casts one ray per point and sums the signed crossings
  of every surface it passes (+1 leaving through a front face, -1 entering); exact, ~1 s per million points;
- `generalized_winding_numbers`: the solid-angle sum over all faces (van Oosterom and Strackee) in torch; slower
  (points x faces work) but needs nothing beyond torch, and is the independent check.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from smplx.utils.raycast import EmbreeMesh

__all__ = ["winding_numbers", "inside_mesh", "generalized_winding_numbers"]

_DIRECTION = np.array([0.5773, 0.5771, 0.5779]) / np.linalg.norm([0.5773, 0.5771, 0.5779])  # generic, not axial


def winding_numbers(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, *, max_crossings: int = 64
                    ) -> np.ndarray:
    """Winding number of each point with respect to a closed mesh whose faces are counter-clockwise from outside.

    Args:
        points: (N, 3).
        vertices: (V, 3), same frame.
        faces: (F, 3).
        max_crossings: surfaces followed per ray at most.

    Returns:
        (N,) int: 0 outside, 1 inside, 2 where two parts of the mesh overlap, ...
    """
    mesh = EmbreeMesh(vertices, faces)
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    exits = face_normals @ _DIRECTION > 0  # crossing this face along the ray leaves the volume
    step = 1e-6 * (np.abs(vertices).max() + 1.0)
    winding = np.zeros(len(points), dtype=np.int64)
    origins = np.asarray(points, dtype=np.float64).copy()
    active = np.arange(len(points))
    for _ in range(max_crossings):
        if len(active) == 0:
            break
        face, _, t = mesh.intersect(origins[active], np.broadcast_to(_DIRECTION, (len(active), 3)))
        hit = face >= 0
        active, face, t = active[hit], face[hit], t[hit]
        winding[active] += np.where(exits[face], 1, -1)
        origins[active] += (t + step)[:, None] * _DIRECTION
    return winding


def inside_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) bool: inside the closed mesh (winding number >= 1, so self-overlaps count as inside)."""
    return winding_numbers(points, vertices, faces) >= 1


def generalized_winding_numbers(points: Tensor, vertices: Tensor, faces: Tensor, *, chunk: int = 2048) -> Tensor:
    """(N,) generalized winding numbers: the sum over faces of their signed solid angle seen from each point / 4 pi.

    Args:
        points: (N, 3). vertices: (V, 3). faces: (F, 3).
        chunk: points per step (memory ~ chunk x F).
    """
    tri = vertices[faces]  # (F, 3, 3)
    out = []
    for s in range(0, len(points), chunk):
        r = tri[None] - points[s:s + chunk, None, None]  # (n, F, 3, 3)
        length = r.norm(dim=-1)  # (n, F, 3)
        a, b, c = r.unbind(2)
        la, lb, lc = length.unbind(2)
        det = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
        denom = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(torch.atan2(det, denom).sum(1) / (2 * torch.pi))
    return torch.cat(out)
