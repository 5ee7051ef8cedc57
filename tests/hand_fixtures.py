"""Small MANO-format models and captures that the tests build: the tube model (`smplx.tube`), mirrored models and
poses, the small synthetic capture."""

from __future__ import annotations

import numpy as np

from smplx.joint_names import NUM_JOINTS
from smplx.model_file import HandModelData
from smplx.tube import make_tube_model  # noqa: F401 (the tests' fixture)

MIRROR = np.array([-1.0, 1.0, 1.0])  # the left hand is the right hand mirrored in x


def mirror_model(data: HandModelData) -> HandModelData:
    """The mirror image of a model in x: a left hand from a right one (shapedirs mirrored correctly)."""
    sign_pairs = np.outer(MIRROR, MIRROR).reshape(-1)  # (R - I) entry (i, k) of a mirrored pose gets s_i s_k
    feature_sign = np.tile(sign_pairs, NUM_JOINTS - 1)  # (135,)
    return HandModelData(
        v_template=data.v_template * MIRROR,
        faces=data.faces[:, [0, 2, 1]],
        shapedirs=data.shapedirs * MIRROR[None, :, None],
        posedirs=data.posedirs * MIRROR[None, :, None] * feature_sign[None, None, :],
        j_regressor=data.j_regressor,
        lbs_weights=data.lbs_weights,
        hands_components=mirror_pose(data.hands_components),
        hands_mean=mirror_pose(data.hands_mean),
        hands_coeffs=data.hands_coeffs,
        fingertip_vertex_ids=data.fingertip_vertex_ids,
        left_shapedirs_ok=True,
    )


def mirror_pose(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3k) of the mirrored rotation: M R(v) M = R(det(M) M v) = R((vx, -vy, -vz))."""
    return (axis_angle.reshape(*axis_angle.shape[:-1], -1, 3) * -MIRROR).reshape(axis_angle.shape)


def _small_capture():
    from segment.synthetic import CaptureSettings
    return CaptureSettings(model="open_hand", train_frames=5, eval_frames=2, cameras=2, seed=3)


SMALL_CAPTURE = _small_capture()
"""Settings of the tests' synthetic capture (conftest's `synthetic_capture`): 7 frames x 2 cameras, open hand."""


def train_tiny_pairof(out_root, *, name: str = "field", is_rhand: bool = True) -> None:
    """Pretrain a tiny PairOF for MANO-HD level 1 of the open hand (2 steps) into <out_root>/<name>/pairof.ckpt, for
    the avatar tests (of the left hand with is_rhand=False)."""
    from pairof.train import main as pairof_main
    pairof_main([f"out_root={out_root}", f"name={name}", "model.path=open_hand", f"model.is_rhand={is_rhand}",
                 "model.levels=1", "model.lbs_weights=",
                 "field.part_samples=32", "field.anchors=256", "batch=1", "points.per_part=16", "eval_poses=1",
                 "eval_points=256", "mesh_resolution=16", "publish=false", "steps=2", "precision=float32"])
