"""The avatar's albedo baked into a texture: a UV atlas of the rest-pose surface (xatlas), every covered texel's
surface point in the rest pose, and the albedo field there, exactly as the renderer evaluates it (the blended codes
of the point's nearest posed anchors through the albedo MLP).

    atlas = uv_atlas(rig.vertices, rig.faces, size=1024)
    image = bake_albedo(avatar, atlas, size=1024)          # (1024, 1024, 3) uint8
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import xatlas
from scipy.ndimage import distance_transform_edt
from tqdm import tqdm

from smplx.utils.cli import InputError
from handavatar.model import HandAvatar
from handavatar.render.anchors import AnchorIndex

__all__ = ["UVAtlas", "uv_atlas", "texel_points", "bake_albedo"]

_SUBPIXEL = 4  # bits of sub-texel precision when rasterising triangles in UV space


@dataclass
class UVAtlas:
    """The surface cut into charts laid out in the unit square."""

    vertex_map: np.ndarray  # (W,) the rest-mesh vertex of each atlas vertex (seams split vertices)
    faces: np.ndarray  # (F, 3) triangles over the atlas vertices, in the rest mesh's face order
    uvs: np.ndarray  # (W, 2) texture coordinates in [0, 1]: u right, v down (glTF's convention)


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, *, size: int, padding: int = 4) -> UVAtlas:
    """Cut and pack the surface for a size x size texture, charts `padding` texels apart.

    Args:
        vertices: (V, 3) rest-pose vertices (any unit). faces: (F, 3) triangles.
    """
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = size, padding, True
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:
        raise InputError(f"the UV atlas needs {atlas.atlas_count} textures at {size}x{size}; use a larger --texture")
    vertex_map, indices, uvs = atlas[0]
    return UVAtlas(vertex_map=vertex_map.astype(np.int64), faces=indices.astype(np.int64),
                   uvs=uvs.astype(np.float64))


def texel_points(atlas: UVAtlas, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texels each triangle covers and where they lie on it.

    A texel (row i, column j) is covered when its centre ((j + 1/2) / size, (i + 1/2) / size) lies in a triangle
    (OpenCV's polygon fill, 1/16 texel precision).

    Returns:
        (T, 2) covered texels (row, column), (T,) their triangles, (T, 3) barycentric weights (>= 0, summing to 1).
    """
    ids = np.zeros((size, size), np.int32)  # triangle + 1; 0: no triangle
    corners = np.round((atlas.uvs[atlas.faces] * size - 0.5) * (1 << _SUBPIXEL)).astype(np.int32)  # (F, 3, 2)
    for index, triangle in enumerate(corners):
        cv2.fillConvexPoly(ids, triangle, index + 1, lineType=cv2.LINE_8, shift=_SUBPIXEL)
    texels = np.argwhere(ids > 0)
    triangles = ids[texels[:, 0], texels[:, 1]] - 1
    uv = atlas.uvs[atlas.faces[triangles]] * size  # (T, 3, 2) texel units
    centre = texels[:, ::-1] + 0.5  # (u, v) of the texel centres
    edge1, edge2, offset = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0], centre - uv[:, 0]
    det = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    det = np.where(np.abs(det) > 1e-12, det, 1e-12)
    b1 = (offset[:, 0] * edge2[:, 1] - offset[:, 1] * edge2[:, 0]) / det
    b2 = (edge1[:, 0] * offset[:, 1] - edge1[:, 1] * offset[:, 0]) / det
    bary = np.clip(np.stack([1 - b1 - b2, b1, b2], 1), 0.0, None)  # texels the fill rounded in: nearest edge point
    return texels, triangles, bary / bary.sum(1, keepdims=True)


def _fill_empty(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Every texel outside the charts takes the colour of the nearest covered texel (so that filtering and mip
    levels at chart borders do not pull in black)."""
    _, (rows, cols) = distance_transform_edt(~covered, return_indices=True)
    return image[rows, cols]


@torch.no_grad()
def bake_albedo(avatar: HandAvatar, atlas: UVAtlas, *, size: int, chunk: int = 65536) -> np.ndarray:
    """The albedo texture: at every covered texel, the avatar's albedo at that point of the bind-pose surface.

    The bind pose (zero global and hand pose, the deformer at the zero hand pose) is posed by the avatar itself; the
    point's nearest posed anchors and their codes are blended by inverse distance and decoded by the albedo MLP, as
    the renderer does at a sample on the surface.

    Returns:
        (size, size, 3) uint8 sRGB-encoded albedo (the renderer's albedo in [0, 1], scaled by 255).
    """
    ref = avatar.hand.v_template
    posed = avatar.pose(ref.new_zeros(1, 3), ref.new_zeros(1, 45))
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    index = AnchorIndex(encoding.anchors[0], avatar.field.neighbours)
    corners = posed.vertices[0].double().cpu().numpy()[atlas.vertex_map][atlas.faces]  # (F, 3, 3) dm
    texels, triangles, bary = texel_points(atlas, size)
    points = torch.from_numpy(np.einsum("tk,tkc->tc", bary, corners[triangles])).to(ref)
    colours = []
    for start in tqdm(range(0, len(points), chunk), desc="bake albedo", unit="chunk", leave=False):
        dists, ids = index.query(points[start:start + chunk])
        colours.append(avatar.albedo(dists, ids).float().cpu().numpy())
    image = np.zeros((size, size, 3), np.float32)
    image[texels[:, 0], texels[:, 1]] = np.concatenate(colours) if colours else 0.0
    covered = np.zeros((size, size), bool)
    covered[texels[:, 0], texels[:, 1]] = True
    return np.round(np.clip(_fill_empty(image, covered), 0, 1) * 255).astype(np.uint8)
