"""Mesh regularisers and distances in pure torch: uniform Laplacian, normal consistency, point-triangle distance.

Batched over B meshes that share one topology: `vertices (B, V, 3)`, `faces (F, 3)` int64. All are differentiable in
the vertices and take device and dtype from their inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smplx.mesh import face_normals

__all__ = ["uniform_laplacian", "laplacian_smoothing", "normal_consistency", "face_adjacency",
           "point_triangle_distance_sq", "points_to_mesh_sq", "mesh_to_points_sq", "points_to_all_faces_sq",
           "faces_to_all_points_sq"]


def uniform_laplacian(faces: Tensor, num_vertices: int) -> Tensor:
    """Sparse uniform Laplacian L = I - D^-1 A of a mesh's vertex graph.

    Args:
        faces: (F, 3) vertex indices.
        num_vertices: V (vertices no face uses get an all-zero row).

    Returns:
        (V, V) sparse COO tensor, float32; (L @ x)[v] = x[v] - mean of x over the neighbours of v.
    """
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.unique(torch.sort(edges, dim=1).values, dim=0)
    rows = torch.cat([edges[:, 0], edges[:, 1]])
    cols = torch.cat([edges[:, 1], edges[:, 0]])
    degree = torch.zeros(num_vertices, dtype=torch.float32, device=faces.device).index_add_(
        0, rows, torch.ones_like(rows, dtype=torch.float32))
    used = degree > 0
    diag = torch.nonzero(used).squeeze(1)
    indices = torch.cat([torch.stack([rows, cols]), torch.stack([diag, diag])], dim=1)
    values = torch.cat([-1.0 / degree[rows], torch.ones(len(diag), device=faces.device)])
    return torch.sparse_coo_tensor(indices, values, (num_vertices, num_vertices), check_invariants=True).coalesce()


def laplacian_smoothing(vertices: Tensor, laplacian: Tensor) -> Tensor:
    """Mean over vertices and meshes of |L v|, the uniform Laplacian smoothing loss (pytorch3d's "uniform" method).

    Args:
        vertices: (B, V, 3).
        laplacian: (V, V) from `uniform_laplacian` (converted to the vertices' dtype here).

    Returns:
        () loss, in the vertices' unit.
    """
    batch, nv, _ = vertices.shape
    flat = vertices.permute(1, 0, 2).reshape(nv, -1)  # (V, 3 B)
    lv = torch.sparse.mm(laplacian.to(vertices.dtype), flat).view(nv, batch, 3)
    return lv.norm(dim=-1).mean()


def face_adjacency(faces: Tensor) -> Tensor:
    """Pairs of faces that share an edge.

    Args:
        faces: (F, 3) of an edge-manifold mesh (each edge in at most two faces).

    Returns:
        (E_int, 2) int64 face index pairs, one per interior edge.
    """
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = torch.sort(edges, dim=1).values
    face_id = torch.arange(len(faces), device=faces.device).repeat(3)
    order = torch.argsort(keys[:, 0] * (int(faces.max()) + 1) + keys[:, 1])
    keys, face_id = keys[order], face_id[order]
    same = (keys[1:] == keys[:-1]).all(1)
    return torch.stack([face_id[:-1][same], face_id[1:][same]], dim=1)


def normal_consistency(vertices: Tensor, faces: Tensor, adjacency: Tensor) -> Tensor:
    """Mean over interior edges and meshes of 1 - cos(angle between the normals of the two faces at the edge).

    Args:
        vertices: (B, V, 3).
        faces: (F, 3).
        adjacency: (E_int, 2) from `face_adjacency`.

    Returns:
        () loss in [0, 2]; 0 for a plane.
    """
    normals = face_normals(vertices, faces)  # (B, F, 3)
    return (1 - (normals[:, adjacency[:, 0]] * normals[:, adjacency[:, 1]]).sum(-1)).mean()


def point_triangle_distance_sq(points: Tensor, triangles: Tensor) -> Tensor:
    """Exact squared distance from points to triangles (element-wise, broadcasting).

    Closest point by Voronoi region of the triangle (vertex, edge or face region), as in Ericson, Real-Time
    Collision Detection, section 5.1.5. Triangles must have non-zero area.

    Args:
        points: (..., 3).
        triangles: (..., 3, 3) corners a, b, c on dim -2.

    Returns:
        (...) squared distances. Differentiable in both inputs (almost everywhere).
    """
    a, b, c = triangles.unbind(-2)
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = points - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = points - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe_div(num, den):
        return num / torch.where(den.abs() > 0, den, torch.ones_like(den))

    denom = va + vb + vc
    v_face, w_face = safe_div(vb, denom), safe_div(vc, denom)
    closest = a + v_face[..., None] * ab + w_face[..., None] * ac  # face region (default)
    # the regions in the reverse of Ericson's order, so that the first match of the sequential algorithm wins
    bc_w = safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    closest = torch.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[..., None],
                          b + bc_w[..., None] * (c - b), closest)
    closest = torch.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[..., None],
                          a + safe_div(d2, d2 - d6)[..., None] * ac, closest)
    closest = torch.where(((d6 >= 0) & (d5 <= d6))[..., None], c, closest)
    closest = torch.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[..., None],
                          a + safe_div(d1, d1 - d3)[..., None] * ab, closest)
    closest = torch.where(((d3 >= 0) & (d4 <= d3))[..., None], b, closest)
    closest = torch.where(((d1 <= 0) & (d2 <= 0))[..., None], a, closest)
    return ((points - closest) ** 2).sum(-1)


def points_to_mesh_sq(points: Tensor, vertices: Tensor, faces: Tensor, candidates: Tensor) -> Tensor:
    """Squared distance from each point to the nearest of its candidate triangles of a mesh.

    Args:
        points: (B, P, 3).
        vertices: (B, V, 3) of the mesh.
        faces: (F, 3).
        candidates: (P, K) face indices to search for each point (all faces, or e.g. the K nearest at rest).

    Returns:
        (B, P) squared distances.
    """
    triangles = vertices[:, faces[candidates]]  # (B, P, K, 3, 3)
    return point_triangle_distance_sq(points[:, :, None], triangles).min(-1).values


def mesh_to_points_sq(vertices: Tensor, faces: Tensor, points: Tensor, candidates: Tensor) -> Tensor:
    """Squared distance from each triangle of a mesh to the nearest of its candidate points.

    Args:
        vertices: (B, V, 3) of the mesh.
        faces: (F, 3).
        points: (B, P, 3).
        candidates: (F, K) point indices to search for each triangle.

    Returns:
        (B, F) squared distances.
    """
    triangles = vertices[:, faces][:, :, None]  # (B, F, 1, 3, 3)
    return point_triangle_distance_sq(points[:, candidates], triangles).min(-1).values


_PAIRS_PER_CHUNK = 1 << 22  # point-triangle pairs searched at once by the all-faces distances (~1 GB of temporaries)


def _rows(total: int, per_row: int) -> int:
    """How many rows of `per_row` point-triangle pairs to search at once (about _PAIRS_PER_CHUNK pairs)."""
    return max(1, min(total, _PAIRS_PER_CHUNK // max(per_row, 1)))


def points_to_all_faces_sq(points: Tensor, vertices: Tensor, faces: Tensor) -> Tensor:
    """Squared distance from each point to the nearest triangle of the whole mesh (pytorch3d's point-to-face term).

    The nearest triangle is searched without gradients, a chunk of points at a time (memory O(B F) per point instead
    of O(B P F)); the distance to it is then computed with gradients, which equal those of the minimum over all faces.

    Args:
        points: (B, P, 3).
        vertices: (B, V, 3) of the mesh.
        faces: (F, 3).

    Returns:
        (B, P) squared distances.
    """
    b, p = points.shape[:2]
    triangles = vertices[:, faces]  # (B, F, 3, 3)
    with torch.no_grad():
        step = _rows(p, b * len(faces))
        nearest = torch.cat([point_triangle_distance_sq(chunk[:, :, None], triangles[:, None]).argmin(-1)
                             for chunk in points.detach().split(step, dim=1)], dim=1)  # (B, P)
    chosen = triangles[torch.arange(b, device=points.device)[:, None], nearest]  # (B, P, 3, 3)
    return point_triangle_distance_sq(points, chosen)


def faces_to_all_points_sq(vertices: Tensor, faces: Tensor, points: Tensor) -> Tensor:
    """Squared distance from each triangle of a mesh to the nearest of all points (pytorch3d's face-to-point term),
    searched without gradients a chunk of faces at a time, as `points_to_all_faces_sq`.

    Args:
        vertices: (B, V, 3) of the mesh.
        faces: (F, 3).
        points: (B, P, 3).

    Returns:
        (B, F) squared distances.
    """
    b, p = points.shape[:2]
    triangles = vertices[:, faces]  # (B, F, 3, 3)
    with torch.no_grad():
        step = _rows(len(faces), b * p)
        nearest = torch.cat([point_triangle_distance_sq(points.detach()[:, None], chunk[:, :, None]).argmin(-1)
                             for chunk in triangles.detach().split(step, dim=1)], dim=1)  # (B, F)
    chosen = points[torch.arange(b, device=points.device)[:, None], nearest]  # (B, F, 3)
    return point_triangle_distance_sq(chosen, triangles)
