"""Errors of fitted hand joints against the truth: 2D reprojection, MPJPE after root alignment, PA-MPJPE after a
similarity (Procrustes) alignment, mask IoU, and the tail of the 2D errors (which frames and joints carry it)."""

from __future__ import annotations

import numpy as np

__all__ = ["procrustes_align", "mpjpe", "pa_mpjpe", "pixel_error", "mask_iou", "error_tail"]


def procrustes_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`source` moved by the similarity (rotation, uniform scale, translation) that best fits it to `target`.

    Args:
        source, target: (..., J, 3) point sets, any unit.

    Returns:
        (..., J, 3) aligned source (Umeyama 1991, least squares, no reflection).
    """
    source, target = np.asarray(source, dtype=float), np.asarray(target, dtype=float)
    mu_s, mu_t = source.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(np.swapaxes(b, -1, -2) @ a)  # (..., 3, 3) covariance target x source
    d = np.sign(np.linalg.det(u @ vt))
    signs = np.stack([np.ones_like(d), np.ones_like(d), d], -1)
    rotation = u @ (signs[..., None] * vt)
    scale = (sigma * signs).sum(-1) / (a ** 2).sum((-1, -2))
    return scale[..., None, None] * a @ np.swapaxes(rotation, -1, -2) + mu_t


def mpjpe(pred: np.ndarray, true: np.ndarray, *, root: int = 0) -> np.ndarray:
    """(...,) mean joint distance after subtracting each set's joint `root`; pred, true (..., J, 3), same unit."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    return np.linalg.norm((pred - pred[..., root:root + 1, :]) - (true - true[..., root:root + 1, :]), axis=-1).mean(-1)


def pa_mpjpe(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(...,) mean joint distance after the Procrustes alignment of pred onto true; (..., J, 3), same unit."""
    return np.linalg.norm(procrustes_align(pred, true) - np.asarray(true, dtype=float), axis=-1).mean(-1)


def pixel_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(..., J) 2D distances, px; pred, true (..., J, 2)."""
    return np.linalg.norm(np.asarray(pred, dtype=float) - np.asarray(true, dtype=float), axis=-1)


def mask_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one shape (1.0 when both are empty)."""
    pred, true = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    union = np.logical_or(pred, true).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, true).sum() / union)


def error_tail(errors: np.ndarray, names: list[str], *, threshold: float = 12.0) -> dict:
    """Where a set of 2D joint errors has its tail.

    Args:
        errors: (F, J) px, one row per frame.
        names: J joint names.
        threshold: px; a frame whose mean error exceeds it counts as a tail frame.

    Returns:
        {"mean", "median": over all errors; "frame_mean_p90": the 90th percentile of the per-frame means;
        "tail_frames": how many frames have a mean above `threshold`; "tail_share": the share of the summed error
        that those frames hold; "by_joint": {name: [mean, 95th percentile]} over frames}, px, rounded to 0.01.
    """
    errors = np.asarray(errors, dtype=float)
    if errors.ndim != 2 or errors.shape[1] != len(names) or len(errors) == 0:
        raise ValueError(f"errors has shape {errors.shape}; expected (F, {len(names)}) with F >= 1")
    frame = errors.mean(1)
    tail = frame > threshold
    return {"mean": round(float(errors.mean()), 2), "median": round(float(np.median(errors)), 2),
            "frame_mean_p90": round(float(np.percentile(frame, 90)), 2), "tail_frames": int(tail.sum()),
            "tail_share": round(float(errors[tail].sum() / max(errors.sum(), 1e-12)), 3),
            "by_joint": {name: [round(float(errors[:, j].mean()), 2), round(float(np.percentile(errors[:, j], 95)), 2)]
                         for j, name in enumerate(names)}}
