"""Pose-corrective morph targets: the exported skin moved onto PairOF's 0.5 level set at chosen keyframes of the clip.

A plain skin carries only what linear blend skinning of the bind-pose MANO-HD can do; the avatar's renderer draws
PairOF's occupied volume, which departs from that mesh most where the fingers bend (the fist). At each corrective
keyframe k, every rig vertex, posed by the exported 4-weight skin, moves along its posed normal onto PairOF's 0.5
level set of that pose (`level_set_distances`: a 1-D root find of the occupancy within `reach`; a vertex with no
crossing stays). The displacement is brought back into the bind pose through the vertex's skinning matrix
(`unskin`), where glTF adds morph targets before skinning, and becomes morph target k. The clip drives the morph
weights: one-hot at keyframe k, linear in between (`morph_weights`).

    correctives = pose_correctives(avatar, rig, weights4, global_orient, hand_pose, keys=corrective_keys(24, 6))

Frames and units as rig.py: model frame, metres (PairOF is queried in decimetres, its model frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from handavatar.export.rig import Rig, joint_transforms, local_rotations, skin
from handavatar.model import HandAvatar

__all__ = ["Correctives", "corrective_keys", "level_set_distances", "morph_weights", "pose_correctives", "unskin",
           "unskin_normals"]


def corrective_keys(frames: int, count: int) -> np.ndarray:
    """(K,) the clip frames that carry a morph target: `count` frames spread evenly from the first to the last
    (all `frames` when count >= frames; none when count is 0)."""
    if count <= 0 or frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if count >= frames:
        return np.arange(frames)
    return np.unique(np.round(np.linspace(0, frames - 1, count)).astype(np.int64))


def morph_weights(frames: int, keys: np.ndarray) -> np.ndarray:
    """(N, K) morph weights of the N clip frames: target k at 1 on its keyframe, falling linearly to 0 at the
    neighbouring keyframes (before the first key, the first target holds at 1; after the last, the last)."""
    weights = np.zeros((frames, len(keys)))
    for k, key in enumerate(keys):
        hat = np.ones(frames)
        if k > 0:
            hat = np.minimum(hat, np.clip((np.arange(frames) - keys[k - 1]) / (key - keys[k - 1]), 0, None))
        if k + 1 < len(keys):
            hat = np.minimum(hat, np.clip((keys[k + 1] - np.arange(frames)) / (keys[k + 1] - key), 0, None))
        weights[:, k] = np.clip(hat, 0, 1)
    return weights


def level_set_distances(occupancy: Callable[[np.ndarray], np.ndarray], points: np.ndarray, directions: np.ndarray,
                        *, reach: float, first_step: float, level: float = 0.5, refine: int = 3) -> np.ndarray:
    """Signed distance along each direction to the nearest crossing of the occupancy's `level`, searched on the
    side the point must move to (along +direction from inside, -direction from outside).

    Steps of first_step, 2 first_step, 4 first_step, ..., then `reach`, bracket the first crossing; `refine` steps
    (bisection while the bracket is wider than first_step, false position after) narrow it, and the distance is
    interpolated linearly in the last bracket. Two crossings within one step are not seen.

    Args:
        occupancy: (P, 3) points -> (P,) occupancy in [0, 1].
        points: (P, 3) starting points. directions: (P, 3) unit directions (outward normals).
        reach: the farthest distance searched, in the points' unit; first_step the first step (same unit).

    Returns:
        (P,) signed distances along `directions` (same unit), NaN where no crossing lies within `reach`.
    """
    value = occupancy(points) - level
    sign = np.where(value > 0, 1.0, -1.0)  # inside: move outwards
    near_t, near_v = np.zeros(len(points)), value
    far_t, far_v = np.full(len(points), np.nan), np.full(len(points), np.nan)
    step, last = min(first_step, reach), 0.0
    active = np.ones(len(points), dtype=bool)
    while step > last and active.any():
        index = np.flatnonzero(active)
        t = sign[index] * step
        v = occupancy(points[index] + t[:, None] * directions[index]) - level
        crossed = v * value[index] <= 0
        far_t[index[crossed]], far_v[index[crossed]] = t[crossed], v[crossed]
        near_t[index[~crossed]], near_v[index[~crossed]] = t[~crossed], v[~crossed]
        active[index[crossed]] = False
        step, last = min(2 * step, reach), step
    found = np.flatnonzero(~np.isnan(far_t))
    for _ in range(refine):
        a_t, a_v, b_t, b_v = near_t[found], near_v[found], far_t[found], far_v[found]
        falsi = a_t + (b_t - a_t) * a_v / np.where(a_v != b_v, a_v - b_v, 1.0)
        t = np.where(np.abs(b_t - a_t) > first_step, (a_t + b_t) / 2, falsi)
        v = occupancy(points[found] + t[:, None] * directions[found]) - level
        same = v * a_v > 0  # the crossing lies between t and the far end
        near_t[found[same]], near_v[found[same]] = t[same], v[same]
        far_t[found[~same]], far_v[found[~same]] = t[~same], v[~same]
    a_t, a_v, b_t, b_v = near_t[found], near_v[found], far_t[found], far_v[found]
    distances = np.full(len(points), np.nan)
    distances[found] = a_t + (b_t - a_t) * a_v / np.where(a_v != b_v, a_v - b_v, 1.0)
    return distances


def unskin(weights: np.ndarray, transforms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Posed displacements -> bind-pose displacements through each vertex's blended skinning matrix.

    A bind vertex x + delta skins to A_v (x + delta) + b_v (A_v = sum_j w_vj R_j), so a posed displacement d needs
    delta = A_v^-1 d.

    Args:
        weights: (V, 16) skinning weights. transforms: (16, 3, 4) `joint_transforms` of one pose.
        offsets: (V, 3) posed displacements.

    Returns:
        (V, 3) bind-pose displacements (same unit).
    """
    return np.linalg.solve(_blended(weights, transforms), offsets[..., None])[..., 0]


def unskin_normals(weights: np.ndarray, transforms: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Posed unit normals -> bind-pose unit normals: a bind tangent t skins to A_v t, so a posed normal n (n . A_v t
    = 0 for every tangent) comes from the bind normal A_v^T n, normalised (A_v^-1 n only where A_v is a rotation).

    Args: as `unskin`, with (V, 3) posed `normals`. Returns: (V, 3) unit bind-pose normals."""
    return _unit(np.einsum("vba,vb->va", _blended(weights, transforms), normals))


def _blended(weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(V, 3, 3) each vertex's blended skinning matrix A_v = sum_j w_vj R_j."""
    return np.einsum("vj,jab->vab", weights, transforms[:, :, :3])


@dataclass
class Correctives:
    """Morph targets over the rig's V vertices at K keyframes of an N-frame clip."""

    keys: np.ndarray  # (K,) clip frames of the targets
    offsets: np.ndarray  # (K, V, 3) bind-pose position displacements, model frame, metres
    normals: np.ndarray  # (K, V, 3) bind-pose normal displacements (unit normal of the corrected surface - rest's)
    weights: np.ndarray  # (N, K) morph weights per clip frame
    moved: np.ndarray  # (K, V) posed displacement along the normal, metres (0 where no crossing was found)
    found: np.ndarray  # (K, V) bool: a crossing lay within reach

    def summary(self) -> str:
        """One line of displacement statistics (mm) over all targets."""
        if len(self.keys) == 0:
            return "no pose correctives"
        size = np.abs(self.moved[self.found]) * 1e3
        return (f"{len(self.keys)} pose-corrective morph targets (clip frames {', '.join(map(str, self.keys))}): "
                f"vertices moved onto PairOF's 0.5 level set by mean {size.mean():.2f} mm, median "
                f"{np.median(size):.2f}, 99th percentile {np.percentile(size, 99):.2f}, max {size.max():.2f} mm; "
                f"{100 * (1 - self.found.mean()):.2f}% with no crossing within reach kept")


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


@torch.no_grad()
def pose_correctives(avatar: HandAvatar, rig: Rig, weights: np.ndarray, global_orient: np.ndarray,
                     hand_pose: np.ndarray, keys: np.ndarray, *, reach: float = 0.008, first_step: float = 0.0005
                     ) -> Correctives:
    """The morph targets that put the exported skin on PairOF's 0.5 level set at the clip's `keys` frames.

    Args:
        rig: the exported rig. weights: (V, 16) the exported (truncated) weights, dense.
        global_orient: (N, 3), hand_pose: (N, 45) the clip's poses (axis-angle, radians).
        keys: (K,) clip frames that carry a target (`corrective_keys`).
        reach: the farthest a vertex moves, metres; first_step the root find's first step, metres.
    """
    transforms = joint_transforms(rig, local_rotations(global_orient[keys], hand_pose[keys], rig.pose_mean))
    rest_normals = trimesh.Trimesh(rig.vertices, rig.faces, process=False).vertex_normals
    ref, scale = avatar.hand.v_template, avatar.hand.scale
    offsets, normals, moved, found = [], [], [], []
    for k, frame in enumerate(tqdm(keys, desc="pose correctives", unit="pose", leave=False)):
        posed_hand = avatar.pose(torch.as_tensor(global_orient[frame:frame + 1], dtype=ref.dtype, device=ref.device),
                                 torch.as_tensor(hand_pose[frame:frame + 1], dtype=ref.dtype, device=ref.device))
        encoding = avatar.field.encode(posed_hand.vertices, posed_hand.joints, posed_hand.full_pose)

        def occupancy(points: np.ndarray) -> np.ndarray:  # points in metres -> PairOF in decimetres
            query = torch.as_tensor(points[None] * scale, dtype=ref.dtype, device=ref.device)
            return avatar.field.query(query, encoding).occupancy[0].double().cpu().numpy()

        posed = skin(rig, weights, transforms[k:k + 1])[0]
        direction = trimesh.Trimesh(posed, rig.faces, process=False).vertex_normals
        distance = level_set_distances(occupancy, posed, direction, reach=reach, first_step=first_step)
        hit = ~np.isnan(distance)
        shift = np.where(hit, distance, 0.0)[:, None] * direction
        corrected = trimesh.Trimesh(posed + shift, rig.faces, process=False).vertex_normals
        offsets.append(unskin(weights, transforms[k], shift))
        normals.append(unskin_normals(weights, transforms[k], corrected) - rest_normals)
        moved.append(np.where(hit, distance, 0.0))
        found.append(hit)
    count = len(keys)
    empty = np.zeros((0, len(rig.vertices), 3))
    return Correctives(keys=np.asarray(keys), offsets=np.stack(offsets) if count else empty,
                       normals=np.stack(normals) if count else empty, weights=morph_weights(len(global_orient), keys),
                       moved=np.stack(moved) if count else np.zeros((0, len(rig.vertices))),
                       found=np.stack(found) if count else np.zeros((0, len(rig.vertices)), dtype=bool))
