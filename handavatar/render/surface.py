"""The albedo looked up once per ray, at the ray's expected surface point (not in the paper; `network.albedo_at:
surface`).

The published renderer looks the albedo up at every ray sample and composites it: a pixel's albedo is a blend of the
codes around every sample that carries weight, spread along the ray around PairOF's surface (and the steps of the
samples show as ridges across the fingers). Here the renderer composites the shading and the depth as usual, then
looks the albedo up once, at the point the compositing weights say the ray meets the surface:

    x_s = o + d * depth / alpha,        depth = sum_i w_i z_i,  alpha = sum_i w_i

(`depth / alpha` is the weight-averaged sample depth; directions have camera z = 1, so z is the camera depth), and
the pixel is that albedo times the composited shading:

    rgb = albedo(x_s) * sum_i w_i shading_i + (1 - alpha) background
    albedo image = alpha * albedo(x_s) + (1 - alpha) background

which is the published compositing of an albedo that is constant along each ray.

Occupancy is used as opacity (no interval lengths): where the field is sharp, the first sample inside the surface
takes nearly all the weight, so depth / alpha moves in steps of the sample spacing as the surface crosses the
samples, and x_s with it, up to a spacing off the surface. `albedo_at: plane` takes x_s further, along its ray, onto
the plane of the face of its nearest posed anchor (`onto_anchor_planes`), so that the lookup lands on the posed
MANO-HD surface wherever that is locally flat. `albedo_at: mesh` looks the albedo up in a texture on the posed
MANO-HD's vertices, where the ray meets that mesh near x_s (`mesh_lookup`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from smplx.utils.raycast import EmbreeMesh

__all__ = ["expected_surface_points", "onto_anchor_planes", "mesh_lookup", "composite_surface_albedo"]


def expected_surface_points(origin: Tensor, directions: Tensor, depth: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Where each ray meets the surface, by its compositing weights.

    Args:
        origin: (3,) ray origin, model frame (dm).
        directions: (R, 3) ray directions, camera z = 1 (model frame).
        depth: (R,) or (R, 1) composited depth sum_i w_i z_i (without background).
        alpha: (R,) accumulated opacity sum_i w_i.

    Returns:
        points: (H, 3) o + d depth / alpha of the H rays with alpha > 0, model frame (dm), detached (the albedo does
            not push on the geometry through its lookup point, as the published per-sample lookups, whose sample
            depths are fixed); hit: (R,) bool, alpha > 0.
    """
    depth = depth.reshape(-1)
    hit = alpha > 0
    along = (depth[hit] / alpha[hit]).detach()
    return origin.detach() + along[:, None] * directions[hit].detach(), hit


def onto_anchor_planes(points: Tensor, directions: Tensor, anchors: Tensor, normals: Tensor, *,
                       min_cosine: float = 0.2) -> Tensor:
    """Points moved along their rays onto the planes of their anchors' faces.

    Args:
        points: (H, 3) points on their rays, model frame (dm); directions: (H, 3) the rays' directions.
        anchors: (H, 3) the posed anchor each point goes to (its nearest); normals: (H, 3) unit normals of the
            anchors' faces.
        min_cosine: where the ray meets the plane at a grazing angle (|cos| between direction and normal below
            this), the point moves straight onto the plane instead (along the normal), so it moves at most
            |(anchor - point) . normal| / min_cosine.

    Returns:
        (H, 3) points p + d ((a - p) . n) / (d . n) on the planes (or p + ((a - p) . n) n where grazing).
    """
    unit = directions / directions.norm(dim=-1, keepdim=True)
    offset = ((anchors - points) * normals).sum(-1, keepdim=True)  # (H, 1) signed distance to the plane along n
    cosine = (unit * normals).sum(-1, keepdim=True)
    grazing = cosine.abs() < min_cosine
    along = torch.where(grazing, torch.ones_like(cosine), cosine)
    return torch.where(grazing, points + offset * normals, points + unit * offset / along)


def mesh_lookup(origin: Tensor, points: Tensor, directions: Tensor, vertices: Tensor, faces: Tensor, *,
                reach: float = 0.05, chunk: int = 1024, mesh: EmbreeMesh | None = None) -> tuple[Tensor, Tensor]:
    """Where rays meet a triangle mesh near given points on them, as vertex ids and barycentric weights.

    Each ray o + t d is cast from the origin (Embree, float32); where its first hit on the mesh lies within `reach`
    of the ray's point (along the ray), the point takes the hit's face and barycentrics; elsewhere (the ray misses
    the mesh, or first meets a part of it that the point is not on: PairOF's surface is not MANO-HD's), it takes
    its nearest vertex, with weight 1.

    Args:
        origin: (3,) ray origin; points: (H, 3) points on the rays; directions: (H, 3) the rays' directions (any
            length). Model frame, dm.
        vertices: (V, 3) the posed mesh; faces: (F, 3) vertex indices.
        reach: how far (dm) a hit may lie from the point along the ray.
        chunk: points per nearest-vertex search.
        mesh: the Embree scene of (vertices, faces), when the caller has built it already.

    Returns:
        vertex_ids: (H, 3) int64; weights: (H, 3) barycentrics (rows sum to 1), on the points' device, detached.
    """
    device = points.device
    start = origin.detach().expand_as(points).cpu().double().numpy()
    ray = directions.detach().cpu().double().numpy()
    mesh = mesh or EmbreeMesh(vertices.detach().cpu().double().numpy(), faces.cpu().numpy())
    face, bary, t = mesh.intersect(start, ray)
    length = np.linalg.norm(ray, axis=1)
    along = ((points.detach().cpu().double().numpy() - start) * ray).sum(1) / length ** 2  # the point's t
    hit = (face >= 0) & (np.abs(t - along) * length <= reach)
    faces_np = faces.cpu().numpy()
    ids = np.zeros((len(face), 3), dtype=np.int64)
    weights = np.zeros((len(face), 3))
    ids[hit], weights[hit] = faces_np[face[hit]], bary[hit]
    missed = np.flatnonzero(~hit)
    if len(missed):
        table = vertices.detach().to(points.dtype)
        nearest = torch.cat([torch.cdist(points.detach()[torch.from_numpy(part).to(device)], table).argmin(1)
                             for part in np.array_split(missed, -(-len(missed) // chunk))])
        ids[missed] = nearest.cpu().numpy()[:, None]
        weights[missed, 0] = 1.0
    return torch.from_numpy(ids).to(device), torch.from_numpy(weights).to(device=device, dtype=points.dtype)


def composite_surface_albedo(albedo_of: Callable[[Tensor, Tensor], Tensor], origin: Tensor, directions: Tensor,
                             shading: Tensor, depth: Tensor, alpha: Tensor, background: Tensor) -> dict[str, Tensor]:
    """'rgb' and 'albedo' of rays whose albedo is looked up once, at `expected_surface_points`.

    Args:
        albedo_of: (H, 3) points, model frame (dm), and (H, 3) their rays' directions -> (H, 3) albedo in [0, 1]
            (the avatar's albedo field at the points' nearest posed anchors, or at `onto_anchor_planes` of them),
            or a pair: the albedo and (H, 1) the shading at the points (`network.shading_at: surface`), which then
            replaces the composited shading as a shading constant along each ray: alpha x shading(x_s).
        origin: (3,); directions: (R, 3), camera z = 1.
        shading: (R, 1) composited shading sum_i w_i shading_i; depth: (R, 1) composited depth; alpha: (R,).
        background: (3,) or (R, 3) colour behind the hand.

    Returns:
        'rgb': (R, 3) albedo(x_s) shading + (1 - alpha) background; 'albedo': (R, 3) alpha albedo(x_s) + (1 - alpha)
        background; rays with alpha 0 are background and the field is not asked about them. With the shading at
        the points, also 'shading': (R, 1) alpha shading(x_s).
    """
    points, hit = expected_surface_points(origin, directions, depth, alpha)
    albedo = shading.new_zeros(shading.shape[0], 3)
    result = {}
    if hit.any():
        found = albedo_of(points, directions[hit].detach())
        if isinstance(found, tuple):
            found, at_surface = found
            shading = alpha[:, None] * shading.new_zeros(shading.shape[0], 1).index_put(
                (hit,), at_surface.to(shading.dtype))
            result["shading"] = shading
        albedo = albedo.index_put((hit,), found.to(albedo.dtype))
    behind = (1 - alpha)[:, None] * background
    return {**result, "rgb": albedo * shading + behind, "albedo": alpha[:, None] * albedo + behind}
