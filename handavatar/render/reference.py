"""The reference renderer, the naive published one and the slow twin of `march`: every sample of every ray, every
part pair at every sample, the nearest anchors of every sample among all anchors, albedo and shading everywhere,
composited front to back (`handavatar.render.volume.composite`).
"""

from __future__ import annotations

from torch import Tensor

from handavatar.render.field import PoseField
from handavatar.render.surface import composite_surface_albedo
from handavatar.render.volume import composite, running_maximum

__all__ = ["render_reference"]


def render_reference(origin: Tensor, directions: Tensor, z: Tensor, field: PoseField, background: Tensor
                     ) -> dict[str, Tensor]:
    """Render R rays with S samples each, evaluating everything.

    Args:
        origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1.
        z: (R, S) sample depths, increasing along each ray.
        field: the posed hand.
        background: (3,) colour behind the hand.

    Returns:
        'rgb', 'albedo' (R, 3) with the background behind; 'shading' and 'depth' (R, 1) weighted sums; 'alpha' (R,)
        accumulated opacity; 'weights' (R, S) and 'transmittance' (R,) of `composite`; 'occupancy' (R S,), 'points'
        (R S, 3) and 'in_box' (R S,) bool (inside some part box) of every sample, ray-major.
    """
    rays, samples = z.shape
    points = (origin + z[..., None] * directions[:, None]).reshape(-1, 3)
    occupancy, soft = field.occupancy(points, None, True)
    occupancy = occupancy.view(rays, samples)
    occlusion = running_maximum(soft.reshape(rays, samples, -1))
    dists, ids = field.nearest_anchors(points)
    albedo, shading = field.appearance(dists, ids, occlusion.reshape(rays * samples, -1))
    values = {"shading": shading.view(rays, samples, 1), "depth": z[..., None]}
    if field.surface_albedo is None:
        albedo = albedo.view(rays, samples, 3)
        values.update(rgb=albedo * values["shading"], albedo=albedo)
    result = composite(occupancy, values, background)
    if field.surface_albedo is not None:
        result.update(composite_surface_albedo(
            lambda at, along: field.surface_albedo(origin, at, along, field.nearest_anchors), origin, directions,
            result["shading"], result["depth"], result["alpha"], background))
    in_box = field.part_boxes(points)[1].any(0)  # the published `~all_out`
    return {**result, "occupancy": occupancy.reshape(-1), "points": points, "in_box": in_box}
