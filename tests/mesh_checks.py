"""Mesh checks that the tests use as independent references: Embree ray casting through trimesh."""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from smplx.topology import unique_edges


def edge_face_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of (edge, face) pairs where a mesh edge passes through a face it does not touch.

    A mesh is free of self-intersections iff this is zero: any two intersecting triangles have an edge of one
    crossing the other. Every edge is cast as a ray from one end; hits closer than the other end count.
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    edges, _ = unique_edges(faces)
    origins, ends = vertices[edges[:, 0]], vertices[edges[:, 1]]
    lengths = np.linalg.norm(ends - origins, axis=1)
    locations, ray_ids, tri_ids = RayMeshIntersector(mesh).intersects_location(
        origins, (ends - origins) / lengths[:, None], multiple_hits=True)
    dist = np.linalg.norm(locations - origins[ray_ids], axis=1)
    touches = (faces[tri_ids] == edges[ray_ids, :1]).any(1) | (faces[tri_ids] == edges[ray_ids, 1:]).any(1)
    return int(np.sum((dist < lengths[ray_ids] * (1 - 1e-6)) & ~touches))


def buried_fraction(vertices: np.ndarray, faces: np.ndarray, *, offset: float) -> float:
    """Fraction of vertices that lie inside the rest of the (closed) mesh: each vertex is pushed `offset` outward
    along its normal and tested for being inside by ray parity. A self-penetrating pose buries vertices."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    probes = vertices + offset * mesh.vertex_normals
    return float(np.mean(mesh.ray.contains_points(probes)))
