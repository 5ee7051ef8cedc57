"""Samples only where the hand can be: along each ray, inside the union of the posed, padded PairOF part boxes
(outside every box the occupancy is exactly zero, so nothing there can be seen).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["part_box_intervals", "sample_in_intervals"]


def part_box_intervals(origin: Tensor, directions: Tensor, rotations: Tensor, joints: Tensor, box_centre: Tensor,
                       box_half: Tensor, *, eps: float = 1e-9) -> tuple[Tensor, Tensor]:
    """Where rays cross each part box (boxes live in bone frames: x^k = R_k^T (x - J_k)).

    Args:
        origin: (3,) ray origin, model frame. directions: (R, 3).
        rotations: (K, 3, 3) R_k; joints: (K, 3) J_k; box_centre, box_half: (K, 3) in the bone frames (one pose of a
            PairOFEncoding).

    Returns:
        enter, leave: (R, K) ray parameters; leave <= enter where the ray misses the box. enter is clamped to 0.
    """
    o = torch.einsum("kji,kj->ki", rotations, origin - joints) - box_centre  # (K, 3) origin relative to box centre
    d = torch.einsum("kji,rj->rki", rotations, directions)  # (R, K, 3)
    d = torch.where(d.abs() < eps, torch.full_like(d, eps), d)
    t0, t1 = (-box_half - o) / d, (box_half - o) / d
    enter = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    leave = torch.maximum(t0, t1).amin(-1)
    return enter, leave


def sample_in_intervals(enter: Tensor, leave: Tensor, count: int, *, stratified: bool = False,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """`count` depths per ray spread evenly over the union of its intervals (by length), near to far.

    Args:
        enter, leave: (R, K) intervals (empty where leave <= enter).
        count: samples per ray S.
        stratified: jitter each sample within its 1/S share of the union's length (training).

    Returns:
        depths (R, S) increasing, and hit (R,) bool: the ray crosses some interval (depths are 0 where not).
    """
    order = torch.argsort(enter, dim=1)
    start, end = torch.gather(enter, 1, order), torch.gather(leave, 1, order)
    end = torch.maximum(end, start)  # empty intervals have zero length
    # the union as disjoint pieces: each interval minus what the earlier ones (sorted by start) already cover
    covered = torch.cummax(end, dim=1).values
    before = torch.cat([torch.full_like(covered[:, :1], -torch.inf), covered[:, :-1]], 1)
    piece_start = torch.maximum(start, before)
    length = (end - piece_start).clamp_min(0.0)
    cumulative = torch.cumsum(length, 1)  # (R, K)
    total = cumulative[:, -1]
    u = (torch.arange(count, dtype=enter.dtype, device=enter.device) + 0.5) / count
    if stratified:
        u = u + (torch.rand(enter.shape[0], count, dtype=enter.dtype, device=enter.device, generator=generator)
                 - 0.5) / count
    arc = u.expand(enter.shape[0], count) * total[:, None]  # (R, S) positions along the union
    piece = torch.searchsorted(cumulative, arc, right=True).clamp_max(enter.shape[1] - 1)
    offset = arc - (torch.gather(cumulative, 1, piece) - torch.gather(length, 1, piece))
    depths = torch.gather(piece_start, 1, piece) + offset
    hit = total > 0
    return torch.where(hit[:, None], depths, torch.zeros_like(depths)), hit
