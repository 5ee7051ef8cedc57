"""Hand motion for synthetic captures: key poses from the model's pose prior, held and blended smoothly, with wrist
rotations and a drifting hand position.

A sequence is a list of keys, one every `key_every` frames; between two keys every quantity (finger angles in the
anatomical terms of smplx.hand_pose, wrist angles, position) follows a smoothstep, so the motion is continuous with
continuous velocity and comes to rest at each key, like a range-of-motion capture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from smplx.hand_pose import NAMED_POSES, angles_to_pose, pose_to_angles, sample_prior

__all__ = ["HandMotion", "SHADOW_POSES", "hand_axes", "base_orientation", "make_motion"]

SHADOW_POSES = ("fist", "pinch", "claw", "grasp", "ok", "point", "thumbs_up", "relaxed", "spread", "flat")
"""Named poses of the training sequence: curled fingers over the palm cast strong self-shadows."""


@dataclass
class HandMotion:
    """Per-frame parameters of one sequence (F frames)."""

    hand_pose: np.ndarray  # (F, 45) finger axis-angle, radians, rest-pose axes (no pose mean added)
    global_orient: np.ndarray  # (F, 3) world axis-angle of the wrist, radians
    position: np.ndarray  # (F, 3) world position of the mean of the 21 joints, mm


def hand_axes(rest_joints: np.ndarray, *, is_rhand: bool = True) -> np.ndarray:
    """(3, 3) columns: along the fingers (wrist to middle knuckle), out of the back of the hand, and their cross
    product; from the model's (16, 3) rest joints."""
    j = np.asarray(rest_joints, dtype=float)
    along = j[4] - j[0]
    along /= np.linalg.norm(along)
    back = -(1.0 if is_rhand else -1.0) * np.cross(j[1] - j[0], j[7] - j[0])
    back -= along * (back @ along)
    back /= np.linalg.norm(back)
    return np.stack([along, back, np.cross(along, back)], axis=1)


def base_orientation(rest_joints: np.ndarray, *, is_rhand: bool = True) -> np.ndarray:
    """(3, 3) rotation that turns the rest hand upright in front of a camera looking along world +z with image-down
    +y: fingers up (world -y), back of the hand towards the camera (world -z)."""
    world = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T  # columns: up, towards camera, cross
    return world @ hand_axes(rest_joints, is_rhand=is_rhand).T


def _smooth_keys(keys: np.ndarray, frames: int, key_every: int) -> np.ndarray:
    """(K, ...) keys -> (frames, ...) values: key k at frame k key_every, smoothstep blends between keys."""
    index = np.arange(frames)
    k, u = index // key_every, (index % key_every) / key_every
    w = (u * u * (3 - 2 * u)).reshape(-1, *([1] * (keys.ndim - 1)))
    return (1 - w) * keys[k] + w * keys[np.minimum(k + 1, len(keys) - 1)]


def make_motion(frames: int, *, rest_joints: np.ndarray, pose_frames: np.ndarray, prior: np.ndarray,
                seed: tuple[int, ...], named: bool, key_every: int = 6, twist_deg: float = 150.0,
                is_rhand: bool = True) -> HandMotion:
    """A smooth hand motion.

    Args:
        frames: F.
        rest_joints: (16, 3) rest joints of the model.
        pose_frames: (15, 3, 3) its anatomical finger frames.
        prior: (P, 45) poses of its pose prior (smplx.hand_pose.prior_poses).
        seed: seeds the keys; key k draws from its own generator (seed + (k,)), so the first frames of a motion do
            not depend on how many frames follow.
        named: alternate SHADOW_POSES (in a random order) with prior samples as keys; otherwise prior samples only.
        key_every: frames between keys.
        twist_deg: largest rotation about the finger axis (0: back of the hand to the camera; 180: palm).
        is_rhand: right hand.

    Returns:
        HandMotion with the hand centred on a point that drifts within about 15 mm of the world origin.
    """
    keys = frames // key_every + 2
    order = np.random.default_rng([*seed, 2 ** 31]).permutation(len(SHADOW_POSES))
    angles, wrist, position = np.zeros((keys, 15, 3)), np.zeros((keys, 3)), np.zeros((keys, 3))
    for k in range(keys):
        rng = np.random.default_rng([*seed, k])
        sample = pose_to_angles(sample_prior(prior, pose_frames, 1, rng), pose_frames)[0]
        angles[k] = NAMED_POSES[SHADOW_POSES[order[(k // 2) % len(order)]]] if named and k % 2 == 0 else sample
        wrist[k] = rng.uniform([-twist_deg, -35, -15], [twist_deg, 35, 15])
        position[k] = np.clip(rng.normal(scale=10.0, size=3), -15, 15)

    hand_pose = angles_to_pose(_smooth_keys(angles, frames, key_every), pose_frames)
    twist, flex, deviation = np.radians(_smooth_keys(wrist, frames, key_every)).T
    axes = hand_axes(rest_joints, is_rhand=is_rhand)
    local = (Rotation.from_rotvec(twist[:, None] * axes[:, 0]) * Rotation.from_rotvec(flex[:, None] * axes[:, 2])
             * Rotation.from_rotvec(deviation[:, None] * axes[:, 1]))
    orient = Rotation.from_matrix(base_orientation(rest_joints, is_rhand=is_rhand)) * local
    return HandMotion(hand_pose=hand_pose, global_orient=orient.as_rotvec(),
                      position=_smooth_keys(position, frames, key_every))
