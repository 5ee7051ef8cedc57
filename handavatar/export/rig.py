"""The avatar as a rig: the rest-pose MANO-HD surface with the avatar's deformation, the 16-joint MANO skeleton,
skinning weights cut to the 4 strongest influences per vertex (as glTF skins take them), and the joint rotations of a
pose sequence. Pure numpy (float64) after `avatar_rig` reads the avatar.

Frames: the rig lives in the avatar's model frame (camera-oriented: x right, y down, z forward) in metres, centred
on the middle-finger MCP joint (joint 4) of the pose; the model frame of the renderer is the same in decimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from smplx.joint_names import NUM_JOINTS, PARENTS
from handavatar.model import HandAvatar

__all__ = ["Rig", "RigError", "avatar_rig", "avatar_vertices", "dense_weights", "joint_transforms", "local_rotations",
           "pose_sequence_error", "root_translation", "skin", "truncate_weights"]

CENTRE_JOINT = 4
"""The joint the model frame is centred on (the renderer's center_id)."""


@dataclass
class Rig:
    """A skinned hand in its bind (rest) pose."""

    vertices: np.ndarray  # (V, 3) rest-pose vertices, model frame, metres, centred on the rest joint 4
    faces: np.ndarray  # (F, 3) triangles, anticlockwise seen from outside
    joints: np.ndarray  # (16, 3) rest joints, model frame, metres, centred on the rest joint 4
    weights: np.ndarray  # (V, 16) full skinning weights, rows summing to 1
    pose_mean: np.ndarray  # (48,) the layer's pose mean, added to every pose (axis-angle, radians)
    is_rhand: bool


@torch.no_grad()
def avatar_rig(avatar: HandAvatar) -> Rig:
    """The avatar's MANO-HD in the bind pose: the template deformed by the avatar's deformer at the zero hand pose,
    all joint rotations zero; the seal vertex (wrist cap) placed and skinned as the mean of the wrist rim.

    Faces are turned so that every triangle is anticlockwise seen from outside (positive enclosed volume), which a
    left hand's mirrored mesh may not be.
    """
    hand = avatar.hand
    ref = hand.v_template
    shaped = avatar.deformer(ref.new_zeros(1, 45))[0] if avatar.deformer is not None else ref
    vertices = shaped.double().cpu().numpy()
    weights = hand.lbs_weights.double().cpu().numpy()
    if hand.seal:
        loop = hand.seal_loop.cpu().numpy()
        vertices = np.concatenate([vertices, vertices[loop].mean(0, keepdims=True)])
        weights = np.concatenate([weights, weights[loop].mean(0, keepdims=True)])
    joints = hand.j_regressor.double().cpu().numpy() @ shaped.double().cpu().numpy()
    centre = joints[CENTRE_JOINT]
    faces = hand.output_faces.cpu().numpy().astype(np.int64)
    corners = vertices[faces]
    volume = np.einsum("fi,fi->f", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6
    if volume < 0:
        faces = faces[:, ::-1].copy()
    return Rig(vertices=vertices - centre, faces=faces, joints=joints - centre, weights=weights,
               pose_mean=hand.pose_mean.double().cpu().numpy(), is_rhand=bool(hand.is_rhand))


def truncate_weights(weights: np.ndarray, keep: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The `keep` strongest skinning influences of each vertex, renormalised (glTF's JOINTS_0 / WEIGHTS_0).

    Args:
        weights: (V, J) skinning weights, rows summing to 1.

    Returns:
        (V, keep) joint indices (strongest first, distinct where the weight is not zero; 0 where it is, as glTF
        asks) and (V, keep) float32 weights summing to 1 in float32 (the largest absorbs the rounding).
    """
    order = np.argsort(-weights, axis=1, kind="stable")[:, :keep]
    kept = np.clip(np.take_along_axis(weights, order, 1), 0.0, None)
    kept = (kept / kept.sum(1, keepdims=True)).astype(np.float32)
    kept[:, 0] = np.float32(1.0) - kept[:, 1:].sum(1, dtype=np.float32)
    return np.where(kept > 0, order, 0), kept


def dense_weights(ids: np.ndarray, values: np.ndarray, joints: int = NUM_JOINTS) -> np.ndarray:
    """(V, k) joint ids and weights -> (V, joints) dense float64 weights (repeated ids add up)."""
    dense = np.zeros((ids.shape[0], joints))
    np.add.at(dense, (np.repeat(np.arange(ids.shape[0]), ids.shape[1]), ids.reshape(-1)), values.reshape(-1))
    return dense


def local_rotations(global_orient: np.ndarray, hand_pose: np.ndarray, pose_mean: np.ndarray) -> np.ndarray:
    """(N, 3) global rotations and (N, 45) hand poses (axis-angle, radians, as the avatar's layer takes them) ->
    (N, 16, 3, 3) local joint rotations with the layer's (48,) pose mean added."""
    full = np.concatenate([global_orient, hand_pose], 1) + pose_mean
    return Rotation.from_rotvec(full.reshape(-1, 3)).as_matrix().reshape(len(full), NUM_JOINTS, 3, 3)


def root_translation(rig: Rig, root_rotation: np.ndarray) -> np.ndarray:
    """(N, 3, 3) root (wrist) rotations -> (N, 3) wrist positions that keep the posed joint 4 at the origin (the
    renderer's centring), metres."""
    return -root_rotation @ (rig.joints[CENTRE_JOINT] - rig.joints[0])


def joint_transforms(rig: Rig, rotations: np.ndarray) -> np.ndarray:
    """Forward kinematics of the rig: (N, 16, 3, 3) local rotations -> (N, 16, 3, 4) posed_from_rest transforms
    (a rest point x bound to joint j goes to T[..., :3] @ x + T[..., 3]; metres, centred on the posed joint 4)."""
    count = rotations.shape[0]
    world = np.zeros((count, NUM_JOINTS, 3, 3))
    position = np.zeros((count, NUM_JOINTS, 3))
    world[:, 0] = rotations[:, 0]
    position[:, 0] = root_translation(rig, rotations[:, 0])
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        world[:, j] = world[:, p] @ rotations[:, j]
        position[:, j] = position[:, p] + world[:, p] @ (rig.joints[j] - rig.joints[p])
    shift = position - np.einsum("njab,jb->nja", world, rig.joints)
    return np.concatenate([world, shift[..., None]], -1)


def skin(rig: Rig, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning of the rig's rest vertices: (V, 16) weights and (N, 16, 3, 4) `joint_transforms` ->
    (N, V, 3) posed vertices, metres."""
    blended = np.einsum("vj,njab->nvab", weights, transforms)
    return np.einsum("nvab,vb->nva", blended[..., :3], rig.vertices) + blended[..., 3]


@torch.no_grad()
def avatar_vertices(avatar: HandAvatar, global_orient: np.ndarray, hand_pose: np.ndarray) -> np.ndarray:
    """The avatar's own posed MANO-HD (deformer at each pose, full weights), (N, V, 3), model frame, metres."""
    ref = avatar.hand.v_template
    posed = avatar.pose(torch.as_tensor(global_orient, dtype=ref.dtype, device=ref.device),
                        torch.as_tensor(hand_pose, dtype=ref.dtype, device=ref.device))
    return posed.vertices.double().cpu().numpy() / avatar.hand.scale


@dataclass
class RigError:
    """Vertex displacements over a pose sequence, millimetres."""

    truncation_max: float  # 4 strongest weights vs all 16, the same bind-pose surface
    truncation_mean: float
    avatar_max: float  # the exported rig vs the avatar's own posed MANO-HD (adds the pose-dependent deformation)
    avatar_mean: float


def pose_sequence_error(avatar: HandAvatar, rig: Rig, weights4: np.ndarray, global_orient: np.ndarray,
                        hand_pose: np.ndarray) -> RigError:
    """How far the exported rig's vertices land from full-weight LBS and from the avatar itself over N poses.

    Args:
        weights4: (V, 16) the truncated weights, dense. global_orient: (N, 3), hand_pose: (N, 45), radians.
    """
    transforms = joint_transforms(rig, local_rotations(global_orient, hand_pose, rig.pose_mean))
    exported = skin(rig, weights4, transforms)
    full = np.linalg.norm(exported - skin(rig, rig.weights, transforms), axis=-1) * 1e3
    own = np.linalg.norm(exported - avatar_vertices(avatar, global_orient, hand_pose), axis=-1) * 1e3
    return RigError(float(full.max()), float(full.mean()), float(own.max()), float(own.mean()))
