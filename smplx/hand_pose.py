"""Hand poses in anatomical terms: per-joint flexion, abduction and twist, joint limits, named poses, the pose prior.

MANO poses are axis-angle vectors in the axes of the rest pose. Here each of the 15 finger joints gets an anatomical
frame computed from the model's rest joints, so the same angles mean the same thing on any MANO-format model (MANO
itself or the open hand) and on either hand (a left hand given the same angles takes the mirrored pose):

- flexion: about the axis bone x palm-normal; positive curls the digit towards the palm (for the thumb's MCP and IP
  joints, towards its pad, which faces between the palm and the index finger);
- abduction: about the palm normal; positive moves the digit towards the little-finger side;
- twist: about the bone.

Angles are degrees, shaped (..., 15, 3) as [flexion, abduction, twist] for joints 1..15 in MANO order.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from smplx.joint_names import NUM_HAND_POSE, PARENTS

__all__ = ["JOINT_LIMITS", "NAMED_POSES", "joint_frames", "angles_to_pose", "pose_to_angles", "named_poses",
           "mix_poses", "build_pose_prior", "prior_poses", "sample_prior", "slerp_prior", "clip_to_limits", "MIXES"]

_MCP = [[-20, 95], [-25, 25], [-10, 10]]
_PIP = [[-5, 105], [-3, 3], [-3, 3]]
_DIP = [[-10, 85], [-3, 3], [-3, 3]]
JOINT_LIMITS = np.array([_MCP, _PIP, _DIP] * 4 + [
    [[-25, 60], [-40, 40], [-30, 50]],  # thumb1 (CMC)
    [[-15, 70], [-15, 15], [-10, 10]],  # thumb2 (MCP)
    [[-20, 85], [-3, 3], [-3, 3]],  # thumb3 (IP)
], dtype=float)
"""(15, 3, 2) degrees: [min, max] of flexion, abduction and twist of joints 1..15."""

_DIGITS = {"index": [0, 1, 2], "middle": [3, 4, 5], "pinky": [6, 7, 8], "ring": [9, 10, 11], "thumb": [12, 13, 14]}


def _digits(**per_digit) -> np.ndarray:
    """(15, 3) angles from {digit: [[flex, abd, twist] x 3 joints]}; unnamed digits stay flat."""
    angles = np.zeros((15, 3))
    for name, values in per_digit.items():
        angles[_DIGITS[name]] = values
    return angles


def _curl(mcp, pip, dip, abd=0.0):
    return [[mcp, abd, 0], [pip, 0, 0], [dip, 0, 0]]


NAMED_POSES = {
    "flat": _digits(),
    "relaxed": _digits(index=_curl(12, 18, 8), middle=_curl(16, 24, 10), ring=_curl(20, 28, 12),
                       pinky=_curl(24, 30, 14, 4), thumb=[[10, 10, 5], [8, 0, 0], [10, 0, 0]]),
    "fist": _digits(index=_curl(80, 95, 55), middle=_curl(82, 95, 55), ring=_curl(84, 95, 55),
                    pinky=_curl(86, 95, 55), thumb=[[50, 40, 40], [20, 0, 0], [0, 0, 0]]),
    "point": _digits(middle=_curl(82, 95, 55), ring=_curl(84, 95, 55), pinky=_curl(86, 95, 55),
                     thumb=[[50, 40, 40], [20, 0, 0], [0, 0, 0]]),
    "pinch": _digits(index=_curl(50, 60, 20), middle=_curl(22, 28, 10), ring=_curl(26, 32, 12),
                     pinky=_curl(30, 34, 12, 5), thumb=[[50, 20, 30], [10, 0, 0], [0, 0, 0]]),
    "spread": _digits(index=_curl(0, 0, 0, -16), middle=_curl(0, 0, 0, -2), ring=_curl(0, 0, 0, 10),
                      pinky=_curl(0, 0, 0, 22), thumb=[[-10, -25, 0], [-5, 0, 0], [-5, 0, 0]]),
    "grasp": _digits(index=_curl(40, 45, 25), middle=_curl(42, 48, 25), ring=_curl(44, 50, 25),
                     pinky=_curl(46, 50, 25), thumb=[[40, 30, 20], [10, 0, 0], [10, 0, 0]]),
    "claw": _digits(index=_curl(5, 80, 60), middle=_curl(5, 80, 60), ring=_curl(5, 80, 60),
                    pinky=_curl(5, 80, 60), thumb=[[20, 10, 10], [30, 0, 0], [50, 0, 0]]),
    "ok": _digits(index=_curl(50, 60, 20), middle=_curl(10, 10, 5, -2), ring=_curl(12, 12, 5, 8),
                  pinky=_curl(14, 14, 5, 18), thumb=[[50, 20, 30], [10, 0, 0], [0, 0, 0]]),
    "thumbs_up": _digits(index=_curl(80, 95, 55), middle=_curl(82, 95, 55), ring=_curl(84, 95, 55),
                         pinky=_curl(86, 95, 55), thumb=[[-10, -15, 0], [-5, 0, 0], [-5, 0, 0]]),
}
"""Poses as (15, 3) angles in degrees; every one lies within JOINT_LIMITS."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def joint_frames(rest_joints: np.ndarray, *, is_rhand: bool = True) -> np.ndarray:
    """Anatomical frames of the 15 finger joints of a hand in its rest pose.

    Args:
        rest_joints: (16, 3) rest-pose joints in MANO order (any unit).
        is_rhand: right hand; a left hand gets the mirrored frames, so equal angles give mirrored poses.

    Returns:
        (15, 3, 3) frames; columns are the flexion, abduction and twist axes (right-handed), rest-pose axes.
    """
    rest_joints = np.asarray(rest_joints, dtype=float)
    side = 1.0 if is_rhand else -1.0
    across = np.cross(rest_joints[1] - rest_joints[0], rest_joints[7] - rest_joints[0])
    if np.linalg.norm(across) < 1e-12 * max(np.abs(rest_joints).max(), 1e-30) ** 2:
        raise ValueError("the wrist, index and pinky joints are collinear: the model's rest joints do not span a "
                         "palm, so finger frames cannot be built")
    palmar = side * _unit(across)
    frames = np.zeros((15, 3, 3))
    for j in range(1, 16):
        last = j in (3, 6, 9, 12, 15)
        bone = _unit(rest_joints[j] - rest_joints[PARENTS[j]] if last else rest_joints[j + 1] - rest_joints[j])
        normal = palmar
        if j >= 14:  # the thumb's MCP and IP joints curl towards its pad, which faces the palm and index finger
            medial = rest_joints[1] - rest_joints[j]
            medial = _unit(medial - bone * (medial @ bone))
            normal = _unit(palmar + medial)
        normal = _unit(normal - bone * (normal @ bone))
        flex = _unit(np.cross(bone, normal))
        abd = side * normal
        frames[j - 1] = np.stack([flex, abd, np.cross(flex, abd)], axis=1)
    return frames


def angles_to_pose(angles: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """MANO hand pose from anatomical angles.

    Args:
        angles: (..., 15, 3) degrees [flexion, abduction, twist]; applied as R = R_flex R_abd R_twist (intrinsic).
        frames: (15, 3, 3) from `joint_frames`.

    Returns:
        (..., 45) axis-angle, radians, rest-pose axes (the model's `hand_pose`).
    """
    angles = np.asarray(angles, dtype=float)
    local = Rotation.from_euler("XYZ", angles.reshape(-1, 3), degrees=True).as_matrix().reshape(*angles.shape, 3)
    world = frames @ local @ np.swapaxes(frames, -1, -2)
    return Rotation.from_matrix(world.reshape(-1, 3, 3)).as_rotvec().reshape(*angles.shape[:-2], NUM_HAND_POSE)


def pose_to_angles(pose: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Inverse of `angles_to_pose`: (..., 45) axis-angle -> (..., 15, 3) degrees."""
    pose = np.asarray(pose, dtype=float)
    world = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(*pose.shape[:-1], 15, 3, 3)
    local = np.swapaxes(frames, -1, -2) @ world @ frames
    return Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("XYZ", degrees=True).reshape(
        *pose.shape[:-1], 15, 3)


def clip_to_limits(angles: np.ndarray) -> np.ndarray:
    """Angles (..., 15, 3) clipped to JOINT_LIMITS."""
    return np.clip(angles, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])


def named_poses(names, frames: np.ndarray) -> np.ndarray:
    """(N, 45) axis-angle of poses of NAMED_POSES for the hand whose frames are given."""
    unknown = [n for n in names if n not in NAMED_POSES]
    if unknown:
        raise KeyError(f"unknown poses {unknown}; named poses: {sorted(NAMED_POSES)}")
    return angles_to_pose(np.stack([NAMED_POSES[n] for n in names]), frames)


def mix_poses(key_angles: np.ndarray, count: int, rng: np.random.Generator, *, jitter_deg: float = 0.0) -> np.ndarray:
    """Random poses between key poses, digit by digit.

    Each digit of each new pose is an interpolation between that digit in two random key poses, with weight
    u ~ U[0, 1], plus optional Gaussian jitter; the result is clipped to JOINT_LIMITS. Interpolating angles keeps
    poses whose keys respect the limits within them.

    Args:
        key_angles: (K, 15, 3) degrees.
        count: N poses.
        rng: random source.
        jitter_deg: standard deviation of the jitter.

    Returns:
        (N, 15, 3) degrees.
    """
    key_angles = np.asarray(key_angles, dtype=float)
    out = np.zeros((count, 15, 3))
    for joints in _DIGITS.values():
        a = key_angles[rng.integers(len(key_angles), size=count)][:, joints]
        b = key_angles[rng.integers(len(key_angles), size=count)][:, joints]
        u = rng.uniform(size=(count, 1, 1))
        out[:, joints] = (1 - u) * a + u * b
    out += rng.normal(scale=jitter_deg, size=out.shape)
    return clip_to_limits(out)


def build_pose_prior(frames: np.ndarray, *, count: int = 512, seed: int = 0):
    """A MANO-style pose prior from the named poses: hands_components (45, 45), hands_mean (45,), hands_coeffs
    (count, 45), such that the training poses are hands_mean + hands_coeffs @ hands_components."""
    rng = np.random.default_rng(seed)
    keys = np.stack(list(NAMED_POSES.values()))
    poses = angles_to_pose(mix_poses(keys, count, rng, jitter_deg=4.0), frames)
    mean = poses.mean(0)
    _, _, components = np.linalg.svd(poses - mean, full_matrices=True)
    return components, mean, (poses - mean) @ components.T


def prior_poses(hands_mean: np.ndarray, hands_coeffs: np.ndarray, hands_components: np.ndarray) -> np.ndarray:
    """(N, 45) the training poses stored in a MANO-format prior."""
    return hands_mean + hands_coeffs @ hands_components[:hands_coeffs.shape[1]]


MIXES = ("anatomical", "published")


def slerp_prior(prior: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """New poses from the poses of a prior as the published LBS-weight pretraining draws them (reference §2.4): for
    each digit a random row of the prior, independently per digit, twice; then every joint slerped between the two
    draws with one alpha ~ U(0, 1) per pose (along the shorter arc: the published slerp's clipping of a negative
    quaternion dot product to 0 is not copied). No joint limits.

    Args:
        prior: (K, 45) axis-angle poses. count: N. rng: random source.

    Returns:
        (N, 45) axis-angle hand poses.
    """
    from scipy.spatial.transform import Rotation
    prior = np.asarray(prior, dtype=float).reshape(-1, 15, 3)
    picks = []
    for _ in range(2):
        pick = np.zeros((count, 15, 3))
        for joints in _DIGITS.values():
            pick[:, joints] = prior[rng.integers(len(prior), size=count)][:, joints]
        picks.append(Rotation.from_rotvec(pick.reshape(-1, 3)).as_quat())  # (N 15, 4)
    alpha = np.repeat(rng.uniform(size=count), 15)[:, None]
    a, b = picks
    dot = (a * b).sum(-1, keepdims=True)
    b = np.where(dot < 0, -b, b)  # the shorter arc
    theta = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    q = np.where(small, (1 - alpha) * a + alpha * b,
                 (np.sin((1 - alpha) * theta) * a + np.sin(alpha * theta) * b) / sin)
    return Rotation.from_quat(q / np.linalg.norm(q, axis=-1, keepdims=True)).as_rotvec().reshape(count, 45)


def sample_prior(prior: np.ndarray, frames: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """New poses between the poses of a prior, digit by digit in angle space (see `mix_poses`), within the limits.

    Args:
        prior: (K, 45) poses, e.g. `prior_poses(...)` of a model file.
        frames: (15, 3, 3) from `joint_frames`.
        count: N.
        rng: random source.

    Returns:
        (N, 45) axis-angle hand poses.
    """
    return angles_to_pose(mix_poses(clip_to_limits(pose_to_angles(prior, frames)), count, rng), frames)
