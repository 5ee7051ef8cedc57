"""Ray casting on triangle meshes with Embree (through embreex, as trimesh uses it): first hits with barycentrics,
and occlusion tests. Shared by the synthetic-capture renderer and PairOF's inside test."""

from __future__ import annotations

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

__all__ = ["EmbreeMesh"]


class EmbreeMesh:
    """A triangle mesh in an Embree scene (float32, as Embree computes)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        """vertices: (V, 3); faces: (F, 3) vertex indices, counter-clockwise from outside."""
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self.scene, vertices=np.ascontiguousarray(vertices, dtype=np.float32),
                     indices=np.ascontiguousarray(faces, dtype=np.int32))

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First hits of rays o + t d, t > 0.

        Args:
            origins, directions: (N, 3); directions need not be unit length.

        Returns:
            face (N,) int64 (-1 for a miss), barycentrics (N, 3) of the face's vertices, t (N,) in units of |d|.
        """
        result = self.scene.run(np.ascontiguousarray(origins, dtype=np.float32),
                                np.ascontiguousarray(directions, dtype=np.float32), output=1)
        u, v = result["u"].astype(float), result["v"].astype(float)
        return (result["primID"].astype(np.int64), np.stack([1 - u - v, u, v], axis=1),
                result["tfar"].astype(float))

    def occluded(self, origins: np.ndarray, directions: np.ndarray, tmax: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: does any triangle lie on the ray o + t d for 0 < t < tmax (infinity when None)?"""
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        dists = None if tmax is None else np.ascontiguousarray(tmax, dtype=np.float32)
        return self.scene.run(np.ascontiguousarray(origins, dtype=np.float32),
                              np.ascontiguousarray(directions, dtype=np.float32), dists=dists,
                              query="OCCLUDED") != -1
