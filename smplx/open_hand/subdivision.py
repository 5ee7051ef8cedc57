"""Catmull-Clark subdivision of a closed quad mesh, carrying any per-vertex attributes along."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CatmullClark", "catmull_clark", "triangulate_quads"]


@dataclass
class CatmullClark:
    values: np.ndarray  # (V + E + F, C) new vertex values: vertex points, then edge points, then face points
    quads: np.ndarray  # (4 F, 4) new quads; quads 4f..4f+3 are the children of old face f
    edges: np.ndarray  # (E, 2) old edges (min, max); edge point of edges[e] is new vertex V + e

    def edge_point(self, a: int, b: int) -> int:
        """New index of the edge point of old edge (a, b)."""
        key = (min(a, b), max(a, b))
        hit = np.flatnonzero((self.edges[:, 0] == key[0]) & (self.edges[:, 1] == key[1]))
        if len(hit) != 1:
            raise KeyError(f"({a}, {b}) is not an edge of the mesh")
        return self.values.shape[0] - self.quads.shape[0] // 4 - len(self.edges) + int(hit[0])


def catmull_clark(values: np.ndarray, quads: np.ndarray) -> CatmullClark:
    """One Catmull-Clark step on a closed, consistently oriented quad mesh.

    Args:
        values: (V, C) per-vertex values: positions and any attributes that should be subdivided the same way
            (e.g. skinning weights; affine combinations keep rows summing to 1).
        quads: (F, 4) vertex indices, every edge shared by exactly two faces.

    Returns:
        CatmullClark with the new values and quads (orientation kept).
    """
    nv, nf = len(values), len(quads)
    face_pts = values[quads].mean(1)
    half = np.stack([quads, np.roll(quads, -1, axis=1)], -1).reshape(-1, 2)
    keys = np.sort(half, axis=1)
    edges, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if np.any(counts != 2):
        raise ValueError(f"catmull_clark needs a closed mesh; {np.sum(counts != 2)} edges do not have two faces")
    half_face = np.repeat(np.arange(nf), 4)
    edge_face_sum = np.zeros((len(edges), values.shape[1]))
    np.add.at(edge_face_sum, inverse, face_pts[half_face])
    edge_pts = (values[edges[:, 0]] + values[edges[:, 1]] + edge_face_sum) / 4

    valence = np.bincount(quads.reshape(-1), minlength=nv).astype(float)
    face_avg = np.zeros_like(values, dtype=float)
    np.add.at(face_avg, quads.reshape(-1), np.repeat(face_pts, 4, axis=0))
    face_avg /= valence[:, None]
    mid_avg = np.zeros_like(values, dtype=float)
    mids = (values[edges[:, 0]] + values[edges[:, 1]]) / 2
    np.add.at(mid_avg, edges[:, 0], mids)
    np.add.at(mid_avg, edges[:, 1], mids)
    mid_avg /= valence[:, None]  # closed quad mesh: as many edges as faces around each vertex
    vert_pts = (face_avg + 2 * mid_avg + (valence[:, None] - 3) * values) / valence[:, None]

    edge_of = (nv + inverse).reshape(nf, 4)  # edge point of corner i -> i + 1
    face_of = nv + len(edges) + np.arange(nf)
    new_quads = np.stack([quads, edge_of, np.repeat(face_of[:, None], 4, 1), np.roll(edge_of, 1, axis=1)], -1)
    return CatmullClark(np.concatenate([vert_pts, edge_pts, face_pts]), new_quads.reshape(-1, 4), edges)


def triangulate_quads(quads: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Split each quad (a, b, c, d) along its shorter diagonal into two triangles with the quad's orientation.

    Returns:
        (2 Q, 3) triangles; triangles 2q and 2q + 1 come from quad q.
    """
    a, b, c, d = quads.T
    ac = np.linalg.norm(positions[a] - positions[c], axis=1)
    bd = np.linalg.norm(positions[b] - positions[d], axis=1)
    use_ac = (ac <= bd)[:, None]
    first = np.where(use_ac, np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    second = np.where(use_ac, np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.stack([first, second], 1).reshape(-1, 3)
