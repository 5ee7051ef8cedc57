"""Quick shaded pictures of a mesh (orthographic, Embree ray casting), for demos and README figures."""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from smplx.utils.fileio import to_uint8

__all__ = ["render_preview", "render_sheet", "VIEWS"]

VIEWS = {  # name: (direction the camera looks along, image-up direction), model frame
    "front": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "back": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "side": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "top": ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0)),
}

_SKIN = np.array([0.87, 0.69, 0.58])


def render_preview(vertices: np.ndarray, faces: np.ndarray, *, view: str = "front", size: int = 256,
                   supersample: int = 2, color: np.ndarray = _SKIN) -> np.ndarray:
    """Render a mesh with smooth Lambert shading from a key light near the camera, on white.

    Args:
        vertices: (V, 3) positions, any unit.
        faces: (F, 3) vertex indices, counter-clockwise from outside.
        view: a key of VIEWS.
        size: output width and height in pixels; the mesh is fitted into the frame with a margin.
        supersample: rays per pixel along each axis (anti-aliasing).
        color: (3,) surface colour in [0, 1], or (V, 3) one per vertex (interpolated).

    Returns:
        (size, size, 3) uint8 image.
    """
    if view not in VIEWS:
        raise ValueError(f"view={view!r} is not one of {sorted(VIEWS)}")
    forward, up = (np.asarray(v, dtype=np.float64) for v in VIEWS[view])
    right = np.cross(forward, up)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    centre = (mesh.bounds[0] + mesh.bounds[1]) / 2
    half = 1.1 * np.abs((vertices - centre) @ np.stack([right, up], 1)).max()
    n = size * supersample
    u = (np.arange(n) + 0.5) / n * 2 - 1
    grid_u, grid_v = np.meshgrid(u, -u)
    origins = (centre - forward * (mesh.scale * 2) + half * (grid_u.reshape(-1, 1) * right
                                                            + grid_v.reshape(-1, 1) * up))
    directions = np.broadcast_to(forward, origins.shape)
    hits, ray_ids, face_ids = RayMeshIntersector(mesh).intersects_location(origins, directions,
                                                                            multiple_hits=False)
    image = np.ones((n * n, 3))
    if len(ray_ids):
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[face_ids], hits)
        normals = np.einsum("nk,nkc->nc", bary, mesh.vertex_normals[faces[face_ids]])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        light = -forward + 0.5 * up + 0.3 * right
        diffuse = np.clip(normals @ (light / np.linalg.norm(light)), 0, 1)
        color = np.asarray(color, dtype=float)
        if color.ndim == 2:
            color = np.einsum("nk,nkc->nc", bary, color[faces[face_ids]])
        image[ray_ids] = color * (0.25 + 0.75 * diffuse[:, None])
    image = image.reshape(size, supersample, size, supersample, 3).mean((1, 3))
    return to_uint8(image)


def render_sheet(meshes: list[np.ndarray], faces: np.ndarray, *, views: tuple[str, ...] = ("top", "back"),
                 size: int = 256) -> np.ndarray:
    """A grid of previews: one row per mesh, one column per view.

    Args:
        meshes: N arrays (V, 3) of vertices sharing `faces`.
        faces: (F, 3).
        views: keys of VIEWS.
        size: pixels per picture.

    Returns:
        (N size, len(views) size, 3) uint8 image.
    """
    return np.concatenate([np.concatenate([render_preview(v, faces, view=view, size=size) for view in views], 1)
                           for v in meshes], 0)
