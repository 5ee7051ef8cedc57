"""Ray-traced visibility on the posed hand's surface, the input of the shading at the surface (not in the paper;
`network.shading_at: surface`).

SelF (reference §4.3) sees how much of each part the camera ray has passed through: a proxy for self-occlusion that
cannot say whether a light off the camera's axis reaches a point (a finger's cast shadow on the palm). Here every
vertex of the posed MANO-HD that a ray's surface point uses casts shadow rays in K fixed directions of the model
frame (oriented as the camera), and the point takes its vertices' visibility, interpolated barycentrically: which
directions leave the hand, smooth over the surface. With the lights fixed to the camera rig, as in a capture
studio, a light's cast shadow and its n.l term are functions of that visibility the shading network can learn.

    directions = sphere_directions(64)                                          # (K, 3) unit, model frame
    visible = interpolated_visibility(vertices, faces, vertex_ids, weights, directions)   # mesh_lookup's ids, weights
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from smplx.mesh import vertex_normals
from smplx.utils.raycast import EmbreeMesh

__all__ = ["sphere_directions", "camera_hemisphere", "visibility", "interpolated_visibility", "mesh_points"]


def sphere_directions(count: int) -> Tensor:
    """(K, 3) unit vectors spread evenly over the sphere (a Fibonacci lattice, float32, deterministic)."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / count
    radius = (1 - z * z).clamp_min(0).sqrt()
    angle = i * math.pi * (3 - math.sqrt(5))
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), z], 1).float()


def camera_hemisphere(count: int) -> Tensor:
    """(K, 3) unit vectors spread over the half of the sphere that faces the camera (z < 0 in the model frame, which
    is oriented as the camera): the lower half of `sphere_directions(2 K)`, where lights that reach the surfaces the
    camera sees are; float32, deterministic."""
    directions = sphere_directions(2 * count)
    return directions[directions[:, 2] < 0]


def visibility(vertices: Tensor, faces: Tensor, points: Tensor, normals: Tensor, directions: Tensor, *,
               offset: float = 2e-3, mesh: EmbreeMesh | None = None) -> Tensor:
    """Which shadow rays from surface points leave the mesh (Embree, float32).

    Args:
        vertices: (V, 3) the posed mesh, faces: (F, 3); model frame, dm.
        points, normals: (H, 3) surface points and their unit normals.
        directions: (K, 3) unit shadow-ray directions.
        offset: the rays start this far (dm) off the surface along the normal, so that they do not hit the
            triangles they start on (0.2 mm).
        mesh: the Embree scene of (vertices, faces), when the caller has built it already.

    Returns:
        (H, K) 1 where the ray o + t d, t > 0, meets no triangle, else 0 (rays into the surface meet it), on the
        points' device and dtype, detached.
    """
    if points.shape[0] == 0:
        return points.new_zeros(0, directions.shape[0])
    mesh = mesh or EmbreeMesh(vertices.detach().cpu().double().numpy(), faces.cpu().numpy())
    start = (points.detach() + offset * normals.detach()).cpu().double().numpy()
    ray = directions.detach().cpu().double().numpy()
    count = len(ray)
    blocked = mesh.occluded(np.repeat(start, count, axis=0), np.tile(ray, (len(start), 1)))
    return torch.from_numpy(~blocked.reshape(len(start), count)).to(device=points.device, dtype=points.dtype)


def interpolated_visibility(vertices: Tensor, faces: Tensor, vertex_ids: Tensor, weights: Tensor, directions: Tensor,
                            *, offset: float = 2e-3, mesh: EmbreeMesh | None = None, normals: Tensor | None = None
                            ) -> Tensor:
    """The `visibility` of the mesh's vertices (from each vertex, `offset` off the surface along its normal),
    interpolated with (H, 3) barycentric `weights` of (H, 3) `vertex_ids` (`mesh_lookup`): (H, K) in [0, 1]. Only
    the vertices the points use are traced; `mesh`: as `visibility`; `normals`: (V, 3) the vertices' unit normals
    (omitted: `vertex_normals`)."""
    used, inverse = torch.unique(vertex_ids, return_inverse=True)
    vertices = vertices.detach()
    normals = vertex_normals(vertices, faces) if normals is None else normals.detach()
    table = visibility(vertices, faces, vertices[used], normals[used], directions, offset=offset, mesh=mesh)
    return (weights[..., None].to(table.dtype) * table[inverse]).sum(1)


def mesh_points(vertices: Tensor, faces: Tensor, vertex_ids: Tensor, weights: Tensor, towards: Tensor | None = None,
                *, lift: bool = False, normals: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(H, 3) points sum_i w_i v_i of a mesh given by (H, 3) `vertex_ids` and barycentric `weights` (`mesh_lookup`),
    and (H, 3) their smooth unit normals: the vertex normals blended the same way and normalised (as Phong shading
    interpolates them); with (H, 3) `towards` (the rays' directions), normals that face away from the ray's origin
    are flipped (a surface seen from behind is shaded on its visible side). Detached.

    lift: the points are lifted to the smooth surface the vertex normals describe, as shadow-ray origins ("Hacking
    the shadow terminator", Hanika 2021, as the synthetic capture does): projected onto each corner's tangent plane
    where they lie below it, the projections blended with the barycentrics; a flat triangle's point otherwise sits
    below its neighbours where the surface curves, and its shadow rays hit them (streaks along the terminator).
    normals: (V, 3) the vertices' unit normals (omitted: `vertex_normals`)."""
    vertices = vertices.detach()
    blend = weights[..., None].to(vertices.dtype)
    table = vertex_normals(vertices, faces) if normals is None else normals.detach()
    corners, corner_normals = vertices[vertex_ids], table[vertex_ids]  # (H, 3, 3) each
    points = (blend * corners).sum(1)
    normals = torch.nn.functional.normalize((blend * corner_normals).sum(1), dim=-1)
    if lift:
        below = ((points[:, None] - corners) * corner_normals).sum(-1).clamp_max(0)  # (H, 3)
        points = points - (blend * below[..., None] * corner_normals).sum(1)
    if towards is not None:
        away = (normals * towards.detach().to(normals.dtype)).sum(-1, keepdim=True) > 0
        normals = torch.where(away, -normals, normals)
    return points, normals
