"""The textured-mesh baseline ("MANO + texture"): the posed MANO-HD of every frame from the capture's annotations,
one colour per vertex averaged from the training images, rendered by ray casting.

    layer = hand_layer(root, "mano", hand="right", levels=2, lbs_weights="")      # MANO-HD, float64
    vertices = pose_meshes(layer, cache.global_orient, cache.hand_pose, cache.betas)   # (F, V, 3) model frame
    colours = VertexColours.empty(V)
    colours.add_frame(vertices[f], faces, cache.Th[f], cache.K[f], image, mask)   # every frame: (H, W, 3), (H, W)
    table = colours.filled(faces)                                                 # (V, 3), unseen vertices filled
    shot = render_vertex_colours(vertices[g], faces, table, -cache.Th[g], K, size, background)

A vertex takes a frame's colour when it is front-facing (its normal points towards the camera), visible (the first
hit of the camera ray through it is the vertex itself) and projects between four pixels of the frame's mask; the
colour is the image bilinearly sampled at the projection. Units: model frame M in dm (x_cam = x_M + Th), pixels
with integer coordinates at pixel centres, colours in [0, 1] as the images encode them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import smplx
from smplx import MANO
from smplx.manohd.skinning import load_lbs_weights
from smplx.utils.raycast import EmbreeMesh
from segment.interhand import project
from segment.posing import create_model
from handavatar.data.rays import pixel_directions

__all__ = ["hand_layer", "pose_meshes", "VertexColours", "MeshRender", "render_vertex_colours",
           "VISIBILITY_TOLERANCE"]

VISIBILITY_TOLERANCE = 1e-3
"""dm: a vertex is visible when the camera ray through it hits nothing closer than this before it (0.1 mm)."""


def hand_layer(root: str | Path, model: str | None, *, hand: str, levels: int, lbs_weights: str = "") -> MANO:
    """MANO-HD (float64) of the model a capture's annotations were made for (`segment.posing.create_model`),
    subdivided `levels` times, with the skinning weights of the `lbs_weights` file ('': the averaged ones).

    Raises:
        FileNotFoundError: the weights file does not exist.
    """
    layer = smplx.subdivide(create_model(root, model, hand=hand), levels)
    if lbs_weights:
        if not Path(lbs_weights).is_file():
            raise FileNotFoundError(f"smpl_cfg.lbs_weights={lbs_weights} does not exist: make it with "
                                    "scripts/train_lbs.sh, or set smpl_cfg.lbs_weights='' for the averaged weights")
        with torch.no_grad():
            layer.lbs_weights.copy_(load_lbs_weights(lbs_weights, layer, levels=levels))
    return layer


def pose_meshes(layer: MANO, global_orient: np.ndarray, hand_pose: np.ndarray, betas: np.ndarray, *,
                chunk: int = 64) -> np.ndarray:
    """(F, V, 3) posed vertices (model frame M, dm; sealed when the layer is) of F frames' (F, 3) camera-frame
    global rotations, (F, 45) hand poses (mean pose included, as the annotation cache stores them) and (F, NB)
    shapes."""
    dtype = layer.v_template.dtype
    out = []
    with torch.no_grad():
        for s in range(0, len(global_orient), chunk):
            part = slice(s, s + chunk)
            posed = layer(betas=torch.as_tensor(betas[part, :layer.num_betas], dtype=dtype),
                          global_orient=torch.as_tensor(global_orient[part], dtype=dtype),
                          hand_pose=torch.as_tensor(hand_pose[part], dtype=dtype))
            out.append(posed.vertices.double().numpy())
    return np.concatenate(out)


def _cell(x: np.ndarray, y: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows (N,) of the top-left pixel of the 2 x 2 pixels that bilinear sampling at (N,) pixel
    coordinates x, y inside a width x height image reads."""
    return (np.minimum(np.floor(x), width - 2).astype(np.int64), np.minimum(np.floor(y), height - 2).astype(np.int64))


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, C) values of an (H, W, C) image at (N,) pixel coordinates inside it, bilinearly interpolated (float64)."""
    x0, y0 = _cell(x, y, image.shape[1], image.shape[0])
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    image = np.asarray(image, float)
    return ((1 - fy) * ((1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1])
            + fy * ((1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]))


@dataclass
class VertexColours:
    """Running sums of the colours each vertex took in the frames added so far."""

    total: np.ndarray  # (V, 3) sum of colours
    count: np.ndarray  # (V,) frames that saw the vertex

    @classmethod
    def empty(cls, num_vertices: int) -> VertexColours:
        return cls(np.zeros((num_vertices, 3)), np.zeros(num_vertices, np.int64))

    @staticmethod
    def seen(vertices: np.ndarray, faces: np.ndarray, Th: np.ndarray, K: np.ndarray, mask: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Which vertices one frame sees, and where.

        Args:
            vertices: (V, 3) posed, model frame, dm. faces: (F, 3), counter-clockwise from outside.
            Th: (3,) x_cam = x_M + Th, dm. K: (3, 3) intrinsics of the frame, px.
            mask: (H, W) bool hand mask of the frame.

        Returns:
            ids (N,) of the vertices seen (front-facing, visible, and projecting between four hand pixels, so that
            bilinear sampling reads only the hand) and their (N, 2) pixel coordinates (x, y).
        """
        normals = smplx.vertex_normals(torch.as_tensor(vertices), torch.as_tensor(faces)).numpy()
        centre = -np.asarray(Th, float)  # the camera centre in M
        cam = vertices + Th
        xy = project(cam, K)
        h, w = mask.shape
        inside = (cam[:, 2] > 0) & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
        ids = np.flatnonzero(inside & (((centre - vertices) * normals).sum(1) > 0))
        x0, y0 = _cell(xy[ids, 0], xy[ids, 1], w, h)
        ids = ids[mask[y0, x0] & mask[y0, x0 + 1] & mask[y0 + 1, x0] & mask[y0 + 1, x0 + 1]]
        rays = vertices[ids] - centre  # (N, 3): t = 1 at the vertex
        face, _, t = EmbreeMesh(vertices, faces).intersect(np.broadcast_to(centre, rays.shape), rays)
        visible = (face < 0) | (t >= 1 - VISIBILITY_TOLERANCE / np.linalg.norm(rays, axis=1))  # a miss: grazing
        return ids[visible], xy[ids[visible]]

    def add_frame(self, vertices: np.ndarray, faces: np.ndarray, Th: np.ndarray, K: np.ndarray, image: np.ndarray,
                  mask: np.ndarray) -> None:
        """Add one frame's colours: `image` (H, W, 3) in [0, 1] sampled bilinearly where the vertices it sees
        project (`seen`, same arguments)."""
        ids, xy = self.seen(vertices, faces, Th, K, mask)
        np.add.at(self.total, ids, _bilinear(image, xy[:, 0], xy[:, 1]))
        np.add.at(self.count, ids, 1)

    def filled(self, faces: np.ndarray) -> np.ndarray:
        """(V, 3) mean colour per vertex; a vertex no frame saw takes the mean of its neighbours that have one,
        ring after ring.

        Raises:
            ValueError: no frame saw any vertex.
        """
        if not self.count.any():
            raise ValueError("no training frame saw any vertex of the hand: check the masks and the annotations")
        colours = self.total / np.maximum(self.count, 1)[:, None]
        known = self.count > 0
        edges = smplx.unique_edges(np.asarray(faces))[0]
        edges = np.concatenate([edges, edges[:, ::-1]])  # both directions: (source, target)
        while not known.all():
            flow = known[edges[:, 0]] & ~known[edges[:, 1]]
            if not flow.any():  # a part no seen vertex connects to: the mean of all that were seen
                colours[~known] = colours[self.count > 0].mean(0)
                break
            sums, counts = np.zeros_like(colours), np.zeros(len(colours))
            np.add.at(sums, edges[flow, 1], colours[edges[flow, 0]])
            np.add.at(counts, edges[flow, 1], 1)
            reached = counts > 0
            colours[reached] = sums[reached] / counts[reached, None]
            known = known | reached
        return colours


@dataclass
class MeshRender:
    """A ray-cast picture of the textured mesh."""

    rgb: np.ndarray  # (H, W, 3) colour in [0, 1], background behind
    alpha: np.ndarray  # (H, W) fraction of a pixel's rays that hit the mesh
    depth: np.ndarray  # (H, W) mean camera depth of those hits, dm (0 where none)


def render_vertex_colours(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, origin: np.ndarray,
                          K: np.ndarray, size: int, background: np.ndarray, *, supersample: int = 1) -> MeshRender:
    """Ray-cast a mesh whose colour is interpolated barycentrically from its vertices.

    Args:
        vertices: (V, 3) model frame, dm. faces: (F, 3). colours: (V, 3) in [0, 1].
        origin: (3,) the camera centre in the model frame (-Th), dm.
        K: (3, 3) intrinsics of the size x size picture, px.
        background: (3,) colour where a ray hits nothing.
        supersample: s x s rays per pixel on a regular grid (1: one ray through each pixel centre), averaged.

    Returns:
        MeshRender: rgb = mean over a pixel's rays of (hit colour, or background).
    """
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    gy, gx, sy, sx = np.meshgrid(np.arange(size), np.arange(size), offsets, offsets, indexing="ij")
    directions = pixel_directions(K, (gx + sx).ravel(), (gy + sy).ravel())  # camera z = 1: t is depth
    face, bary, t = EmbreeMesh(vertices, faces).intersect(np.broadcast_to(origin, directions.shape), directions)
    hit = face >= 0
    colour = np.broadcast_to(np.asarray(background, float), (len(face), 3)).copy()
    colour[hit] = np.einsum("nk,nkc->nc", bary[hit], colours[faces[face[hit]]])
    rays = supersample ** 2
    hits = hit.reshape(size, size, rays).sum(-1)
    depth = np.where(hit, t, 0.0).reshape(size, size, rays).sum(-1) / np.maximum(hits, 1)
    return MeshRender(rgb=colour.reshape(size, size, rays, 3).mean(2), alpha=hits / rays, depth=depth)
