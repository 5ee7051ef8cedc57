"""Render rays of a posed hand with the options' renderer: the samples along each ray (`RenderOptions.sampling`),
then the fast renderer (`march`) or the reference (`render_reference`), which draw the same samples.

    out = render_rays(origin, directions, near, far, field, background, RenderOptions(samples=24))
"""

from __future__ import annotations

import torch
from torch import Tensor

from handavatar.render.anchors import AnchorIndex
from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.field import PoseField
from handavatar.render.march import march
from handavatar.render.options import RenderOptions
from handavatar.render.reference import render_reference
from handavatar.render.volume import sample_depths

__all__ = ["render_rays"]


def render_rays(origin: Tensor, directions: Tensor, near: Tensor, far: Tensor, field: PoseField, background: Tensor,
                options: RenderOptions, *, stratified: bool = False, generator: torch.Generator | None = None,
                anchor_index: AnchorIndex | None = None, band: float | Tensor | None = None) -> dict[str, Tensor]:
    """Render R rays of one posed hand.

    Args:
        origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1. near, far: (R,) depths where
            the ray enters and leaves the posed hand's 3D box (sampling 'box').
        field: the posed hand (`PoseField`); background: (3,) colour behind it.
        options: renderer, samples, sampling, group, tolerance, band.
        stratified: jitter the samples (training); generator: their random source.
        anchor_index: the fast renderer's nearest-anchor search over `field.anchors` (built here when omitted; a
            caller rendering a frame in chunks builds it once).
        band: the fast renderer's band for this pose (`handavatar.render.band`; omitted: `options.band`, which must
            then be a distance, since 'auto' is measured per pose).

    Returns:
        'rgb', 'albedo' (R, 3) with the background behind; 'shading' (R, 1) and 'depth' (R, 1) weighted sums;
        'alpha' (R,) accumulated opacity; 'occupancy' (N,) and 'points' (N, 3) of the N samples the renderer
        evaluated (reference: all R x S, ray-major, and 'in_box' (N,); fast: those inside a part box before the ray
        stopped).

    Raises:
        ValueError: the fast renderer with band 'auto' and no `band` given.
    """
    if options.sampling == "parts" or options.renderer == "fast":  # (R, K) where each ray crosses each part box
        enter, leave = part_box_intervals(origin, directions, *field.boxes)
    if options.sampling == "parts":
        z, _ = sample_in_intervals(enter, leave, options.samples, stratified=stratified, generator=generator)
    else:
        z = sample_depths(near, far, options.samples, stratified=stratified, generator=generator)  # (R, S)
    if options.renderer == "reference":
        return render_reference(origin, directions, z, field, background)
    if band is None:
        if options.band == "auto":
            raise ValueError("band 'auto' is measured per pose: pass that pose's band (HandAvatar.surface_band, or "
                             "handavatar.render.band.measure_band), or set a band distance")
        band = options.band
    if anchor_index is None:
        anchor_index = AnchorIndex(field.anchors, field.neighbours)
    return march(origin, directions, z, (leave > enter).any(1), field, background, anchor_index=anchor_index,
                 band=band, group=options.group, tolerance=options.tolerance)
