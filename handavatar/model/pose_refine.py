"""Per-frame pose refinement (not in the paper): learnable corrections of a frame's fitted pose, so that an avatar
trained on poses fitted to a video (segment.video) can move each frame's hand onto its image.

    corrections = PoseCorrections(len(dataset), fingers=True)   # zero: every frame as fitted
    sample = corrections(sample)              # the pose of frame sample['index'] corrected, rays from its new origin
    loss = loss + weight * corrections.prior(sample['index'])   # L2 toward the fit

A correction (`CORRECTION` layout) holds, for one frame:
- rotation (3,): an axis-angle (radians) in the camera frame applied after the fitted global rotation, R' = exp(r) R
  (`compose_rotations`); the hand turns about its model frame's origin (the posed middle MCP, which `Th` places);
- translation (3,): added to `Th` (model frame = camera orientation, dm), so the rays' origin -Th moves the other way;
  near/far are measured again from the new origin to the frame's box (no gradient: they only bound the samples);
- fingers (45,): added to the 15 finger joints' axis-angles (radians), when `fingers` is on.

`refine_pose` fits one correction to one frame with everything else frozen (held-out frames at validation).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from handavatar.data.rays import ray_box_intersection

__all__ = ["PoseCorrections", "compose_rotations", "corrected_sample", "refine_pose", "CORRECTION"]

CORRECTION = {"rotation": slice(0, 3), "translation": slice(3, 6), "fingers": slice(6, 51)}


def _quaternion(axis_angle: Tensor) -> Tensor:
    """(..., 3) axis-angles, radians -> (..., 4) unit quaternions (w, x, y, z). Differentiable at zero (the angle is
    taken as sqrt(|v|^2 + 1e-24), so the gradient there is that of the first-order term)."""
    angle = torch.sqrt((axis_angle * axis_angle).sum(-1, keepdim=True) + 1e-24)
    half = angle / 2
    return torch.cat([torch.cos(half), axis_angle * (torch.sin(half) / angle)], -1)


def _axis_angle(quaternion: Tensor) -> Tensor:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3) axis-angles with angles in [0, pi]."""
    quaternion = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)  # the shorter way round
    w, xyz = quaternion[..., :1], quaternion[..., 1:]
    sine = torch.sqrt((xyz * xyz).sum(-1, keepdim=True) + 1e-24)
    return xyz * (2 * torch.atan2(sine, w) / sine)


def compose_rotations(delta: Tensor, orient: Tensor) -> Tensor:
    """The axis-angle of exp(delta) exp(orient): the rotation `orient` (..., 3), radians, followed by `delta` (..., 3),
    both about the same (camera) frame's axes. Differentiable in both."""
    a, b = _quaternion(delta), _quaternion(orient)
    w1, v1, w2, v2 = a[..., :1], a[..., 1:], b[..., :1], b[..., 1:]
    product = torch.cat([w1 * w2 - (v1 * v2).sum(-1, keepdim=True),
                         w1 * v2 + w2 * v1 + torch.linalg.cross(v1, v2, dim=-1)], -1)
    return _axis_angle(product)


def corrected_sample(sample: dict, correction: Tensor) -> dict:
    """A dataset sample (handavatar.data, unbatched tensors) with its pose corrected by `correction`: (6,) rotation and
    translation, or (51,) with the fingers too (`CORRECTION`). The rotation and translation ask for a new
    'global_orient', 'Th', 'rays_o' and near/far ('ray_mask' stays: which pixels are rendered); the fingers a new
    'hand_pose'. The other entries are the sample's own."""
    if correction.shape not in ((6,), (51,)):
        raise ValueError(f"a pose correction is (6,) or (51,), not {tuple(correction.shape)}")
    out = dict(sample)
    correction = correction.to(sample["Th"])
    out["global_orient"] = compose_rotations(correction[CORRECTION["rotation"]], sample["global_orient"])
    out["Th"] = sample["Th"] + correction[CORRECTION["translation"]]
    out["rays_o"] = -out["Th"]
    origin = out["rays_o"].detach().cpu().double().numpy()
    near, far, _ = ray_box_intersection(origin, sample["rays_d"].detach().cpu().double().numpy(),
                                        sample["box_min"].cpu().double().numpy(),
                                        sample["box_max"].cpu().double().numpy())
    out["near"], out["far"] = (torch.as_tensor(np.asarray(t, np.float32)).to(sample["near"]) for t in (near, far))
    if correction.shape[0] == 51:
        out["hand_pose"] = sample["hand_pose"] + correction[CORRECTION["fingers"]]
    return out


class PoseCorrections(nn.Module):
    """One zero-initialised correction per training frame (`corrected_sample`), each its own parameter: an optimiser
    that skips parameters without a gradient (Adam with `zero_grad(set_to_none=True)`) then steps only the frame
    rendered, with its own step count and moments, however rarely the frame comes round.

    Args:
        frames: F, frames of the dataset (a sample's 'index' is in [0, F)).
        fingers: also correct the 15 finger joints (51 numbers per frame; else 6: rotation, translation).
    """

    def __init__(self, frames: int, *, fingers: bool):
        super().__init__()
        if frames < 1:
            raise ValueError(f"PoseCorrections needs at least one frame, not {frames}")
        size = 51 if fingers else 6
        self.corrections = nn.ParameterList(nn.Parameter(torch.zeros(size)) for _ in range(frames))

    def __len__(self) -> int:
        return len(self.corrections)

    def forward(self, sample: dict) -> dict:
        """The sample with frame sample['index']'s correction applied (`corrected_sample`)."""
        return corrected_sample(sample, self.corrections[self._frame(sample)])

    def prior(self, sample: dict) -> Tensor:
        """() squared norm of the frame's correction (rad^2 and dm^2): an L2 prior toward the fitted pose."""
        correction = self.corrections[self._frame(sample)]
        return (correction * correction).sum()

    def table(self) -> Tensor:
        """(F, 6 or 51) every frame's correction, detached."""
        return torch.stack([c.detach() for c in self.corrections])

    def _frame(self, sample: dict) -> int:
        index = int(sample["index"])
        if not 0 <= index < len(self.corrections):
            raise IndexError(f"frame index {index} is outside the {len(self.corrections)} frames the pose corrections "
                             "were made for (the training subject or data.skip/data.max_frames changed since "
                             "latest.tar: train a new experiment)")
        return index


def refine_pose(sample_of: Callable[[int], dict], loss_of: Callable[[dict], Tensor], *, steps: int, lr: float,
                prior: float, fingers: bool, device: torch.device | str = "cpu") -> Tensor:
    """Fit one frame's correction with everything else frozen: `steps` Adam steps (rate `lr`) of
    loss_of(corrected_sample(sample_of(step), c)) + prior |c|^2 from c = 0.

    Args:
        sample_of: step -> a sample of the frame (e.g. other patches at each step).
        loss_of: corrected sample -> () loss, differentiable in the sample's pose and rays' origin.
        fingers: correct the finger joints too ((51,), else (6,)).

    Returns:
        (6,) or (51,) the correction, detached.
    """
    correction = torch.zeros(51 if fingers else 6, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([correction], lr=lr)
    for step in range(steps):
        loss = loss_of(corrected_sample(sample_of(step), correction)) + prior * (correction * correction).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return correction.detach()
