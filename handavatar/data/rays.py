"""Camera rays in the model frame and their intersection with an axis-aligned box (reference §6.4).

Ray directions are K^-1 (u, v, 1) for pixel coordinates (u, v) (integers at pixel centres), unnormalised with camera
z = 1, so the ray parameter t is camera depth and near/far are depths.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pixel_directions", "ray_box_intersection", "box_hit_mask"]


def pixel_directions(K: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(..., 3) directions K^-1 (x, y, 1) of pixels with coordinates x, y (...,) in the camera frame (z = 1)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return np.stack([(x - cx) / fx, (y - cy) / fy, np.ones_like(x, dtype=float)], axis=-1)


def _slab(origin, d: np.ndarray, low: float, high: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit parameters of rays o + t d across the slab low <= x <= high of one axis. Components of d
    smaller than eps in magnitude are replaced by +-eps (as the published code)."""
    d = np.where(np.abs(d) < eps, np.where(d < 0, -eps, eps), d)
    t0, t1 = (low - origin) / d, (high - origin) / d
    return np.minimum(t0, t1), np.maximum(t0, t1)


def ray_box_intersection(origin: np.ndarray, directions: np.ndarray, box_min: np.ndarray, box_max: np.ndarray,
                         *, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where rays o + t d enter and leave an axis-aligned box (slab method).

    Args:
        origin: (3,) or (..., 3) ray origins.
        directions: (..., 3).
        box_min, box_max: (3,) corners.

    Returns:
        near (...,), far (...,) in units of |d|, and hit (...,) bool: the ray meets the box ahead of its origin
        (near < far, far > 0). near is clamped to 0 for an origin inside the box; near = far = 0 where not hit.
    """
    origin = np.asarray(origin, dtype=float)
    slabs = [_slab(origin[..., a], directions[..., a], box_min[a], box_max[a], eps) for a in range(3)]
    near = np.maximum(np.maximum(slabs[0][0], slabs[1][0]), slabs[2][0])
    far = np.minimum(np.minimum(slabs[0][1], slabs[1][1]), slabs[2][1])
    hit = (near < far) & (far > 0)
    return np.where(hit, np.maximum(near, 0.0), 0.0), np.where(hit, far, 0.0), hit


def box_hit_mask(K: np.ndarray, origin: np.ndarray, box_min: np.ndarray, box_max: np.ndarray, width: int,
                 height: int, *, eps: float = 1e-5) -> np.ndarray:
    """(height, width) bool: which pixels' rays meet the box. The test of `ray_box_intersection` on every pixel,
    computed per column and per row: a pixel ray's x slab depends only on its column, its y slab only on its row."""
    x = pixel_directions(K, np.arange(width, dtype=float), np.zeros(width))[:, 0]
    y = pixel_directions(K, np.zeros(height), np.arange(height, dtype=float))[:, 1]
    cols = _slab(origin[0], x, box_min[0], box_max[0], eps)
    rows = _slab(origin[1], y, box_min[1], box_max[1], eps)
    depth = _slab(origin[2], np.ones(1), box_min[2], box_max[2], eps)
    near = np.maximum(np.maximum(cols[0][None, :], rows[0][:, None]), depth[0])
    far = np.minimum(np.minimum(cols[1][None, :], rows[1][:, None]), depth[1])
    return (near < far) & (far > 0)
