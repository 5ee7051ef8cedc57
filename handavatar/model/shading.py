"""SelF, the self-occlusion-aware shading field (reference §4.3): a scalar shading in (0, 1) per ray sample from
the running maximum of the soft part occupancies along the ray (how much of each part the ray has already passed
through), the sample's blended anchor embedding and the hand pose. Colour = albedo x shading.

Optionally (not in the paper) SelF also sees the sample's posed surface normal in the camera frame: with lights
fixed to the camera, diffuse shading is then a simple function of an input, instead of a product of rotations the
network must learn from the pose's axis-angles (see the README's avatar section for what it changes).

`LightShading` (not in the paper; `network.lights`) replaces SelF by an explicit image-formation model with a few
learned parameters: ambient light scaled by the point's ambient occlusion, plus K directional lights, each with its
cast shadow (a shadow ray traced on the posed mesh) and its Lambert cosine, through a learned camera response."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pairof.networks import ImplicitNet
from handavatar.render.shadows import camera_hemisphere

__all__ = ["SelF", "LightShading"]


class SelF(nn.Module):
    """IGR-style MLP (Softplus beta 100, skip at layer 2, geometric init) with a sigmoid output.

    Args:
        parts: soft part occupancies per sample (16).
        anchor_dim: width of the anchor embedding (21 for gamma_3 of 3-D positions).
        pose_dim: width of the pose input (48: global rotation and finger pose).
        normal: also take the (3,) posed surface normal of each sample (camera frame).
        dims: hidden widths; skip_in: layers that receive the input again.
    """

    def __init__(self, parts: int = 16, anchor_dim: int = 21, pose_dim: int = 48, *, normal: bool = False,
                 dims: tuple[int, ...] = (256, 256, 256, 256), skip_in: tuple[int, ...] = (2,)):
        super().__init__()
        self.normal = normal
        self.net = ImplicitNet(parts + anchor_dim + pose_dim + (3 if normal else 0), 1, dims, skip_in)

    @staticmethod
    def occlusion(soft_part_occupancy: Tensor) -> Tensor:
        """(R, S, K) soft part occupancies at samples near to far -> their running maximum along the ray, detached
        (shading never pushes on the geometry)."""
        return torch.cummax(soft_part_occupancy.detach(), dim=1).values

    def forward(self, occlusion: Tensor, anchor_embedding: Tensor, pose: Tensor, normal: Tensor | None = None
                ) -> Tensor:
        """Shading of samples.

        Args:
            occlusion: (..., 16) `occlusion` of the samples' soft part occupancies.
            anchor_embedding: (..., anchor_dim) blended over the nearest anchors.
            pose: (..., pose_dim), or (pose_dim,) for all samples: the pose of the frame.
            normal: (..., 3) posed surface normals, camera frame (required with `normal`, ignored without).

        Returns:
            (..., 1) in (0, 1).
        """
        inputs = [occlusion, anchor_embedding, pose.expand(*occlusion.shape[:-1], -1)]
        if self.normal:
            if normal is None:
                raise ValueError("this SelF was built with normal=True: pass the samples' surface normals")
            inputs.append(normal)
        return torch.sigmoid(self.net(torch.cat(inputs, dim=-1)))


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class LightShading(nn.Module):
    """Shading from K learned directional lights, with cast shadows and ambient occlusion (not in the paper):

        linear = a0 + a * AO(x) + sum_k s_k V_k(x) max(0, n(x) . l_k),      shading = linear ** (1 / gamma)

    n: the smooth normal of the posed MANO-HD where the ray meets it; AO: the cosine-weighted share of the shadow-ray
    directions (`handavatar.render.shadows`) that leave the hand, V_k: whether a ray from the point towards light k
    leaves it (both traced on the posed mesh); the light directions l_k (in the capture's world frame, turned into each
    frame's model frame by its camera's rotation: the lights stay in place while the cameras of a multi-camera
    capture see the hand from around it), the strengths a0, a, s_k >= 0 and the response gamma >= 1 are learned. The
    colour is albedo x shading, as with SelF; the shading is not bounded by 1 (the albedo takes the scale).

    Args:
        lights: K; their directions start spread over the half of the world sphere towards -z (facing a camera whose
            rotation is the identity, as the synthetic capture's and a video's).
        gamma: the response's starting exponent (2.2: an sRGB-like camera).
        smoothing: the normals are the posed mesh's vertex normals averaged over the one-ring this many times
            (`smplx.mesh.smoothed_vertex_normals`): MANO-HD's midpoint subdivision and the deformer's offsets make
            its own normals faceted and bumpy.
        offset: shadow rays start this far (dm) off the surface along those normals.
    """

    def __init__(self, lights: int, *, gamma: float = 2.2, smoothing: int = 4, offset: float = 5e-3):
        super().__init__()
        self.smoothing, self.offset = smoothing, offset
        if lights < 1:
            raise ValueError(f"LightShading needs at least one light, got {lights}")
        self.directions = nn.Parameter(camera_hemisphere(lights))
        self.strengths = nn.Parameter(torch.full((lights,), _inverse_softplus(0.7 / lights)))
        self.ambient = nn.Parameter(torch.tensor([_inverse_softplus(0.02), _inverse_softplus(0.3)]))
        self.response = nn.Parameter(torch.tensor(_inverse_softplus(gamma - 1)))

    def light_directions(self, world_rotation: Tensor | None = None) -> Tensor:
        """(K, 3) unit light directions (towards the lights) in a frame's model frame, given its (3, 3)
        world-to-camera `world_rotation` (None: the identity, i.e. in the world frame)."""
        directions = nn.functional.normalize(self.directions, dim=-1)
        return directions if world_rotation is None else directions @ world_rotation.to(directions.dtype).T

    def gamma(self) -> Tensor:
        """The response's exponent gamma >= 1."""
        return 1 + nn.functional.softplus(self.response)

    def forward(self, normals: Tensor, sky_visibility: Tensor, sky_directions: Tensor, light_visibility: Tensor,
                world_rotation: Tensor | None = None) -> Tensor:
        """Shading of H surface points.

        Args:
            normals: (H, 3) unit surface normals (model frame), facing the camera.
            sky_visibility: (H, D) in [0, 1]: which of D directions leave the hand from each point.
            sky_directions: (D, 3) those unit directions.
            light_visibility: (H, K) in [0, 1]: whether each light reaches each point (`light_directions`).
            world_rotation: (3, 3) the frame camera's world-to-camera rotation (None: the identity).

        Returns:
            (H, 1) shading > 0.
        """
        normals = normals.to(self.directions.dtype)
        sky = (normals @ sky_directions.to(normals.dtype).T).clamp_min(0)  # cosine weights of the directions
        occlusion = (sky_visibility.to(sky.dtype) * sky).sum(1) / sky.sum(1).clamp_min(1e-6)
        cosine = (normals @ self.light_directions(world_rotation).T).clamp_min(0)
        floor, ambient = nn.functional.softplus(self.ambient)
        direct = (nn.functional.softplus(self.strengths) * light_visibility.to(cosine.dtype) * cosine).sum(1)
        linear = floor + ambient * occlusion + direct
        return linear.clamp_min(1e-6).pow(1 / self.gamma())[:, None]
