"""MANO-HD: midpoint subdivision of a MANO-format model with all its attributes (reference section 2.2)."""

from __future__ import annotations

import dataclasses

import numpy as np

from smplx.body_models import MANO
from smplx.model_file import HandModelData
from smplx.topology import one_ring, unique_edges

__all__ = ["subdivide", "subdivide_data", "laplacian_smooth"]


def laplacian_smooth(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """One uniform Laplacian pass: each vertex becomes the mean of itself and its one-ring (all read before the pass).

    Args:
        vertices: (V, 3).
        faces: (F, 3).

    Returns:
        (V, 3) smoothed vertices; a vertex no face uses stays where it is.
    """
    offsets, neighbours = one_ring(faces, len(vertices))
    counts = np.diff(offsets)
    sums = np.zeros_like(vertices)
    np.add.at(sums, np.repeat(np.arange(len(vertices)), counts), vertices[neighbours])
    return (vertices + sums) / (1 + counts)[:, None]


def _subdivide_once(data: HandModelData) -> HandModelData:
    edges, face_edges = unique_edges(data.faces)
    nv = data.num_vertices
    a, b, c = data.faces.T
    ab, bc, ca = (nv + face_edges).T
    faces = np.stack([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                      np.stack([ca, ab, bc], 1), np.stack([ca, bc, c], 1)], axis=1).reshape(-1, 3)

    def with_midpoints(values: np.ndarray) -> np.ndarray:  # (V, ...) -> (V + E, ...)
        return np.concatenate([values, 0.5 * (values[edges[:, 0]] + values[edges[:, 1]])])

    return dataclasses.replace(
        data,
        v_template=with_midpoints(data.v_template),
        faces=faces,
        shapedirs=with_midpoints(data.shapedirs),
        posedirs=with_midpoints(data.posedirs),
        lbs_weights=with_midpoints(data.lbs_weights),
        j_regressor=np.concatenate([data.j_regressor, np.zeros((data.j_regressor.shape[0], len(edges)))], axis=1),
    )


def subdivide_data(data: HandModelData, levels: int = 2, *, smooth: bool = True) -> HandModelData:
    """Subdivide a model `levels` times.

    Each level adds one vertex at the midpoint of every edge (edges numbered by first appearance over the faces,
    new vertex index V + e) and splits each face (a, b, c) into (a, ab, ca), (ab, b, bc), (ca, ab, bc), (ca, bc, c),
    so V' = V + E and F' = 4 F. A new vertex takes the mean of its edge's endpoints for the template, shapedirs,
    posedirs and skinning weights; the joint regressor gets zero columns for it, so joints come from the original
    vertices only. After the last level the template gets one uniform Laplacian pass (shape and pose blend shapes
    are not smoothed). Original vertex ids, and so the fingertip ids, keep their meaning.

    Args:
        data: the model.
        levels: number of subdivisions (2 gives MANO-HD: 778 -> 3093 -> 12337 vertices on MANO).
        smooth: apply the final Laplacian pass.

    Returns:
        The subdivided model.
    """
    if levels < 0:
        raise ValueError(f"levels={levels} must be >= 0")
    for _ in range(levels):
        data = _subdivide_once(data)
    if levels > 0 and smooth:
        data = dataclasses.replace(data, v_template=laplacian_smooth(data.v_template, data.faces))
    return data


def subdivide(model: MANO, levels: int = 2, *, smooth: bool = True) -> MANO:
    """A new MANO layer over the subdivided mesh, with `model`'s options, dtype and device (see `subdivide_data`).

    The wrist seal of a sealed layer is recomputed by walking the new boundary (64 rim vertices at MANO-HD).
    """
    data = subdivide_data(model.to_model_data(), levels, smooth=smooth)
    return MANO(data, **model.options).to(model.v_template.device)
