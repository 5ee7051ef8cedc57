"""Linear blend skinning of a MANO-format hand, as pure tensor functions.

Shapes: B poses, V vertices, J joints (16 for MANO), NB shape components, P = 9 (J - 1) pose features.
Units follow the inputs (MANO files are in metres). Every function takes its device and dtype from its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "batch_rodrigues",
    "blend_shapes",
    "vertices2joints",
    "pose_features",
    "batch_rigid_transform",
    "skin_vertices",
    "lbs",
]


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:
    """Rotation matrices from axis-angle vectors.

    Args:
        rot_vecs: (..., 3) axis-angle, radians, anticlockwise about the axis (right-handed).

    Returns:
        (..., 3, 3) rotation matrices R = I + sinc(t) K + (1 - cos t) / t^2 K^2, with K the cross-product matrix of
        the vector and t its norm. Exact and differentiable at t = 0 (no epsilon is added to the input).
    """
    angle_sq = (rot_vecs * rot_vecs).sum(-1)
    nonzero = angle_sq > 0
    angle = torch.where(nonzero, torch.sqrt(torch.where(nonzero, angle_sq, torch.ones_like(angle_sq))), 0.0)
    a = torch.sinc(angle / torch.pi)  # sin(t) / t
    b = 0.5 * torch.sinc(angle / (2 * torch.pi)) ** 2  # (1 - cos t) / t^2 = 2 sin^2(t/2) / t^2, stable near 0
    x, y, z = rot_vecs.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def blend_shapes(betas: Tensor, shapedirs: Tensor) -> Tensor:
    """Per-vertex shape offsets.

    Args:
        betas: (B, NB) shape coefficients.
        shapedirs: (V, 3, NB) shape blend shapes.

    Returns:
        (B, V, 3) offsets to add to the template.
    """
    return torch.einsum("bl,vkl->bvk", betas, shapedirs)


def vertices2joints(j_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joint locations regressed from vertices.

    Args:
        j_regressor: (J, V) regressor; row j holds the weights of joint j.
        vertices: (B, V, 3).

    Returns:
        (B, J, 3) joints.
    """
    return torch.einsum("jv,bvk->bjk", j_regressor, vertices)


def pose_features(rot_mats: Tensor) -> Tensor:
    """Pose-corrective features: (R_j - I) of every non-root joint, flattened.

    Args:
        rot_mats: (B, J, 3, 3) local joint rotations, root first.

    Returns:
        (B, 9 (J - 1)) features, the input of the pose blend shapes.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


@lru_cache(maxsize=16)
def _depth_levels(parents: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Joints grouped by depth below the root: ((joints, their parents), ...) from depth 1 down."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if j == 0:
            if p != -1:
                raise ValueError(f"parents[0] must be -1 (the root), got {p}")
            continue
        if not 0 <= p < j:
            raise ValueError(f"parents[{j}]={p}: each joint's parent must come before it")
        depth[j] = depth[p] + 1
    levels = []
    for d in range(1, max(depth) + 1):
        joints = tuple(j for j in range(len(parents)) if depth[j] == d)
        levels.append((joints, tuple(parents[j] for j in joints)))
    return tuple(levels)


def batch_rigid_transform(rot_mats: Tensor, joints: Tensor, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Forward kinematics of a joint tree.

    Args:
        rot_mats: (B, J, 3, 3) local rotation of each joint (joint 0 holds the global rotation).
        joints: (B, J, 3) rest-pose joint locations.
        parents: J parent indices, parents[0] = -1, each parent before its children.

    Returns:
        posed_joints: (B, J, 3) joint locations after posing.
        rel_transforms: (B, J, 3, 4) posed_from_rest transform of each joint: a rest-pose point x rigidly attached
            to joint j goes to rel_transforms[:, j, :, :3] @ x + rel_transforms[:, j, :, 3].
    """
    parents = tuple(int(p) for p in parents)
    if rot_mats.shape[1] != len(parents) or joints.shape[1] != len(parents):
        raise ValueError(f"rot_mats {tuple(rot_mats.shape)} and joints {tuple(joints.shape)} must have "
                         f"J={len(parents)} joints on dim 1")
    rel_joints = joints - joints[:, [0] + list(parents[1:])]  # offset from the parent (root row unused)
    rot = [rot_mats[:, 0]] + [None] * (len(parents) - 1)  # world rotation of each joint
    pos = [joints[:, 0]] + [None] * (len(parents) - 1)  # posed location of each joint
    for level, level_parents in _depth_levels(parents):
        par_rot = torch.stack([rot[p] for p in level_parents], 1)  # (B, L, 3, 3)
        par_pos = torch.stack([pos[p] for p in level_parents], 1)  # (B, L, 3)
        new_rot = par_rot @ rot_mats[:, list(level)]
        new_pos = par_pos + (par_rot @ rel_joints[:, list(level), :, None])[..., 0]
        for i, j in enumerate(level):
            rot[j], pos[j] = new_rot[:, i], new_pos[:, i]
    world_rot = torch.stack(rot, 1)  # (B, J, 3, 3)
    posed_joints = torch.stack(pos, 1)  # (B, J, 3)
    trans = posed_joints - (world_rot @ joints[..., None])[..., 0]
    return posed_joints, torch.cat([world_rot, trans[..., None]], dim=-1)


def skin_vertices(vertices: Tensor, lbs_weights: Tensor, rel_transforms: Tensor) -> Tensor:
    """Blend per-joint rigid transforms by skinning weights and apply them.

    Args:
        vertices: (B, V, 3) rest-pose vertices (shape and pose blend shapes applied).
        lbs_weights: (V, J) or (B, V, J) skinning weights, rows summing to 1.
        rel_transforms: (B, J, 3, 4) posed_from_rest transforms from `batch_rigid_transform`.

    Returns:
        (B, V, 3) posed vertices.
    """
    if lbs_weights.ndim == 3:
        blended = torch.matmul(lbs_weights, rel_transforms.flatten(2)).unflatten(-1, (3, 4))  # (B, V, 3, 4)
        return (blended[..., :3] @ vertices[..., None])[..., 0] + blended[..., 3]
    # Shared weights: one (V, J) @ (J, 12 B) matrix product, batch innermost, then three fused multiply-adds over
    # contiguous (V, 3, B) blocks; this avoids B V tiny 3x3 products, which are slow on CPU.
    batch, num_joints = rel_transforms.shape[:2]
    columns = rel_transforms.permute(1, 3, 2, 0).reshape(num_joints, -1)  # (J, 4 * 3 * B): column k, row i, batch
    blended = (lbs_weights @ columns).view(-1, 4, 3, batch)  # (V, 4, 3, B)
    coords = vertices.permute(1, 2, 0).contiguous()  # (V, 3, B)
    out = torch.addcmul(blended[:, 3], blended[:, 0], coords[:, 0:1])
    out = torch.addcmul(out, blended[:, 1], coords[:, 1:2])
    out = torch.addcmul(out, blended[:, 2], coords[:, 2:3])
    return out.permute(2, 0, 1)


def lbs(
    betas: Tensor,
    full_pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor | None,
    j_regressor: Tensor,
    parents: Sequence[int],
    lbs_weights: Tensor,
    *,
    shaped_verts: Tensor | None = None,
    regressor_vertex_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Shape, pose-correct and skin a hand.

    Args:
        betas: (B, NB) shape coefficients.
        full_pose: (B, 3 J) axis-angle of every joint, global rotation first, radians.
        v_template: (V, 3) template vertices.
        shapedirs: (V, 3, NB) shape blend shapes.
        posedirs: (P, 3 V) pose blend shapes, P = 9 (J - 1), vertex-major columns (x0 y0 z0 x1 ...); None for a
            model without them (the same as zeros, without the cost).
        j_regressor: (J, V) joint regressor.
        parents: J parent indices.
        lbs_weights: (V, J) or (B, V, J) skinning weights.
        shaped_verts: optional (B, V, 3) rest-pose vertices replacing v_template + shape blend; joints are then
            regressed from them.
        regressor_vertex_ids: optional (K,) vertices the regressor reads; j_regressor is then (J, K), its columns
            for those vertices (the others being zero, as for the vertices that subdivision adds).

    Returns:
        vertices: (B, V, 3) posed vertices.
        joints: (B, J, 3) posed joints.
    """
    batch = full_pose.shape[0]
    if shaped_verts is None:
        shaped_verts = v_template + blend_shapes(betas, shapedirs)
    regressed = shaped_verts if regressor_vertex_ids is None else shaped_verts[:, regressor_vertex_ids]
    rest_joints = vertices2joints(j_regressor, regressed)
    rot_mats = batch_rodrigues(full_pose.reshape(batch, -1, 3))
    v_posed = shaped_verts
    if posedirs is not None:
        v_posed = shaped_verts + (pose_features(rot_mats) @ posedirs).view(batch, -1, 3)
    joints, rel_transforms = batch_rigid_transform(rot_mats, rest_joints, parents)
    return skin_vertices(v_posed, lbs_weights, rel_transforms), joints
