"""Square crops of full-resolution frames and the matching intrinsics (reference §6.4, steps 3-4)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["crop_transform", "crop_intrinsics", "warp"]


def crop_transform(bbox, *, scale: float = 1.3, size: int = 256) -> np.ndarray:
    """(2, 3) affine map from full-resolution pixels to crop pixels: the square of side scale x the box side around
    the box centre becomes size x size (integer coordinates at pixel centres in both images).

    Args:
        bbox: [x, y, w, h] square box, px.
    """
    x, y, w, h = (float(v) for v in bbox)
    side = scale * max(w, h)
    s = size / side
    x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
    # crop pixel j samples the source at x0 + (j + 0.5) side / size: the crop's pixels tile the square exactly
    return np.array([[s, 0.0, -s * x0 - 0.5], [0.0, s, -s * y0 - 0.5]])


def crop_intrinsics(K: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """(3, 3) intrinsics of the crop: K followed by the crop's scale-and-shift `transform` (2, 3)."""
    return np.vstack([transform, [0.0, 0.0, 1.0]]) @ K


def warp(image: np.ndarray, transform: np.ndarray, size: int, *, border=0.0, nearest: bool = False) -> np.ndarray:
    """The crop of an (H, W[, C]) image: bilinear (or nearest) resampling, `border` outside the source."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    border = tuple(float(b) for b in np.broadcast_to(border, (3,))) if image.ndim == 3 else float(border)
    return cv2.warpAffine(image, transform, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)
