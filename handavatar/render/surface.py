"""The albedo looked up once per ray, at the ray's expected surface point (not in the paper; `network.albedo_at:
surface`).

The published renderer looks the albedo up at every ray sample and composites it: a pixel's albedo is a blend of the
codes around every sample that carries weight, spread along the ray around PairOF's surface (and the steps of the
samples show as ridges across the fingers). Here the renderer composites the shading and the depth as usual, then
looks the albedo up once, at the point the compositing weights say the ray meets the surface:

    x_s = o + d * depth / alpha,        depth = sum_i w_i z_i,  alpha = sum_i w_i

(`depth / alpha` is the weight-averaged sample depth; directions have camera z = 1, so z is the camera depth), and
the pixel is that albedo times the composited shading:

    rgb = albedo(x_s) * sum_i w_i shading_i + (1 - alpha) background
    albedo image = alpha * albedo(x_s) + (1 - alpha) background

which is the published compositing of an albedo that is constant along each ray.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["expected_surface_points", "composite_surface_albedo"]


def expected_surface_points(origin: Tensor, directions: Tensor, depth: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Where each ray meets the surface, by its compositing weights.

    Args:
        origin: (3,) ray origin, model frame (dm).
        directions: (R, 3) ray directions, camera z = 1 (model frame).
        depth: (R,) or (R, 1) composited depth sum_i w_i z_i (without background).
        alpha: (R,) accumulated opacity sum_i w_i.

    Returns:
        points: (H, 3) o + d depth / alpha of the H rays with alpha > 0, model frame (dm), detached (the albedo does
            not push on the geometry through its lookup point, as the published per-sample lookups, whose sample
            depths are fixed); hit: (R,) bool, alpha > 0.
    """
    depth = depth.reshape(-1)
    hit = alpha > 0
    along = (depth[hit] / alpha[hit]).detach()
    return origin.detach() + along[:, None] * directions[hit].detach(), hit


def composite_surface_albedo(albedo_of: Callable[[Tensor], Tensor], origin: Tensor, directions: Tensor,
                             shading: Tensor, depth: Tensor, alpha: Tensor, background: Tensor) -> dict[str, Tensor]:
    """'rgb' and 'albedo' of rays whose albedo is looked up once, at `expected_surface_points`.

    Args:
        albedo_of: (H, 3) points, model frame (dm) -> (H, 3) albedo in [0, 1] (the avatar's albedo field at the
            points' nearest posed anchors).
        origin: (3,); directions: (R, 3), camera z = 1.
        shading: (R, 1) composited shading sum_i w_i shading_i; depth: (R, 1) composited depth; alpha: (R,).
        background: (3,) or (R, 3) colour behind the hand.

    Returns:
        'rgb': (R, 3) albedo(x_s) shading + (1 - alpha) background; 'albedo': (R, 3) alpha albedo(x_s) + (1 - alpha)
        background; rays with alpha 0 are background and the field is not asked about them.
    """
    points, hit = expected_surface_points(origin, directions, depth, alpha)
    albedo = shading.new_zeros(shading.shape[0], 3)
    if hit.any():
        albedo = albedo.index_put((hit,), albedo_of(points).to(albedo.dtype))
    behind = (1 - alpha)[:, None] * background
    return {"rgb": albedo * shading + behind, "albedo": alpha[:, None] * albedo + behind}
