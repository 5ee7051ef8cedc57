"""A small Embree ray tracer for triangle meshes seen by a pinhole camera: albedo, shading, cast shadows, ambient
occlusion and depth as separate images, so that renders come with their own ground-truth decomposition.

Light transport is computed in linear light and encoded with a pure power-law camera response (gamma 2.2, the sRGB
approximation). Shading is stored in that encoded space, so every covered pixel satisfies exactly

    image = coverage (albedo x shading + specular) + (1 - coverage) background

with albedo the encoded surface colour. Units: world and camera coordinates in mm, pixels with integer coordinates at
pixel centres (OpenCV convention, as InterHand2.6M's intrinsics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from smplx.utils.raycast import EmbreeMesh
from segment.interhand import project, world_to_camera

__all__ = ["PinholeCamera", "Light", "ShadingModel", "FrameBuffers", "hemisphere_directions",
           "vertex_ambient_occlusion", "render"]


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera as InterHand2.6M stores it."""

    K: np.ndarray  # (3, 3) intrinsics, pixels
    camrot: np.ndarray  # (3, 3) world-to-camera rotation
    campos: np.ndarray  # (3,) camera centre, world mm
    width: int
    height: int

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixel coordinates and (N,) camera depths (mm) of (N, 3) world points."""
        local = world_to_camera(points, self.camrot, self.campos)
        return project(local, self.K), local[:, 2]

    def rays(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World rays through image points.

        Args:
            x, y: (N,) pixel coordinates (integers are pixel centres).

        Returns:
            origins (N, 3) world mm (the camera centre) and directions (N, 3) whose camera-frame z component is 1,
            so the ray parameter t of a hit is its depth in mm.
        """
        pixels = np.stack([x, y, np.ones_like(x)], axis=1).astype(float)
        directions = pixels @ np.linalg.inv(self.K).T @ np.asarray(self.camrot)  # camrot^T K^-1 p, row-wise
        return np.broadcast_to(np.asarray(self.campos, dtype=float), directions.shape), directions


@dataclass(frozen=True)
class Light:
    """One light. 'directional': `vector` points towards the light; 'point': `vector` is its position (world mm),
    with no distance falloff."""

    kind: str
    vector: tuple[float, float, float]

    def __post_init__(self):
        if self.kind not in ("directional", "point"):
            raise ValueError(f"light kind {self.kind!r} is not 'directional' or 'point'")
        if self.kind == "directional" and np.linalg.norm(self.vector) == 0:
            raise ValueError("a directional light needs a non-zero direction")

    def towards(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Unit directions (N, 3) from points towards the light, and the distances (N,) to it (None if infinite)."""
        if self.kind == "directional":
            d = np.asarray(self.vector, dtype=float)
            return np.broadcast_to(d / np.linalg.norm(d), points.shape), None
        offset = np.asarray(self.vector, dtype=float) - points
        dist = np.linalg.norm(offset, axis=1)
        return offset / np.maximum(dist, 1e-12)[:, None], dist


@dataclass(frozen=True)
class ShadingModel:
    """Linear shading = ambient AO + diffuse visibility max(0, n.l); encoded shading = linear ** (1 / gamma).
    With ambient + diffuse = 1 shading stays in [0, 1]. Specular (Blinn-Phong, encoded space) is added on top."""

    ambient: float = 0.3
    diffuse: float = 0.7
    specular: float = 0.0
    shininess: float = 40.0
    gamma: float = 2.2
    shadows: bool = True  # cast shadows (shadow rays); False: every point sees the light
    ao_rays: int = 64  # ambient-occlusion rays per vertex (0: no occlusion)
    ao_distance: float = 25.0  # mm; farther occluders do not darken


@dataclass
class FrameBuffers:
    """Per-pixel results of `render`, (H, W[, 3]) float arrays; albedo, shading, specular and depth are means over
    the pixel's sub-samples that hit the mesh (0 where none did)."""

    coverage: np.ndarray  # fraction of sub-samples that hit the mesh
    image: np.ndarray  # encoded RGB in [0, 1], background blended by coverage
    albedo: np.ndarray  # encoded RGB in [0, 1]
    shading: np.ndarray  # encoded shading in [0, 1]
    specular: np.ndarray  # encoded specular term
    depth: np.ndarray  # camera z, mm
    lit: np.ndarray  # fraction of hit sub-samples that the light reaches (not in a cast shadow, n.l > 0)


def hemisphere_directions(count: int) -> np.ndarray:
    """(count, 3) cosine-weighted directions on the +z hemisphere, evenly spread (Fibonacci spiral); deterministic."""
    k = np.arange(count) + 0.5
    r = np.sqrt(k / count)  # uniform disc, lifted to the hemisphere: cosine-weighted
    phi = k * np.pi * (3 - np.sqrt(5))
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(1 - r ** 2)], axis=1)


def _tangent_frames(normals: np.ndarray) -> np.ndarray:
    """(N, 3, 3) orthonormal frames whose third column is the unit normal (Duff et al. 2017)."""
    n = normals
    sign = np.where(n[:, 2] >= 0, 1.0, -1.0)
    a = -1.0 / (sign + n[:, 2])
    b = n[:, 0] * n[:, 1] * a
    t1 = np.stack([1 + sign * n[:, 0] ** 2 * a, sign * b, -sign * n[:, 0]], axis=1)
    t2 = np.stack([b, sign + n[:, 1] ** 2 * a, -n[:, 1]], axis=1)
    return np.stack([t1, t2, n], axis=2)


def vertex_ambient_occlusion(mesh: EmbreeMesh, vertices: np.ndarray, normals: np.ndarray, *, rays: int,
                             distance: float) -> np.ndarray:
    """Cosine-weighted ambient occlusion at each vertex: the fraction of `rays` hemisphere rays around the normal that
    leave without meeting the mesh within `distance`.

    Args:
        mesh: the scene holding the mesh.
        vertices: (V, 3) positions, mm.
        normals: (V, 3) unit outward normals.
        rays: rays per vertex (0 gives all ones).
        distance: occluders farther than this (mm) are ignored.

    Returns:
        (V,) in [0, 1]; 1 is fully open.
    """
    if rays == 0:
        return np.ones(len(vertices))
    local = hemisphere_directions(rays)
    directions = np.einsum("vij,rj->vri", _tangent_frames(normals), local).reshape(-1, 3)
    eps = 1e-3 * distance
    origins = np.repeat(vertices + eps * normals, rays, axis=0)
    hit = mesh.occluded(origins, directions, np.full(len(origins), distance))
    return 1.0 - hit.reshape(len(vertices), rays).mean(1)


def _shadow_origins(points: np.ndarray, corners: np.ndarray, corner_normals: np.ndarray,
                    bary: np.ndarray) -> np.ndarray:
    """Shadow-ray origins lifted to the smooth surface the vertex normals describe ("Hacking the shadow terminator",
    Hanika 2021): the point is projected onto each corner's tangent plane when it lies below it, and the projections
    are blended with the barycentrics. Removes the faceted shadow terminator of coarse meshes.

    points (N, 3), corners (N, 3, 3), corner_normals (N, 3, 3) unit, bary (N, 3) -> (N, 3).
    """
    below = np.minimum(0.0, np.einsum("nkc,nkc->nk", points[:, None] - corners, corner_normals))
    return points - np.einsum("nk,nk,nkc->nc", bary, below, corner_normals)


def render(vertices: np.ndarray, faces: np.ndarray, camera: PinholeCamera, light: Light, shading: ShadingModel,
           albedo: Callable[[np.ndarray, np.ndarray], np.ndarray], *, supersample: int = 2,
           background=(0.0, 0.0, 0.0), window: tuple[int, int, int, int] | None = None) -> FrameBuffers:
    """Ray-trace a closed triangle mesh.

    Args:
        vertices: (V, 3) world mm.
        faces: (F, 3) counter-clockwise from outside.
        camera: the camera.
        light: the light.
        shading: the shading model.
        albedo: (face_ids (N,), barycentrics (N, 3)) -> (N, 3) encoded surface colour in [0, 1].
        supersample: s x s rays per pixel on a regular grid (anti-aliasing).
        background: encoded RGB in [0, 1].
        window: (x0, y0, x1, y1) pixel box to trace (end exclusive); pixels outside are background. Default: all.

    Returns:
        FrameBuffers at the camera's full resolution.
    """
    h, w, s = camera.height, camera.width, supersample
    x0, y0, x1, y1 = window if window is not None else (0, 0, w, h)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    background = np.asarray(background, dtype=float)
    out = FrameBuffers(coverage=np.zeros((h, w)), image=np.broadcast_to(background, (h, w, 3)).copy(),
                       albedo=np.zeros((h, w, 3)), shading=np.zeros((h, w)), specular=np.zeros((h, w)),
                       depth=np.zeros((h, w)), lit=np.zeros((h, w)))
    if x1 <= x0 or y1 <= y0:
        return out

    mesh = EmbreeMesh(vertices, faces)
    tri = trimesh.Trimesh(vertices, faces, process=False)
    normals = np.asarray(tri.vertex_normals)
    occlusion = vertex_ambient_occlusion(mesh, vertices, normals, rays=shading.ao_rays,
                                         distance=shading.ao_distance)

    offsets = (np.arange(s) + 0.5) / s - 0.5
    gy, gx, sy, sx = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), offsets, offsets, indexing="ij")
    origins, directions = camera.rays((gx + sx).ravel(), (gy + sy).ravel())
    face, bary, t = mesh.intersect(origins, directions)
    hit = face >= 0
    face, bary, t = face[hit], bary[hit], t[hit]
    corners = vertices[faces[face]]  # (N, 3, 3)
    points = np.einsum("nk,nkc->nc", bary, corners)
    n = np.einsum("nk,nkc->nc", bary, normals[faces[face]])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    view = directions[hit] / np.linalg.norm(directions[hit], axis=1, keepdims=True)
    n = np.where((n * view).sum(1, keepdims=True) > 0, -n, n)  # seen from behind: shade the visible side

    to_light, light_dist = light.towards(points)
    n_dot_l = np.clip((n * to_light).sum(1), 0.0, None)
    visible = n_dot_l > 0
    if shading.shadows and visible.any():
        geometric = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        geometric /= np.linalg.norm(geometric, axis=1, keepdims=True) + 1e-12
        geometric = np.where((geometric * view).sum(1, keepdims=True) > 0, -geometric, geometric)
        lifted = _shadow_origins(points, corners, normals[faces[face]], bary)
        eps = 1e-4 * np.abs(vertices).max() + 1e-3
        origins_l = lifted[visible] + eps * geometric[visible]
        tmax = None if light_dist is None else light_dist[visible] - 2 * eps
        visible[visible] = ~mesh.occluded(origins_l, to_light[visible], tmax)
    ao = (bary * occlusion[faces[face]]).sum(1)
    linear = shading.ambient * ao + shading.diffuse * np.where(visible, n_dot_l, 0.0)
    encoded = np.clip(linear, 0.0, 1.0) ** (1.0 / shading.gamma)
    specular = np.zeros(len(points))
    if shading.specular > 0:
        half = to_light - view
        half /= np.linalg.norm(half, axis=1, keepdims=True) + 1e-12
        specular = np.where(visible, shading.specular * np.clip((n * half).sum(1), 0, 1) ** shading.shininess, 0.0)

    # accumulate sub-samples into pixels
    pixel = np.repeat(np.arange((y1 - y0) * (x1 - x0)), s * s)[hit]
    size = (y1 - y0) * (x1 - x0)

    def pixel_mean(values: np.ndarray, count: np.ndarray) -> np.ndarray:
        total = np.stack([np.bincount(pixel, values[:, c], size) for c in range(values.shape[1])], axis=1)
        return total / np.maximum(count, 1)[:, None]

    count = np.bincount(pixel, minlength=size).astype(float)
    coverage = count / (s * s)
    colour = albedo(face, bary)
    means = pixel_mean(np.column_stack([colour, encoded, specular, t, visible]), count)
    window_shape = (y1 - y0, x1 - x0)
    region = (slice(y0, y1), slice(x0, x1))
    out.coverage[region] = coverage.reshape(window_shape)
    out.albedo[region] = means[:, :3].reshape(*window_shape, 3)
    out.shading[region] = means[:, 3].reshape(window_shape)
    out.specular[region] = means[:, 4].reshape(window_shape)
    out.depth[region] = means[:, 5].reshape(window_shape)
    out.lit[region] = means[:, 6].reshape(window_shape)
    surface = out.albedo[region] * out.shading[region][..., None] + out.specular[region][..., None]
    cov = out.coverage[region][..., None]
    out.image[region] = np.clip(cov * surface + (1 - cov) * background, 0.0, 1.0)
    return out
