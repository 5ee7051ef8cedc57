"""Meshes of the PairOF field: marching cubes of the occupancy at the 0.5 level, coloured by part."""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes

from pairof.model import PART_COLOURS, PairOF, PairOFEncoding

__all__ = ["extract_mesh"]


def extract_mesh(field: PairOF, encoding: PairOFEncoding, low: np.ndarray, high: np.ndarray, *,
                 resolution: int = 96, level: float = 0.5) -> trimesh.Trimesh:
    """The level set of one pose's occupancy on a grid over [low, high] (M frame).

    Args:
        field: the field; encoding: its encoding of one pose (B = 1).
        low, high: (3,) grid corners.
        resolution: grid points per axis.
        level: iso-level.

    Returns:
        A mesh with outward faces and vertex colours from each vertex's most occupied part (PART_COLOURS); empty
        when the occupancy never crosses the level.
    """
    axes = [np.linspace(low[i], high[i], resolution) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(1, -1, 3)
    dtype = encoding.joints.dtype
    with torch.no_grad():
        occupancy = field.query(torch.as_tensor(grid, dtype=dtype, device=encoding.joints.device), encoding)
    volume = occupancy.occupancy.reshape(resolution, resolution, resolution).float().cpu().numpy()
    if not volume.min() < level < volume.max():
        return trimesh.Trimesh()
    spacing = tuple((high - low) / (resolution - 1))
    vertices, faces, _, _ = marching_cubes(volume, level, spacing=spacing)
    mesh = trimesh.Trimesh(vertices + low, faces, process=False)
    if mesh.volume < 0:
        mesh.invert()
    with torch.no_grad():
        parts = field.query(torch.as_tensor(mesh.vertices[None], dtype=dtype, device=encoding.joints.device),
                            encoding, intermediate=True).part_occupancy[0]
    mesh.visual.vertex_colors = (PART_COLOURS[parts.argmax(0).cpu().numpy()] * 255).astype(np.uint8)
    return mesh
