"""Geometry on triangle meshes as tensor functions: normals, surface sampling, barycentric interpolation.

Shapes: B batch, V vertices, F faces, N samples. `faces` are (F, 3) int64 indices, counter-clockwise from outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["face_normals", "vertex_normals", "smoothed_vertex_normals", "SurfaceSamples", "sample_surface",
           "interpolate_barycentric"]


def face_normals(vertices: Tensor, faces: Tensor, *, normalize: bool = True) -> Tensor:
    """Outward normals of the faces.

    Args:
        vertices: (..., V, 3).
        faces: (F, 3) vertex indices.
        normalize: if False, return cross products, whose length is twice the face area.

    Returns:
        (..., F, 3) normals (unit length, or zero for a degenerate face when normalize=True).
    """
    v0, v1, v2 = (vertices[..., faces[:, i], :] for i in range(3))
    normals = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    return torch.nn.functional.normalize(normals, dim=-1) if normalize else normals


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted vertex normals: the normalised sum of the (area-scaled) normals of the faces around a vertex.

    Args:
        vertices: (..., V, 3).
        faces: (F, 3) vertex indices.

    Returns:
        (..., V, 3) unit normals (zero for a vertex no face uses).
    """
    scaled = face_normals(vertices, faces, normalize=False)  # (..., F, 3)
    normals = torch.zeros_like(vertices)
    for i in range(3):
        normals = normals.index_add(-2, faces[:, i], scaled)
    return torch.nn.functional.normalize(normals, dim=-1)


def smoothed_vertex_normals(vertices: Tensor, faces: Tensor, iterations: int) -> Tensor:
    """`vertex_normals` averaged over the one-ring `iterations` times (each pass: a vertex's normal plus its
    neighbours' across every face edge around it, normalised), for shading a finely subdivided mesh as smoothly as
    the surface it approximates: (..., V, 3) unit normals; 0 iterations: `vertex_normals`."""
    normals = vertex_normals(vertices, faces)
    start = faces[:, [0, 1, 2, 1, 2, 0]].reshape(-1)  # each face's edges, both ways
    end = faces[:, [1, 2, 0, 0, 1, 2]].reshape(-1)
    for _ in range(iterations):
        normals = torch.nn.functional.normalize(normals.index_add(-2, start, normals.index_select(-2, end)), dim=-1)
    return normals


@dataclass
class SurfaceSamples:
    points: Tensor  # (N, 3) sampled positions, same frame and unit as the vertices
    face_ids: Tensor  # (N,) int64 face of each sample
    barycentrics: Tensor  # (N, 3) weights of the face's three vertices, non-negative, summing to 1
    normals: Tensor  # (N, 3) unit normal of each sample's face


def sample_surface(vertices: Tensor, faces: Tensor, num_samples: int, *,
                   generator: torch.Generator | None = None) -> SurfaceSamples:
    """Uniform samples on a mesh surface: faces drawn by area, then uniform barycentrics in the face.

    Barycentrics are (1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v) for u, v ~ U[0, 1), which is uniform over a triangle.

    Args:
        vertices: (V, 3).
        faces: (F, 3) vertex indices; zero-area faces are never drawn.
        num_samples: N.
        generator: random source on the vertices' device, for reproducible samples.

    Returns:
        SurfaceSamples with N points. Positions are differentiable in the vertices; the draw is not.
    """
    with torch.no_grad():
        areas = face_normals(vertices, faces, normalize=False).norm(dim=-1)
        if not torch.isfinite(areas).all() or areas.sum() <= 0:
            raise ValueError("cannot sample a mesh whose total area is zero or not finite")
        face_ids = torch.multinomial(areas, num_samples, replacement=True, generator=generator)
        u, v = torch.rand(2, num_samples, 1, generator=generator, dtype=vertices.dtype, device=vertices.device)
        su = u.sqrt()
        barycentrics = torch.cat([1 - su, su * (1 - v), su * v], dim=-1)
    points = interpolate_barycentric(vertices, faces, face_ids, barycentrics)
    normals = face_normals(vertices, faces[face_ids])
    return SurfaceSamples(points, face_ids, barycentrics, normals)


def interpolate_barycentric(values: Tensor, faces: Tensor, face_ids: Tensor, barycentrics: Tensor) -> Tensor:
    """Per-vertex values interpolated at points given by face and barycentric coordinates.

    Args:
        values: (..., V, C) per-vertex values (e.g. posed vertices, C = 3).
        faces: (F, 3) vertex indices.
        face_ids: (N,) face of each point.
        barycentrics: (N, 3) weights of the face's vertices.

    Returns:
        (..., N, C) interpolated values; e.g. posed anchors from fixed barycentrics.
    """
    corners = values[..., faces[face_ids], :]  # (..., N, 3, C)
    return (barycentrics[..., None] * corners).sum(-2)
