"""The fast renderer: the same samples and the same picture as the reference (`render_reference`), with the work
that cannot change it left out.

- Rays that cross no part box stay background: the field is never asked about them.
- Samples outside every part box have occupancy and soft part occupancies exactly 0 (no opacity, no contribution to
  SelF's running maximum): they are not evaluated.
- Inside, the field is given the part boxes that hold each point (PairOF evaluates only those pairs).
- With a band (`handavatar.render.band`), only samples whose nearest posed anchor lies within it are evaluated (a
  band per anchor, band 'auto': and those behind that anchor's face, inside the surface): the rest of space is taken
  as empty (an approximation: the reference evaluates the whole part boxes).
- Rays are marched `group` samples at a time; a ray stops once its transmittance falls below tolerance / 2, and
  albedo and shading are evaluated only at samples whose compositing weight is at least tolerance / (2 S) (with
  tolerance 0: wherever it is not zero). Together these change the composited rgb, albedo, shading and alpha of a
  ray by less than `tolerance`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from handavatar.render.anchors import AnchorIndex
from handavatar.render.field import PoseField
from handavatar.render.surface import composite_surface_albedo
from handavatar.render.volume import composite, running_maximum

__all__ = ["march"]


def march(origin: Tensor, directions: Tensor, z: Tensor, crosses: Tensor, field: PoseField, background: Tensor, *,
          anchor_index: AnchorIndex, band: float | Tensor, group: int, tolerance: float) -> dict[str, Tensor]:
    """Render R rays with S samples each, front to back, leaving out what cannot change the picture.

    Args:
        origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1.
        z: (R, S) sample depths, increasing along each ray.
        crosses: (R,) bool, the ray crosses some part box.
        field: the posed hand.
        background: (3,) colour behind the hand.
        anchor_index: the nearest-anchor search over `field.anchors`.
        band: a distance (dm; 0: no band), or (A,) one per anchor (then the inside of the surface too).
        group: samples per ray marched at once.
        tolerance: see the module docstring (0: exact).

    Returns:
        'rgb', 'albedo' (R, 3) with the background behind; 'shading' and 'depth' (R, 1) weighted sums; 'alpha' (R,)
        accumulated opacity; 'occupancy' (N,) and 'points' (N, 3) of the N samples evaluated (inside a part box and
        the band, before their ray stopped), grouped by march step.
    """
    rays, samples = z.shape
    alive = crosses.nonzero()[:, 0]
    passed = z.new_ones(alive.shape[0])  # transmittance of the alive rays
    carried = z.new_zeros(alive.shape[0], field.boxes.rotations.shape[0])  # SelF's running maximum so far
    per_sample = field.surface_albedo is None  # the albedo composited from the samples (published)
    widths = (("shading", 1), ("depth", 1), ("alpha", 1)) + ((("rgb", 3), ("albedo", 3)) if per_sample else ())
    totals = {name: z.new_zeros(rays, width) for name, width in widths}
    evaluated_points, evaluated_occupancy = [z.new_zeros(0, 3)], [z.new_zeros(0)]
    behind = field.face_normals if torch.is_tensor(band) else None  # per-anchor band: the inside of the surface too
    for start in range(0, samples, group):
        if alive.numel() == 0:
            break
        depth = z[alive, start:start + group]  # (r, g)
        points = origin + depth[..., None] * directions[alive, None]
        local, in_part = field.part_boxes(points.reshape(-1, 3))
        inside = in_part.any(0).view(depth.shape)
        if torch.is_tensor(band) or band > 0:
            inside[inside.clone()] = anchor_index.near(points[inside], band, normals=behind).to(inside.device)
        occupancy = depth.new_zeros(depth.shape)
        soft = depth.new_zeros(*depth.shape, carried.shape[1])
        if inside.any():
            flat, inner = inside.reshape(-1), points[inside]
            inner_occupancy, inner_soft = field.occupancy(inner, (local[:, flat], in_part[:, flat]), False)
            occupancy = occupancy.index_put((inside,), inner_occupancy)
            soft = soft.index_put((inside,), inner_soft)
            evaluated_points.append(inner)
            evaluated_occupancy.append(inner_occupancy)
        occlusion = running_maximum(torch.cat([carried[:, None], soft], 1))[:, 1:]
        part = composite(occupancy, {"depth": depth[..., None]}, transmittance=passed)
        # appearance only where its compositing weight can matter: the samples left out weigh less than
        # tolerance / (2 S) each, so together they change a value in [0, 1] by less than tolerance / 2
        active = part["weights"] > (tolerance / (2 * samples) if tolerance > 0 else 0.0)
        albedo = depth.new_zeros(*depth.shape, 3) if per_sample else None
        shading = depth.new_zeros(*depth.shape, 1)
        if active.any():
            dists, ids = anchor_index.query(points[active])
            a, s = field.appearance(dists, ids, occlusion[active])
            shading = shading.index_put((active,), s)
            if albedo is not None:
                albedo = albedo.index_put((active,), a)
        weights = part["weights"][..., None]
        part.update(shading=(weights * shading).sum(1), alpha=part["alpha"][:, None])
        if albedo is not None:
            part.update(rgb=(weights * albedo * shading).sum(1), albedo=(weights * albedo).sum(1))
        totals = {name: value.index_add(0, alive, part[name]) for name, value in totals.items()}
        keep = part["transmittance"] >= tolerance / 2
        alive, passed, carried = alive[keep], part["transmittance"][keep], occlusion[keep, -1]
    totals["alpha"] = totals["alpha"][:, 0]
    alpha = totals["alpha"]
    if not per_sample:
        totals.update(composite_surface_albedo(
            lambda at, along: field.surface_albedo(origin, at, along, anchor_index.query), origin, directions,
            totals["shading"], totals["depth"], alpha, background))
    else:
        totals["rgb"] = totals["rgb"] + (1 - alpha)[:, None] * background
        totals["albedo"] = totals["albedo"] + (1 - alpha)[:, None] * background
    return {**totals, "occupancy": torch.cat(evaluated_occupancy), "points": torch.cat(evaluated_points)}
