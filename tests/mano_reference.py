"""MANO written out from the MANO paper's equations (Romero et al. 2017, eqs. 1-4; SMPL eqs. 2-9), one joint at a time
in float64 numpy, independent of smplx.lbs: scipy's rotations, 4x4 world transforms multiplied along each joint's
chain of ancestors, and the pose-corrective features written index by index.

    T(beta, theta) = T_bar + sum_n beta_n S_n + sum_n (R_n(theta) - R_n(theta*)) P_n
    J(beta)        = J_regressor (T_bar + sum_n beta_n S_n)
    t'_i           = sum_k w_ik G_k(theta, J) G_k(theta*, J)^-1 t_i

R(theta) is the 15 non-root joints' rotation matrices, each read row by row (feature 9 (k - 1) + 3 r + c is entry
(r, c) of joint k's matrix), as in the released model's `posemap` (chumpy: `(Rodrigues(p) - eye(3)).ravel()`).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from smplx.joint_names import PARENTS
from smplx.model_file import HandModelData


def pose_corrective_features(rotations: np.ndarray) -> np.ndarray:
    """(135,) R_n(theta) - R_n(theta*) of the (16, 3, 3) local rotations, joint 1..15, row by row."""
    features = np.zeros(9 * 15)
    for k in range(1, 16):
        for r in range(3):
            for c in range(3):
                features[9 * (k - 1) + 3 * r + c] = rotations[k, r, c] - (1.0 if r == c else 0.0)
    return features


def _world_transform(k: int, rotations: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """G_k: the product of [R_j | J_j - J_parent(j)] along joint k's chain, root first (4x4)."""
    chain = []
    while k >= 0:
        chain.append(k)
        k = PARENTS[k]
    world = np.eye(4)
    for j in reversed(chain):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = joints[j] - (joints[PARENTS[j]] if PARENTS[j] >= 0 else 0.0)
        world = world @ local
    return world


def mano_reference(data: HandModelData, betas: np.ndarray, full_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose one hand.

    Args:
        data: the model arrays (posedirs (V, 3, 135) as stored in the file).
        betas: (NB,) shape coefficients (NB <= the model's).
        full_pose: (48,) axis-angle of the 16 joints, root first, radians, with any pose mean already added.

    Returns:
        (V, 3) posed vertices and (16, 3) posed joints, model units, not centred.
    """
    rotations = np.stack([Rotation.from_rotvec(full_pose[3 * k:3 * k + 3]).as_matrix() for k in range(16)])
    shaped = data.v_template + np.einsum("vcn,n->vc", data.shapedirs[:, :, :len(betas)], betas)
    joints = data.j_regressor @ shaped
    features = pose_corrective_features(rotations)
    rest_posed = shaped + np.einsum("vcn,n->vc", data.posedirs, features)
    vertices = np.zeros_like(rest_posed)
    posed_joints = np.zeros((16, 3))
    homogeneous = np.concatenate([rest_posed, np.ones((len(rest_posed), 1))], 1)
    for k in range(16):
        world = _world_transform(k, rotations, joints)
        posed_joints[k] = world[:3, 3]
        unbind = np.eye(4)
        unbind[:3, 3] = -joints[k]  # G_k(theta*)^-1: the rest pose's transform is a translation by J_k
        vertices += data.lbs_weights[:, k:k + 1] * (homogeneous @ (world @ unbind).T)[:, :3]
    return vertices, posed_joints
