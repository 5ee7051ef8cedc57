"""Cutting the hand surface into its 16 skinning parts, tight and extended (reference §3.1), and fixed surface samples
(anchors and part clouds) stored as face + barycentric coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from smplx.joint_names import NUM_JOINTS, PARENTS

__all__ = ["PAIRS", "Partition", "partition_mesh", "sample_faces"]

PAIRS = tuple((PARENTS[k], k) for k in range(1, NUM_JOINTS))
"""The 15 parent-child part pairs: (0,1), (1,2), (2,3), (0,4), ... (13,14), (14,15)."""


@dataclass
class Partition:
    vertex_part: np.ndarray  # (V,) part of each vertex: argmax of its skinning weights
    face_part: np.ndarray  # (F,) part of each face: majority of its vertices, a three-way tie to the smallest
    tight_faces: list[np.ndarray]  # 16 arrays of face ids labelled k
    extended_faces: list[np.ndarray]  # 16 arrays: faces of k, its parent and children near k's tight faces
    tight_vertices: list[np.ndarray]  # 16 arrays of the vertex ids labelled k


def partition_mesh(vertices: np.ndarray, faces: np.ndarray, lbs_weights: np.ndarray, *,
                   extended_dist: float = 0.01) -> Partition:
    """Partition a hand mesh by its skinning weights.

    Args:
        vertices: (V, 3) rest-pose template, metres.
        faces: (F, 3).
        lbs_weights: (V, 16).
        extended_dist: a face of the parent or a child joins part k's extended set when its three vertices all lie
            within this distance (metres) of a vertex of k's tight faces.

    Raises:
        ValueError: a part has no face (its skinning weights never win); PairOF needs all 16.
    """
    vertex_part = np.asarray(lbs_weights).argmax(1)
    labels = vertex_part[faces]  # (F, 3)
    a, b, c = labels.T
    face_part = np.where((a == b) | (a == c), a, np.where(b == c, b, labels.min(1)))
    tight, extended, tight_vertices = [], [], []
    for k in range(NUM_JOINTS):
        own = np.flatnonzero(face_part == k)
        if len(own) == 0:
            raise ValueError(f"no face of the mesh belongs to part {k} (no vertex is skinned mostly to it); PairOF "
                             "needs all 16 parts: check the skinning weights")
        family = {k, PARENTS[k]} | {j for j in range(NUM_JOINTS) if PARENTS[j] == k}
        candidates = np.flatnonzero(np.isin(face_part, list(family - {-1})))
        tree = cKDTree(vertices[np.unique(faces[own])])
        near = tree.query(vertices[faces[candidates]].reshape(-1, 3), distance_upper_bound=extended_dist)[0]
        keep = np.isfinite(near).reshape(-1, 3).all(1)
        tight.append(own)
        extended.append(candidates[keep])
        tight_vertices.append(np.flatnonzero(vertex_part == k))
    return Partition(vertex_part, face_part, tight, extended, tight_vertices)


def sample_faces(vertices: np.ndarray, faces: np.ndarray, face_ids: np.ndarray, count: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted samples on a subset of faces, returned as (count,) face ids and (count, 3) barycentrics
    (1 - sqrt u, sqrt u (1 - v), sqrt u v), uniform over each triangle."""
    corners = vertices[faces[face_ids]]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    chosen = face_ids[rng.choice(len(face_ids), size=count, p=area / area.sum())]
    su, v = np.sqrt(rng.random(count)), rng.random(count)
    return chosen, np.stack([1 - su, su * (1 - v), su * v], axis=1)
