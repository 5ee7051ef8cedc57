"""Samples along rays and front-to-back compositing (reference §4.3).

The occupancy of a sample is used directly as its opacity (no interval length, as in the published code): with
alpha_i at samples i = 0..S-1 ordered near to far, transmittance T_i = prod_{j<i} (1 - alpha_j + 1e-10), weight
w_i = alpha_i T_i, and a ray's colour sum_i w_i c_i + (1 - sum_i w_i) background.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_depths", "composite", "running_maximum"]


def sample_depths(near: Tensor, far: Tensor, count: int, *, stratified: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
    """Depths of `count` samples per ray between near and far.

    Args:
        near, far: (R,) ray parameters (camera depth for the avatar's rays).
        count: samples per ray S.
        stratified: jitter each sample uniformly between the midpoints to its neighbours (training), instead of
            the evenly spaced depths near + (far - near) k / (S - 1).
        generator: random source for the jitter.

    Returns:
        (R, S) depths, increasing along each ray.
    """
    t = torch.linspace(0.0, 1.0, count, dtype=near.dtype, device=near.device)
    z = near[:, None] * (1 - t) + far[:, None] * t
    if stratified and count > 1:
        mids = 0.5 * (z[:, 1:] + z[:, :-1])
        upper = torch.cat([mids, z[:, -1:]], -1)
        lower = torch.cat([z[:, :1], mids], -1)
        u = torch.rand(z.shape, dtype=z.dtype, device=z.device, generator=generator)
        z = lower + (upper - lower) * u
    return z


def composite(alpha: Tensor, values: dict[str, Tensor], background: Tensor | None = None, *,
              transmittance: Tensor | None = None) -> dict[str, Tensor]:
    """Front-to-back compositing of per-sample values.

    Args:
        alpha: (R, S) opacities in [0, 1], samples near to far.
        values: name -> (R, S, C) per-sample values to integrate (e.g. 'rgb', 'albedo', 'shading', 'depth').
        background: (R, 3) or (3,) colour composited behind 'rgb' and 'albedo' (omitted: nothing behind).
        transmittance: (R,) light left when the ray reaches the first sample (omitted: 1), to composite a ray in
            consecutive stretches.

    Returns:
        'weights' (R, S), 'alpha' (R,) accumulated opacity, 'transmittance' (R,) left after the last sample, and for
        each value name (R, C): the weighted sum, plus (1 - alpha) background for 'rgb' and 'albedo'.
    """
    passed = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    if transmittance is not None:
        passed = passed * transmittance[:, None]
    start = torch.ones_like(alpha[:, :1]) if transmittance is None else transmittance[:, None]
    weights = alpha * torch.cat([start, passed[:, :-1]], dim=-1)
    accumulated = weights.sum(-1)
    out = {"weights": weights, "alpha": accumulated, "transmittance": passed[:, -1]}
    for name, value in values.items():
        integral = (weights[..., None] * value).sum(1)
        if background is not None and name in ("rgb", "albedo"):
            integral = integral + (1.0 - accumulated)[:, None] * background
        out[name] = integral
    return out


def running_maximum(soft_part_occupancy: Tensor) -> Tensor:
    """SelF's occlusion input (reference §4.3): (R, S, J) soft part occupancies at samples near to far -> (R, S, J)
    their running maximum along each ray, detached (shading never pushes on the geometry)."""
    return torch.cummax(soft_part_occupancy.detach(), dim=1).values
