"""The image's hand mask as a differentiable target for the hand fit, without a differentiable rasteriser.

The fit minimises the area where the projected hand mesh and the mask disagree (pixels in one and not the other).
That area changes only where the projection's outline moves: moving a piece of outline outwards by a small distance
adds the strip it sweeps to the projection, which adds to the disagreement where the strip lies outside the mask and
takes from it where inside. So the area's gradient in the projected vertices is an integral along the outline of
(1 - 2 m) times the outline's outward motion, m the mask's value there (0 outside, 1 inside, linear across its edge),
as in differentiable renderers that sample edges (Li et al. 2018, "Differentiable Monte Carlo ray tracing through edge
sampling"). Its minimum is where the projection matches the mask.

- `mesh_outline` finds the outline: the mesh filled on a sub-pixel grid, each piece of the filled region's border
  tied to the mesh edge it lies on (an edge where the projection folds: its two faces on the same side of it).
- `mask_disagreement` sums (1 - 2 m) times the outward motion over those pieces, each moving with its edge, as a
  zero-valued term whose gradient is the area's.

m comes from the mask's signed distance to its edge (`edge_distance`), the boundary between its pixels and the others
(where a mask made by coverage, `segment.masks.fill_triangles`, has the projected outline).

Pixel coordinates are OpenCV's: integers at pixel centres, x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from segment.masks import fill_fine

__all__ = ["SilhouetteTarget", "silhouette_target", "edge_distance", "sample_field", "MeshEdges", "mesh_edges",
           "OutlinePoints", "mesh_outline", "mask_disagreement"]


@dataclass
class SilhouetteTarget:
    """The hand masks of N frames, as the fit reads them."""

    edge: Tensor  # (N, h, w) px: each mask's `edge_distance` in a crop of one size around the hand
    origin: Tensor  # (N, 2) px: the image position (x, y) of each crop's pixel (0, 0)

    def value_at(self, frame: Tensor, xy: Tensor) -> Tensor:
        """The mask's value (1 inside, 0 outside, linear across its edge) at (P, 2) px image positions of the given
        (P,) frames (border values beyond the crop)."""
        local = xy - self.origin[frame].to(xy.dtype)
        return (0.5 - sample_field(self.edge, frame, local)).clamp(0, 1)


def silhouette_target(masks: list[np.ndarray], *, margin: float = 0.3) -> SilhouetteTarget:
    """SilhouetteTarget of N masks of one size.

    Args:
        masks: N (H, W) bool or 0/255 hand masks.
        margin: each crop extends the largest mask box by this share of its size on every side.
    """
    height, width = np.asarray(masks[0]).shape
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(np.asarray(mask) > 0)
        boxes.append((xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else (0, 0, 0, 0))
    boxes = np.asarray(boxes, dtype=float)
    size = np.ceil((boxes[:, 2:] - boxes[:, :2] + 1).max(0) * (1 + 2 * margin)).astype(int)  # (w, h) of every crop
    origin = np.floor((boxes[:, :2] + boxes[:, 2:]) / 2 - size / 2).astype(int)  # (N, 2)
    pad = int(size.max())
    crops = np.zeros((len(masks), size[1], size[0]), np.float32)
    for k, mask in enumerate(masks):
        canvas = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
        canvas[pad:pad + height, pad:pad + width] = np.asarray(mask) > 0
        (x0, y0) = origin[k] + pad
        crops[k] = edge_distance(canvas)[y0:y0 + size[1], x0:x0 + size[0]]
    return SilhouetteTarget(torch.from_numpy(crops), torch.from_numpy(origin.astype(np.float64)))


def edge_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 px: the signed distance of each pixel centre to the mask's edge, positive outside: the
    distance to the nearest pixel centre of the other side (exact Euclidean, OpenCV's DIST_MASK_PRECISE) less half a
    pixel. Sampled bilinearly it is 0 on an edge along a row or column of pixels, and it is 1-Lipschitz up to that
    half pixel. An empty mask gives zeros (no target); a full one -0.5 and less.

    Args:
        mask: (H, W) bool or 0/255, the hand.
    """
    inside = np.asarray(mask) > 0
    if not inside.any():
        return np.zeros(inside.shape, np.float32)
    outside = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    within = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(inside, 0.5 - within, outside - 0.5).astype(np.float32)


def sample_field(field: Tensor, frame: Tensor, xy: Tensor) -> Tensor:
    """Bilinear values of per-frame images at pixel positions.

    Args:
        field: (N, H, W) values at pixel centres.
        frame: (P,) int64, the image of each point.
        xy: (P, 2) px positions (x, y); beyond the image the border value is used.

    Returns:
        (P,) sampled values, differentiable in `xy` (zero gradient beyond the image).
    """
    _, height, width = field.shape
    x, y = xy[:, 0].clamp(0, width - 1), xy[:, 1].clamp(0, height - 1)
    x0 = x.detach().floor().long().clamp(max=max(width - 2, 0))
    y0 = y.detach().floor().long().clamp(max=max(height - 2, 0))
    fx, fy = x - x0, y - y0
    corner = (frame * height + y0) * width + x0  # flat index of the top left neighbour
    right, below = int(width > 1), width * int(height > 1)
    flat = field.to(xy.dtype).reshape(-1)
    top = flat[corner] * (1 - fx) + flat[corner + right] * fx
    bottom = flat[corner + below] * (1 - fx) + flat[corner + below + right] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class MeshEdges:
    """The edges of a closed, consistently oriented triangle mesh, each once, with what the outline term needs."""

    edges: Tensor  # (E, 2) int64 vertex indices, in the direction of the edge's first face
    third: Tensor  # (E, 2) int64: the vertex opposite the edge in each of its two faces
    counted: Tensor  # (E,) bool: False for the edges of faces that touch an ignored vertex (the wrist's seal)


def mesh_edges(faces: np.ndarray, ignored: np.ndarray | list = ()) -> MeshEdges:
    """MeshEdges of a closed mesh whose neighbouring faces traverse their shared edge in opposite directions.

    Args:
        faces: (F, 3) vertex indices.
        ignored: vertex indices whose faces' edges are not compared with a mask (`MeshEdges.counted`).
    """
    faces = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2) half-edges
    third = np.concatenate([faces[:, 2], faces[:, 0], faces[:, 1]])
    face = np.tile(np.arange(len(faces)), 3)
    _, pair, count = np.unique(np.sort(directed, 1), axis=0, return_inverse=True, return_counts=True)
    if np.any(count != 2):
        raise ValueError(f"the mesh is not closed: {int(np.sum(count != 2))} edges do not have exactly two faces")
    order = np.argsort(pair.ravel(), kind="stable")
    first, second = order[0::2], order[1::2]
    if not np.array_equal(directed[first], directed[second][:, ::-1]):
        raise ValueError("the mesh's faces are not consistently oriented")
    touches = np.isin(faces, np.asarray(ignored, dtype=np.int64)).any(1)
    counted = ~(touches[face[first]] | touches[face[second]])
    return MeshEdges(torch.from_numpy(directed[first]), torch.from_numpy(np.stack([third[first], third[second]], 1)),
                     torch.from_numpy(counted))


def _cross(u, v):
    """The z component of the cross product of (..., 2) arrays or tensors."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


@dataclass
class OutlinePoints:
    """Points on the outline of N projected meshes, each on a mesh edge where the projection folds."""

    frame: Tensor  # (P,) int64
    edge: Tensor  # (P,) int64 index into MeshEdges.edges
    t: Tensor  # (P,) position along the edge, 0 at its first vertex, 1 at its second
    length: Tensor  # (P,) px of outline the point stands for


def _folds(uv: Tensor, mesh: MeshEdges) -> Tensor:
    """(N, E) bool: the projection folds at the edge (its two faces lie on the same side of it)."""
    a, d = uv[:, mesh.edges[:, 0]], uv[:, mesh.edges[:, 1]] - uv[:, mesh.edges[:, 0]]
    return _cross(d, uv[:, mesh.third[:, 0]] - a) * _cross(d, uv[:, mesh.third[:, 1]] - a) > 0


def mesh_outline(uv: np.ndarray, faces: np.ndarray, mesh: MeshEdges, *, fine: int = 2, reach: float = 1.0
                 ) -> OutlinePoints:
    """The outline of each projected mesh, tied to the mesh's edges.

    The mesh is filled on a grid `fine` times finer than the pixels (segment.masks.fill_fine) in a crop around it;
    every side between a filled and an empty cell is a piece of outline and belongs to the nearest edge where the
    projection folds (within `reach` px; pieces nearer an edge that is not `counted`, such as the wrist's seal, are
    left out), at the nearest point of that edge. A piece stands for its side's length times the cosine between the
    side and the edge, so the pieces along a straight outline add up to its length whatever its direction (the grid
    counts every cell an edge touches as inside: the outline found lies up to one cell outside the true one).

    Args:
        uv: (N, V, 2) px projected vertices.
        faces: (F, 3) the mesh's triangles.
        mesh: its edges (mesh_edges(faces)).
    """
    fold = _folds(torch.as_tensor(uv), mesh).numpy()
    pairs, counted = mesh.edges.numpy(), mesh.counted.numpy()
    rows = {key: [] for key in ("frame", "edge", "t", "length")}
    for k in range(len(uv)):
        origin = np.floor(uv[k].min(0)) - 1  # a crop around the projection
        width, height = (np.ceil(uv[k].max(0)) + 2 - origin).astype(int)
        # a closed mesh's projection is covered by the faces of either orientation (a line of sight enters it as
        # often as it leaves), so the faces of one orientation fill it, with half the work
        corners = uv[k, faces]  # (F, 3, 2)
        facing = _cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]) > 0
        filled = fill_fine(uv[k] - origin, faces[facing], width, height, fine) > 0
        across = np.argwhere(filled[:, 1:] != filled[:, :-1])  # sides between horizontal neighbours (i, j) | (i, j + 1)
        down = np.argwhere(filled[1:] != filled[:-1])
        pieces = np.concatenate([np.stack([(across[:, 1] + 1.0) / fine - 0.5, (across[:, 0] + 0.5) / fine - 0.5], 1),
                                 np.stack([(down[:, 1] + 0.5) / fine - 0.5, (down[:, 0] + 1.0) / fine - 0.5], 1)])
        pieces = pieces + origin  # (Q, 2) image px
        vertical = np.arange(len(pieces)) < len(across)  # a side along y (between horizontal neighbours)
        edges = np.flatnonzero(fold[k])
        if not len(edges) or not len(pieces):
            continue
        a = uv[k, pairs[edges, 0]]
        d = uv[k, pairs[edges, 1]] - a  # (C, 2)
        length = np.linalg.norm(d, axis=1)
        # the nearest edge of each piece: points every 1 / (2 fine) px along the edges, the nearest by a k-d tree
        count = np.ceil(length * 2 * fine).astype(int) + 2  # both ends, even of an edge of no length
        owner = np.repeat(np.arange(len(edges)), count)
        t = (np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)) / (count[owner] - 1)
        _, which = cKDTree(a[owner] + t[:, None] * d[owner]).query(pieces)
        which = owner[which]
        a, d = a[which], d[which]
        t = np.clip(((pieces - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-12), 0, 1)
        keep = (np.linalg.norm(a + t[:, None] * d - pieces, axis=1) <= reach) & counted[edges[which]]
        cosine = np.abs(np.where(vertical, d[:, 1], d[:, 0])) / np.maximum(length[which], 1e-12)
        rows["frame"].append(np.full(int(keep.sum()), k))
        rows["edge"].append(edges[which][keep])
        rows["t"].append(t[keep])
        rows["length"].append(cosine[keep] / fine)
    if not rows["frame"]:
        return OutlinePoints(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                             torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    return OutlinePoints(*(torch.from_numpy(np.concatenate(rows[key])) for key in ("frame", "edge", "t", "length")))


def mask_disagreement(uv: Tensor, mesh: MeshEdges, target: SilhouetteTarget, points: OutlinePoints
                      ) -> tuple[Tensor, Tensor]:
    """The area where the projected meshes and their masks disagree, as a term whose gradient in the projected
    vertices is that area's (module docstring).

    Args:
        uv: (N, V, 2) px projected vertices.
        mesh: the mesh's edges (mesh_edges).
        target: the masks.
        points: the outline (mesh_outline, found from these or recent `uv`: each point moves with its edge).

    Returns:
        the term (N,), 0 in value, per frame, px^2; and (N,) px, detached: the outline integral of (1 - 2 m), how much
        the disagreement grows per pixel of outward motion of the whole outline.
    """
    n = uv.shape[0]
    a = uv[points.frame, mesh.edges[points.edge, 0]]
    d = uv[points.frame, mesh.edges[points.edge, 1]] - a
    position = a + points.t[:, None].to(uv.dtype) * d  # (P, 2)
    with torch.no_grad():
        side = _cross(d, uv[points.frame, mesh.third[points.edge, 0]] - a)
        outward = torch.stack([d[:, 1], -d[:, 0]], -1) / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        outward = outward * torch.sign(side)[:, None]
        m = target.value_at(points.frame, position)
        weight = (1 - 2 * m) * points.length.to(uv.dtype)
    motion = ((position - position.detach()) * outward).sum(-1)
    surrogate = torch.zeros(n, dtype=uv.dtype).index_add(0, points.frame, weight * motion)
    total = torch.zeros(n, dtype=uv.dtype).index_add(0, points.frame, weight)
    return surrogate, total
