"""Posing the hand model for InterHand2.6M frames, in the paper's conventions (reference §2.3 and §6.2).

The model frame M is the MANO output with the camera-frame global rotation, centred on the posed middle-finger knuckle
(joint 4) and in decimetres. A frame's camera-frame points are x_cam = x_M + Th, where Th puts the posed model's wrist
on the annotated 3D wrist (NeuralAnnot's `trans` is not used, as in the published code). The finger pose is
NeuralAnnot's plus the model's own mean hand pose, with no +0.01 shift (the published code's quirk 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

import smplx
from smplx import MANO, PAPER_FRAME
from segment.annotations import FrameRecord
from segment.interhand import INTERHAND_TO_MANO, world_to_camera

__all__ = ["PosedHands", "pose_hands", "create_model", "MODEL_OPTIONS", "MM_TO_MODEL"]

MODEL_OPTIONS = dict(PAPER_FRAME, flat_hand_mean=True)
"""The smplx.create options of the layer `pose_hands` needs (the paper's model frame, sealed, with fingertips)."""

MM_TO_MODEL = 0.01  # InterHand mm to model-frame dm


@dataclass
class PosedHands:
    """The hand of F frames. M: model frame (dm, centred on posed joint 4); cam: camera frame, dm."""

    global_orient: np.ndarray  # (F, 3) camera-frame axis-angle
    hand_pose: np.ndarray  # (F, 45) finger axis-angle, the model's mean hand pose included
    betas: np.ndarray  # (F, NB)
    vertices: np.ndarray  # (F, V, 3) posed, sealed, M
    joints: np.ndarray  # (F, 21, 3) posed joints with fingertips, M, MANO order
    tpose_joints: np.ndarray  # (F, 21, 3) zero-pose joints with the frame's shape, M
    joints_cam: np.ndarray  # (F, 21, 3) annotated joints, cam, MANO order
    Th: np.ndarray  # (F, 3) x_cam = x_M + Th


def pose_hands(model: MANO, records: list[FrameRecord], *, chunk: int = 256) -> PosedHands:
    """Pose `model` (built with MODEL_OPTIONS) for each record (at least one).

    Raises:
        ValueError: when the model was built with other options, or no records are given.
    """
    options = model.options
    wrong = {k: options[k] for k, v in MODEL_OPTIONS.items() if options[k] != v}
    if wrong:
        raise ValueError(f"pose_hands needs a layer built with {MODEL_OPTIONS}; this one has {wrong}")
    if not records:
        raise ValueError("pose_hands needs at least one frame")
    hands_mean = model.to_model_data().hands_mean
    hands_mean = np.zeros(45) if hands_mean is None else hands_mean
    pose = np.stack([r.pose for r in records])
    camrot = np.stack([r.camrot for r in records])
    global_orient = Rotation.from_matrix(camrot @ Rotation.from_rotvec(pose[:, :3]).as_matrix()).as_rotvec()
    hand_pose = pose[:, 3:] + hands_mean
    betas = np.stack([r.shape[:model.num_betas] for r in records])

    dtype = model.v_template.dtype
    vertices, joints, tpose = [], [], []
    with torch.no_grad():
        for start in range(0, len(records), chunk):
            part = slice(start, start + chunk)
            b = torch.as_tensor(betas[part], dtype=dtype)
            out = model(betas=b, global_orient=torch.as_tensor(global_orient[part], dtype=dtype),
                        hand_pose=torch.as_tensor(hand_pose[part], dtype=dtype))
            vertices.append(out.vertices.double().numpy())
            joints.append(out.joints.double().numpy())
            tpose.append(model(betas=b).joints.double().numpy())
    joints = np.concatenate(joints)
    joints_cam = np.stack([world_to_camera(r.world_joints[list(INTERHAND_TO_MANO)], r.camrot, r.campos)
                           for r in records]) * MM_TO_MODEL
    return PosedHands(global_orient=global_orient, hand_pose=hand_pose, betas=betas,
                      vertices=np.concatenate(vertices), joints=joints, tpose_joints=np.concatenate(tpose),
                      joints_cam=joints_cam, Th=joints_cam[:, 0] - joints[:, 0])


def create_model(root: str | Path, model: str | None = None, *, hand: str = "right") -> MANO:
    """The hand layer for a dataset root, built with MODEL_OPTIONS (float64).

    Args:
        root: the dataset root.
        model: a MANO-format file or folder, "open_hand", or None: the model recorded in the root's capture.json
            (a synthetic capture), else "mano" (MANO_RIGHT/LEFT.pkl in mano/, or the open hand without them).
    """
    if model is None:
        manifest = Path(root) / "capture.json"
        model = json.loads(manifest.read_text())["model"]["source"] if manifest.is_file() else "mano"
    return smplx.create(model, is_rhand=hand == "right", dtype=torch.float64, **MODEL_OPTIONS)
