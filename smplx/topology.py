"""Connectivity of triangle meshes: edges, one-rings, boundary loops and the wrist seal.

All functions take `faces: (F, 3)` integer vertex indices, counter-clockwise seen from outside, and work in numpy
(connectivity is computed once per model, not per pose).
"""

from __future__ import annotations

import numpy as np

__all__ = ["unique_edges", "one_ring", "boundary_loops", "seal_fan"]


def _half_edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges (a, b), (b, c), (c, a) of each face (a, b, c), face by face."""
    faces = np.asarray(faces, dtype=np.int64)
    return np.stack([faces, np.roll(faces, -1, axis=1)], axis=-1).reshape(-1, 2)


def unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges, numbered in the order they are first met walking the faces.

    Faces are visited in order and each face (a, b, c) yields (a, b), (b, c), (c, a).

    Args:
        faces: (F, 3) vertex indices.

    Returns:
        edges: (E, 2) int64, each row (min, max), in first-appearance order.
        face_edges: (F, 3) int64; face_edges[f, i] is the edge from corner i to corner (i + 1) % 3 of face f.
    """
    half = np.sort(_half_edges(faces), axis=1)
    _, first, inverse = np.unique(half, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique (sorted) id -> rank by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return half[first[order]], rank[inverse.reshape(-1)].reshape(-1, 3)


def one_ring(faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex neighbours, in compressed sparse row form.

    Args:
        faces: (F, 3) vertex indices.
        num_vertices: V; vertices no face uses get no neighbours.

    Returns:
        offsets: (V + 1,) int64; the neighbours of vertex v are neighbours[offsets[v]:offsets[v + 1]], ascending.
        neighbours: (2E,) int64 vertex indices.
    """
    edges, _ = unique_edges(faces)
    both = np.concatenate([edges, edges[:, ::-1]])
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    offsets = np.zeros(num_vertices + 1, dtype=np.int64)
    np.add.at(offsets, both[:, 0] + 1, 1)
    return np.cumsum(offsets), both[:, 1].copy()


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges (edges used by one face), in the direction the faces traverse them.

    Args:
        faces: (F, 3) vertex indices of a consistently oriented, edge-manifold mesh.

    Returns:
        One (L,) int64 array per loop, longest first: loop[i] -> loop[i + 1] is a directed edge of a face, so a fan
        (loop[i + 1], loop[i], centre) continues the surface with a consistent orientation.

    Raises:
        ValueError: if the boundary is not a set of simple loops (a vertex where two boundary paths meet).
    """
    half = _half_edges(faces)
    keys = np.sort(half, axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    boundary = half[counts[inverse.reshape(-1)] == 1]
    nxt: dict[int, int] = {}
    for a, b in boundary.tolist():
        if a in nxt:
            raise ValueError(f"vertex {a} starts two boundary edges; the boundary is not a set of simple loops")
        nxt[a] = b
    loops = []
    while nxt:
        start = min(nxt)
        loop = [start]
        v = nxt.pop(start)
        while v != start:
            if v not in nxt:
                raise ValueError(f"the boundary path through vertex {v} does not close into a loop")
            loop.append(v)
            v = nxt.pop(v)
        loops.append(np.asarray(loop, dtype=np.int64))
    return sorted(loops, key=len, reverse=True)


def seal_fan(loop: np.ndarray, centre: int) -> np.ndarray:
    """Triangles closing a boundary loop with a fan around one extra vertex.

    Args:
        loop: (L,) a loop from `boundary_loops`, in face-traversal direction.
        centre: index of the extra vertex (usually V, appended after the mesh's vertices).

    Returns:
        (L, 3) int64 faces (loop[i + 1], loop[i], centre), oriented consistently with the mesh.
    """
    loop = np.asarray(loop, dtype=np.int64)
    return np.stack([np.roll(loop, -1), loop, np.full_like(loop, centre)], axis=1)
