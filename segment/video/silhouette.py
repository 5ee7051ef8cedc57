"""The image's hand mask as a differentiable target for the hand fit, without a rasteriser.

Two one-way terms tie the projected hand mesh to a mask of the frame (segment.video.fit uses both):

- inside: every projected vertex must fall inside the mask (the mask of a hand is the union of its projected
  triangles, so this holds for hidden vertices too): the mask's signed distance to its edge, sampled bilinearly at the
  projections (`sample_field`), is the penalty where positive;
- coverage: every point of the mask's outline must lie on the projected mesh's outline: its distance to the nearest
  *silhouette vertex* (a vertex on the outline of the projected mesh, found by filling the projected triangles:
  `silhouette_vertices`) is the penalty, a one-way chamfer whose matches are chosen without gradient
  (`outline_distances`).

Both measure to the mask's edge, the boundary between its pixels and the others (where a mask made by coverage,
`segment.masks.fill_triangles`, has the projected outline), not to the centres of its outermost pixels, which lie
half a pixel inside it on average.

Pixel coordinates are OpenCV's: integers at pixel centres, x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from segment.masks import fill_triangles

__all__ = ["SilhouetteTarget", "silhouette_target", "edge_distance", "sample_field", "outline_points",
           "silhouette_vertices", "pad_indices", "outline_distances"]


@dataclass
class SilhouetteTarget:
    """The hand masks of N frames, as the fit reads them."""

    edge: Tensor  # (N, h, w) px: each mask's `edge_distance` in a crop of one size around the hand
    origin: Tensor  # (N, 2) px: the image position (x, y) of each crop's pixel (0, 0)
    outline: Tensor  # (N, P, 2) px: points on each mask's outline, padded
    outline_valid: Tensor  # (N, P) bool
    width: int  # image size, px
    height: int

    def outside_at(self, uv: Tensor) -> Tensor:
        """(N, Q, 2) px image positions -> (N, Q) px distance outside the mask's edge, 0 inside (border values
        beyond the crop)."""
        return sample_field(self.edge, uv - self.origin[:, None].to(uv.dtype)).clamp_min(0)


def silhouette_target(masks: list[np.ndarray], *, max_points: int = 256, margin: float = 0.3) -> SilhouetteTarget:
    """SilhouetteTarget of N masks of one size.

    Args:
        masks: N (H, W) bool or 0/255 hand masks.
        max_points: outline points kept per frame (evenly spaced).
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
    outlines = [outline_points(mask, max_points) for mask in masks]
    count = max(1, max(len(o) for o in outlines))
    outline = np.zeros((len(masks), count, 2))
    valid = np.zeros((len(masks), count), bool)
    for k, o in enumerate(outlines):
        outline[k, :len(o)], valid[k, :len(o)] = o, True
    return SilhouetteTarget(torch.from_numpy(crops), torch.from_numpy(origin.astype(np.float64)),
                            torch.from_numpy(outline), torch.from_numpy(valid), width, height)


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


def sample_field(field: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples of per-frame images at pixel positions, differentiable in `uv`.

    Args:
        field: (N, H, W) values at pixel centres.
        uv: (N, P, 2) px positions (x, y); outside the image the border value is used (zero gradient there).

    Returns:
        (N, P) sampled values.
    """
    n, height, width = field.shape
    scale = uv.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    grid = (uv * scale - 1.0)[:, :, None, :]  # (N, P, 1, 2) in [-1, 1], align_corners=True: -1 is pixel 0's centre
    sampled = torch.nn.functional.grid_sample(field[:, None].to(uv.dtype), grid, mode="bilinear",
                                              padding_mode="border", align_corners=True)
    return sampled[:, 0, :, 0]


def outline_points(mask: np.ndarray, max_points: int) -> np.ndarray:
    """(P, 2) px: points on the mask's edge (outer and hole boundaries): the midpoints of the sides shared by a mask
    pixel and a 4-neighbour outside it, in the order of OpenCV's contours, at most `max_points`, evenly spaced along
    them; sides on the image border are not edges (the hand may go on beyond it); (0, 2) for an empty mask."""
    inside = np.asarray(mask) > 0
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2))
    pixels = np.concatenate([c[:, 0] for c in contours])  # (Q, 2) x, y of the outline's pixels, along the contours
    height, width = inside.shape
    points = []
    for step in ((1, 0), (0, 1), (-1, 0), (0, -1)):
        neighbour = pixels + step
        seen = np.all((neighbour >= 0) & (neighbour < [width, height]), axis=1)
        crack = np.zeros(len(pixels), bool)
        crack[seen] = ~inside[neighbour[seen, 1], neighbour[seen, 0]]
        points.append(np.where(crack[:, None], pixels + 0.5 * np.array(step), np.nan))
    points = np.stack(points, 1).reshape(-1, 2)  # each pixel's sides in contour order
    points = points[~np.isnan(points[:, 0])]
    _, first = np.unique(points, axis=0, return_index=True)  # a pixel met twice by the contours gives its sides once
    points = points[np.sort(first)]
    if len(points) > max_points:
        points = points[np.linspace(0, len(points), max_points, endpoint=False).astype(int)]
    return points


def silhouette_vertices(uv: np.ndarray, faces: np.ndarray, width: int, height: int, *,
                        tolerance: float = 1.5) -> np.ndarray:
    """Indices of the vertices on the outline of a projected mesh.

    Args:
        uv: (V, 2) px projected vertices.
        faces: (F, 3) vertex indices.
        width, height: image size; vertices outside it are not on the outline.
        tolerance: px; a vertex counts when its pixel lies within this distance of the nearest pixel outside the
            projection, filled as the published masks are (segment.masks.fill_triangles, fill='published': whole
            pixels, every pixel a triangle touches) in a crop around the vertices.

    Returns:
        (S,) int64 vertex indices, ascending.
    """
    pixel = np.round(uv).astype(int)
    lo = np.maximum(pixel.min(0) - 2, 0)
    hi = np.minimum(pixel.max(0) + 3, [width, height])
    if np.any(hi <= lo):
        return np.zeros(0, np.int64)
    filled = fill_triangles(pixel - lo, faces, *(hi - lo), fill="published") > 0
    outside = np.zeros((hi - lo)[::-1] + 2, np.uint8)  # a background frame around the crop: the image border
    outside[1:-1, 1:-1] = filled
    depth_in = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    local = pixel - lo
    seen = np.all((local >= 0) & (local < hi - lo), axis=1)
    near = np.zeros(len(uv), bool)
    near[seen] = depth_in[local[seen, 1], local[seen, 0]] <= tolerance
    return np.flatnonzero(near)


def pad_indices(rows: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Ragged per-frame index lists as (N, K) int64 indices (padded with each row's first entry, or 0) and (N, K)
    bool validity."""
    width = max(1, max(len(r) for r in rows))
    index = torch.zeros(len(rows), width, dtype=torch.int64)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for k, r in enumerate(rows):
        if len(r):
            index[k, :len(r)] = torch.as_tensor(r)
            index[k, len(r):] = int(r[0])
            valid[k, :len(r)] = True
    return index, valid


def outline_distances(outline: Tensor, outline_valid: Tensor, uv: Tensor, silhouette: Tensor,
                      silhouette_valid: Tensor) -> tuple[Tensor, Tensor]:
    """For every outline point, its squared distance to the nearest silhouette vertex (the nearest chosen without
    gradient, the distance differentiable in `uv`).

    Args:
        outline: (N, P, 2) px mask outline points, padded; outline_valid: (N, P) bool.
        uv: (N, V, 2) px projected vertices.
        silhouette: (N, S) int64 silhouette vertex indices, padded; silhouette_valid: (N, S) bool.

    Returns:
        squared distances (N, P) px^2 (0 where the point or its frame's silhouette is missing) and nearest (N, P)
        int64, the vertex index each point matched.
    """
    candidates = torch.gather(uv, 1, silhouette[..., None].expand(-1, -1, 2))  # (N, S, 2)
    with torch.no_grad():
        squared = torch.cdist(outline.to(uv.dtype), candidates.detach()) ** 2  # (N, P, S)
        squared = squared.masked_fill(~silhouette_valid[:, None, :], float("inf"))
        nearest = torch.gather(silhouette, 1, squared.argmin(-1))  # (N, P) vertex indices
    matched = torch.gather(uv, 1, nearest[..., None].expand(-1, -1, 2))  # (N, P, 2)
    valid = outline_valid & silhouette_valid.any(-1, keepdim=True)
    squared = (matched - outline.to(uv.dtype)).pow(2).sum(-1)
    return torch.where(valid, squared, torch.zeros_like(squared)), nearest
