"""Fit the hand model to 2D hand keypoints of a video, all frames at once, on torch (CPU by default).

Unknowns: one shape (betas) for the video; per frame the global rotation and translation in the camera frame and the
15 finger joints as anatomical angles (smplx.hand_pose: flexion, abduction, twist), kept inside JOINT_LIMITS by a
sigmoid. The loss adds

- 2D: confidence-weighted, robust (Geman-McClure) distance between projected model joints and the keypoints, in
  units of the frame's hand size (the keypoints' box diagonal);
- 3D: the model's centred joints against the metric world landmarks (their shape gives depth and scale);
- pose and shape priors (angles towards the relaxed hand, scaled by each joint's range; betas towards zero);
- temporal smoothness of joints and angles between consecutive kept frames;
- with masks of the frames (a refinement that starts from an earlier fit): the area where the projected mesh and the
  mask disagree, in squared hand sizes (segment.video.silhouette); the outline along the wrist's seal is left out
  (the model ends at the wrist, a filmed arm does not).

The rotation and translation start from a Procrustes fit of the palm to the world landmarks and a linear solve of
the projection; a rigid stage then precedes the full fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor
from tqdm import tqdm

from smplx import MANO
from smplx.hand_pose import JOINT_LIMITS, NAMED_POSES
from segment.video.correspondence import LANDMARK_WEIGHTS, PALM_LANDMARKS
from segment.video.landmarks import landmark_layer
from segment.video.silhouette import SilhouetteTarget, mask_disagreement, mesh_edges, mesh_outline

_CM = 0.01  # m

__all__ = ["FitSettings", "HandFit", "fit_hand", "angles_to_pose_torch", "project_torch"]


@dataclass(frozen=True)
class FitSettings:
    rigid_steps: int = 100  # Adam steps on rotation and translation only
    steps: int = 300  # Adam steps on everything
    lr: float = 0.03
    lr_end: float = 0.0  # when set, the learning rate falls exponentially from `lr` to this over each stage
    robust_sigma: float = 0.2  # Geman-McClure scale of the 2D residual, in hand sizes
    w_2d: float = 1.0
    w_3d: float = 5e-3  # per cm^2 of centred joint distance
    w_pose: float = 0.03  # per squared joint range
    w_shape: float = 1e-3
    w_smooth: float = 1e-3  # per cm^2 of joint motion (plus squared angle change per joint range) between frames
    w_mask: float = 8.0  # masks: area where the projected mesh and the mask disagree, per squared hand size
    outline_every: int = 10  # steps between finding the projected mesh's outline again


@dataclass
class HandFit:
    global_orient: np.ndarray  # (N, 3) axis-angle, camera frame, rad
    hand_pose: np.ndarray  # (N, 45) axis-angle, rad, the full pose (the model's hands_mean not subtracted)
    angles: np.ndarray  # (N, 15, 3) degrees [flexion, abduction, twist]
    betas: np.ndarray  # (NB,)
    transl: np.ndarray  # (N, 3) m, added to the model's output
    joints: np.ndarray  # (N, 21, 3) camera frame, m, MANO order with fingertips
    vertices: np.ndarray  # (N, V, 3) camera frame, m (sealed when the model is)
    uv: np.ndarray  # (N, 21, 2) px, projected landmark points of the model (segment.video.landmarks), mediapipe order
    residual_px: np.ndarray  # (N,) median distance between `uv` and the keypoints, px


def project_torch(points: Tensor, focal: float, principal: tuple[float, float]) -> Tensor:
    """(..., 3) camera-frame points (z forward) -> (..., 2) px, OpenCV convention."""
    z = points[..., 2:3].clamp_min(1e-4)
    return points[..., :2] / z * focal + points.new_tensor(principal)


def _quaternion_product(a: Tensor, b: Tensor) -> Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def angles_to_pose_torch(angles: Tensor, frames: Tensor) -> Tensor:
    """Differentiable twin of smplx.hand_pose.angles_to_pose.

    Args:
        angles: (N, 15, 3) degrees [flexion, abduction, twist], R = R_flex R_abd R_twist in the joint's frame.
        frames: (15, 3, 3) anatomical frames (columns: flexion, abduction, twist axes), rest-pose axes.

    Returns:
        (N, 45) axis-angle, radians, rest-pose axes.
    """
    half = torch.deg2rad(angles) / 2
    c, s = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(c[..., 0])
    qx = torch.stack([c[..., 0], s[..., 0], zero, zero], -1)
    qy = torch.stack([c[..., 1], zero, s[..., 1], zero], -1)
    qz = torch.stack([c[..., 2], zero, zero, s[..., 2]], -1)
    q = _quaternion_product(_quaternion_product(qx, qy), qz)
    q = q * torch.where(q[..., :1] < 0, -1.0, 1.0)  # the shorter rotation
    w, v = q[..., 0], q[..., 1:]
    n = v.norm(dim=-1)
    small = n < 1e-6
    factor = torch.where(small, 2 / w, 2 * torch.atan2(n, w) / torch.where(small, 1.0, n))
    local = v * factor[..., None]  # (N, 15, 3) in the joint frames
    return torch.einsum("jab,njb->nja", frames, local).reshape(angles.shape[0], 45)


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) rotation R minimising |R (source - mean) - (target - mean)|; source, target (K, 3)."""
    a, b = source - source.mean(0), target - target.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _solve_translation(points: np.ndarray, uv: np.ndarray, weights: np.ndarray, focal: float,
                       principal: tuple[float, float]) -> np.ndarray:
    """(3,) t such that project(points + t) ~ uv, by linear least squares; points (K, 3) m, uv (K, 2) px."""
    rows, rhs = [], []
    for (x, y, z), (u, v), w in zip(points, uv, weights):
        du, dv = (u - principal[0]) / focal, (v - principal[1]) / focal
        rows += [w * np.array([1.0, 0.0, -du]), w * np.array([0.0, 1.0, -dv])]
        rhs += [w * (du * z - x), w * (dv * z - y)]
    return np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]


def _initial_rigid(layer: MANO, uv: np.ndarray, world: np.ndarray, weights: np.ndarray, focal: float,
                   principal: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame global rotation (N, 3) and translation (N, 3) m of the relaxed rest hand, from the palm's world
    landmarks (rotation) and all keypoints (translation)."""
    with torch.no_grad():
        out = layer(hand_pose=_relaxed_pose(layer, 1))
    rest = out.vertices[0, -21:].double().numpy()
    root = out.joints[0, 0].double().numpy()
    orients, transls = [], []
    palm = list(PALM_LANDMARKS)
    for k in range(len(uv)):
        rotation = _kabsch(rest[palm], world[k][palm])
        posed = (rest - root) @ rotation.T + root  # the model rotates about its wrist joint
        transls.append(_solve_translation(posed, uv[k], weights[k], focal, principal))
        orients.append(Rotation.from_matrix(rotation).as_rotvec())
    return np.array(orients), np.array(transls)


def _relaxed_pose(model: MANO, count: int) -> Tensor:
    frames = torch.as_tensor(model.pose_frames(), dtype=model.v_template.dtype)
    angles = torch.as_tensor(NAMED_POSES["relaxed"], dtype=frames.dtype).expand(count, 15, 3)
    return angles_to_pose_torch(angles, frames)


def _gmof(squared: Tensor, sigma: float) -> Tensor:
    return squared / (squared + sigma ** 2)


def _optimise(stages, loss_fn, lr: float, lr_end: float, bar) -> None:
    """Adam over each (parameters, steps, full) stage in turn."""
    for params, steps, full in stages:
        optimizer = torch.optim.Adam(params, lr=lr)
        for step in range(steps):
            if lr_end:
                optimizer.param_groups[0]["lr"] = lr * (lr_end / lr) ** (step / max(steps - 1, 1))
            optimizer.zero_grad()
            loss = loss_fn(full)
            loss.backward()
            optimizer.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)


class _MaskLoss:
    """The mask term of the fit (module docstring) for the model's vertices, sealed like the model."""

    def __init__(self, model: MANO, masks: SilhouetteTarget, focal: float, principal: tuple[float, float],
                 hand_size: Tensor, settings: FitSettings):
        self.masks, self.focal, self.principal, self.settings = masks, focal, principal, settings
        self.hand_size = hand_size  # (N,) px
        self.seal = model.seal_loop if model.seal else None
        self.faces = model.output_faces.numpy()
        self.edges = mesh_edges(self.faces, [model.v_template.shape[0]] if model.seal else [])  # not the seal
        self.step, self.outline = 0, None

    def __call__(self, vertices: Tensor) -> Tensor:
        """vertices: (N, V, 3) the model's unsealed vertices, camera frame, m -> the scalar loss."""
        if self.seal is not None:
            vertices = torch.cat([vertices, vertices[:, self.seal].mean(1, keepdim=True)], 1)
        uv = project_torch(vertices, self.focal, self.principal)  # (N, V', 2)
        if self.step % self.settings.outline_every == 0:
            self.outline = mesh_outline(uv.detach().double().numpy(), self.faces, self.edges)
        self.step += 1
        area, _ = mask_disagreement(uv, self.edges, self.masks, self.outline)
        return self.settings.w_mask * (area / self.hand_size ** 2).mean()


def fit_hand(model: MANO, uv: np.ndarray, world: np.ndarray, confidence: np.ndarray, *, focal: float,
             principal: tuple[float, float], consecutive: np.ndarray | None = None, offsets_mm: np.ndarray | None = None,
             settings: FitSettings = FitSettings(), start: HandFit | None = None,
             masks: SilhouetteTarget | None = None, progress: bool = True) -> HandFit:
    """Fit `model` to the keypoints of N frames (and to their masks when given).

    Args:
        model: a hand layer built with distal=True and no centring or scaling (output in metres).
        uv: (N, 21, 2) keypoints, px, mediapipe order.
        world: (N, 21, 3) metric landmarks, m, camera axes, any origin (mediapipe's world landmarks).
        confidence: (N, 21) weights in [0, 1] (multiplied by LANDMARK_WEIGHTS).
        focal, principal: intrinsics, px.
        consecutive: (N - 1,) bool, frame i + 1 directly follows frame i (smoothness applies); default all True.
        offsets_mm: (21, 3) where each landmark lies relative to its model joint (segment.video.landmarks); default
            LANDMARK_OFFSETS_MM, zeros: the landmarks are the model's joints.
        start: an earlier fit of the same frames to start from (no initial solve, no rigid stage).
        masks: the frames' hand masks (segment.video.silhouette.silhouette_target); the mask term applies when given.

    Returns:
        HandFit.
    """
    n = len(uv)
    if uv.shape != (n, 21, 2) or world.shape != (n, 21, 3) or confidence.shape != (n, 21) or n == 0:
        raise ValueError(f"keypoints have shapes uv {uv.shape}, world {world.shape}, confidence {confidence.shape}; "
                         "expected (N, 21, 2), (N, 21, 3), (N, 21) with N >= 1")
    if not model.distal or model.center_id is not None or model.scale is not None:
        raise ValueError("fit_hand needs a model made with distal=True, no center_id and no scale")
    dtype = model.v_template.dtype
    weights_np = confidence * np.asarray(LANDMARK_WEIGHTS)
    layer = landmark_layer(model, offsets_mm)
    if start is None:
        orient0, transl0 = _initial_rigid(layer, uv, world, weights_np, focal, principal)
    else:
        orient0, transl0 = start.global_orient, start.transl

    def t(array):
        return torch.as_tensor(np.asarray(array), dtype=dtype)

    target_uv, target_world, weights = t(uv), t(world), t(weights_np)
    hand_size = (target_uv.amax(1) - target_uv.amin(1)).norm(dim=-1).clamp_min(1.0)  # (N,) px
    target_world = target_world - target_world.mean(1, keepdim=True)
    link = t(np.ones(n - 1) if consecutive is None else consecutive)
    frames = t(model.pose_frames())
    limits = t(JOINT_LIMITS)
    low, span = limits[..., 0], limits[..., 1] - limits[..., 0]
    relaxed = t(NAMED_POSES["relaxed"])
    if start is None:
        share = ((relaxed - low) / span).clamp(0.02, 0.98).expand(n, 15, 3)
    else:
        share = ((t(start.angles) - low) / span).clamp(1e-4, 1 - 1e-4)
    raw_angles = torch.logit(share).clone().requires_grad_(True)
    orient = t(orient0).clone().requires_grad_(True)  # copies: Adam must not write into `start`'s arrays
    transl = t(transl0).clone().requires_grad_(True)
    betas = torch.zeros(1, model.num_betas, dtype=dtype) if start is None else t(start.betas)[None].clone()
    betas.requires_grad_(True)
    mask_loss = None if masks is None else _MaskLoss(model, masks, focal, principal, hand_size, settings)

    def forward():
        angles = low + span * torch.sigmoid(raw_angles)
        hand_pose = angles_to_pose_torch(angles, frames)
        out = layer(betas=betas.expand(n, -1), global_orient=orient, hand_pose=hand_pose, transl=transl)
        return angles, hand_pose, out.vertices[:, -21:], out.vertices[:, :-21]

    def loss_fn(full: bool):
        angles, _, joints, vertices = forward()
        residual = (project_torch(joints, focal, principal) - target_uv).norm(dim=-1) / hand_size[:, None]
        loss = settings.w_2d * (weights * _gmof(residual ** 2, settings.robust_sigma)).sum() / weights.sum()
        centred = joints - joints.mean(1, keepdim=True)
        loss = loss + settings.w_3d * (((centred - target_world).norm(dim=-1) / _CM) ** 2).mean()
        if full:
            loss = loss + settings.w_pose * (((angles - relaxed) / span) ** 2).sum((1, 2)).mean()
            loss = loss + settings.w_shape * (betas ** 2).sum()
            if n > 1:
                step = (((joints[1:] - joints[:-1]).norm(dim=-1) / _CM) ** 2).mean(1)
                bend = ((angles[1:] - angles[:-1]) / span).pow(2).sum((1, 2))
                loss = loss + settings.w_smooth * ((step + bend) * link).sum() / link.sum().clamp_min(1)
            if mask_loss is not None:
                loss = loss + mask_loss(vertices)
        return loss

    rigid_steps = settings.rigid_steps if start is None else 0
    stages = [([orient, transl], rigid_steps, False), ([orient, transl, raw_angles, betas], settings.steps, True)]
    bar = tqdm(total=rigid_steps + settings.steps, desc="fit" if masks is None else "fit to masks", unit="step",
               disable=not progress)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread ran ~10x faster than two on a loaded 2-core machine
    try:
        _optimise(stages, loss_fn, settings.lr, settings.lr_end, bar)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    with torch.no_grad():
        angles, hand_pose, landmarks, _ = forward()
        out = model(betas=betas.expand(n, -1), global_orient=orient, hand_pose=hand_pose, transl=transl)
        projected = project_torch(landmarks, focal, principal)
        residual = (projected - target_uv).norm(dim=-1).median(dim=1).values
    return HandFit(global_orient=orient.detach().double().numpy(), hand_pose=out.hand_pose.double().numpy(),
                   angles=angles.double().numpy(), betas=betas.detach()[0].double().numpy(),
                   transl=transl.detach().double().numpy(), joints=out.joints.double().numpy(),
                   vertices=out.vertices.double().numpy(), uv=projected.double().numpy(),
                   residual_px=residual.double().numpy())


