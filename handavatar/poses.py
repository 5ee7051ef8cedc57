"""Poses that drive the avatar in free-pose rendering: the `freepose` schedule of the `joint_rot` table, and driving
sequences for `movement` (an InterHand2.6M-layout subject, or a file of poses).

Motion files (`run.motion_file`), .npz or .json (an object of arrays), hold either

- `pose`: (N, 48), the global rotation (3) then the hand pose (45), or
- `hand_pose`: (N, 45), with an optional `global_orient`: (N, 3);

axis-angle, radians. The global rotation is camera-frame (it turns the hand in front of the camera, like the
annotation cache's `global_orient`); the hand pose is what the avatar's MANO layer takes, i.e. with the model's mean
hand pose already added (the annotation cache's `hand_pose`; add `hands_mean` to NeuralAnnot values first).
"""

from __future__ import annotations

import difflib
import json
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from smplx.utils.cli import InputError, MissingFileError
from smplx.hand_pose import angles_to_pose
from smplx.joint_names import JOINT_NAMES, NUM_HAND_POSE
from segment.annotations import SplitAnnotations, Subject
from segment.posing import create_model, pose_hands

__all__ = ["Motion", "freepose_angles", "freepose_poses", "load_motion_file", "load_motion_subject"]


@dataclass
class Motion:
    """A driving sequence of N frames."""

    hand_pose: np.ndarray  # (N, 45) axis-angle, radians, the model's mean pose included
    global_orient: np.ndarray | None  # (N, 3) camera-frame axis-angle, radians; None: the file gives none
    source: str  # what it was read from (for messages and the run summary)

    def __len__(self) -> int:
        return len(self.hand_pose)


def freepose_angles(joint_rot: dict[str, list], frames: int) -> np.ndarray:
    """The freepose schedule: every joint moves at once, linearly from the start to the end of its ranges.

    Args:
        joint_rot: {MANO joint name: [[x_from, x_to], [y_from, y_to], [z_from, z_to]]}, degrees; joints not named
            stay at 0.
        frames: F >= 1; frame f is at s = f / (F - 1) of the way (frame 0: the starts; frame F - 1: the ends).

    Returns:
        (F, 16, 3) degrees, joints in MANO order (smplx.joint_names.JOINT_NAMES).
    """
    if frames < 1:
        raise InputError(f"run.frames must be at least 1, got {frames}")
    table = np.zeros((len(JOINT_NAMES), 3, 2))
    for name, ranges in joint_rot.items():
        if name not in JOINT_NAMES:
            near = difflib.get_close_matches(name, JOINT_NAMES, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise InputError(f"run.joint_rot.{name}: not a MANO joint (one of {list(JOINT_NAMES)}){hint}")
        values = np.asarray(ranges, dtype=float)
        if values.shape != (3, 2):
            raise InputError(f"run.joint_rot.{name} must be three [from, to] ranges (x, y, z) in degrees, got "
                             f"{ranges!r}")
        table[JOINT_NAMES.index(name)] = values
    s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return table[..., 0] + s[:, None, None] * (table[..., 1] - table[..., 0])


def freepose_poses(angles: np.ndarray, pose_frames: np.ndarray, global_orient: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The poses of a freepose schedule.

    Finger rows are anatomical angles (x flexion, y abduction, z twist; smplx.hand_pose) of the flat hand; the wrist
    row turns `global_orient` about the model axes (intrinsic x-y-z rotation applied after it).

    Args:
        angles: (F, 16, 3) degrees, from `freepose_angles`.
        pose_frames: (15, 3, 3) anatomical frames of the avatar's hand (MANO.pose_frames()).
        global_orient: (3,) camera-frame axis-angle of the hand at angle 0.

    Returns:
        global_orient (F, 3) and hand_pose (F, 45), axis-angle, radians.
    """
    hand_pose = angles_to_pose(angles[:, 1:], pose_frames)
    wrist = Rotation.from_euler("XYZ", angles[:, 0], degrees=True) * Rotation.from_rotvec(global_orient)
    return wrist.as_rotvec(), hand_pose


def _array(arrays: dict, key: str, width: int, path: Path) -> np.ndarray:
    try:
        values = np.asarray(arrays[key], dtype=float)
    except (TypeError, ValueError) as error:
        raise InputError(f"motion file {path}: '{key}' is not a numeric array ({error})") from error
    if values.ndim != 2 or values.shape[1] != width or len(values) == 0:
        raise InputError(f"motion file {path}: '{key}' must be (N, {width}) with N >= 1, found shape "
                         f"{values.shape}")
    bad = np.flatnonzero(~np.isfinite(values).all(1))
    if len(bad):
        raise InputError(f"motion file {path}: '{key}' has NaN or infinite values in {len(bad)} frame(s), the first "
                         f"frame {bad[0]}; fix or drop those frames")
    return values


def load_motion_file(path: str | Path) -> Motion:
    """Read a motion file (format in the module docstring).

    Raises:
        MissingFileError: no such file. InputError: another suffix, unreadable content, missing keys, wrong shapes,
            frame counts that differ, non-finite values; the message says what was expected and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"run.motion_file={path} does not exist; check the path")
    expected = "'pose' (N, 48), or 'hand_pose' (N, 45) with an optional 'global_orient' (N, 3)"
    if path.suffix not in (".npz", ".json"):
        raise InputError(f"motion file {path} must be .npz or .json holding {expected}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        else:
            arrays = json.loads(path.read_text())
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as error:  # JSONDecodeError too
        raise InputError(f"motion file {path} cannot be read as {path.suffix[1:]} ({error})") from error
    if not isinstance(arrays, dict) or not ({"pose", "hand_pose"} & set(arrays)):
        found = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise InputError(f"motion file {path} must hold {expected}; found {found}")
    if "pose" in arrays:
        pose = _array(arrays, "pose", 3 + NUM_HAND_POSE, path)
        return Motion(hand_pose=pose[:, 3:], global_orient=pose[:, :3], source=str(path))
    hand_pose = _array(arrays, "hand_pose", NUM_HAND_POSE, path)
    global_orient = _array(arrays, "global_orient", 3, path) if "global_orient" in arrays else None
    if global_orient is not None and len(global_orient) != len(hand_pose):
        raise InputError(f"motion file {path}: 'global_orient' has {len(global_orient)} frames, 'hand_pose' "
                         f"{len(hand_pose)}")
    return Motion(hand_pose=hand_pose, global_orient=global_orient, source=str(path))


def load_motion_subject(root: str | Path, subject: str, *, hand: str = "right", model: str | None = None) -> Motion:
    """The MANO parameters of an InterHand2.6M-layout subject, posed as the annotation cache poses them (camera-frame
    global rotation, the model's mean hand pose added), one camera's frames in frame order.

    A subject with a camera ('.../cam<id>') uses that camera; otherwise the camera with the most frames (the lowest
    id among equals). Images and masks are not needed.

    Args:
        root: dataset root. subject: '<split>/Capture<N>/<sequence>[/cam<id>]'. hand: 'right' or 'left'.
        model: the hand model (as segment.posing.create_model).

    Raises:
        InputError: a malformed subject, or one without a frame of this hand with MANO parameters (with the
            counts of skipped frames by reason). MissingFileError: the split's annotation files are missing.
    """
    parsed = Subject.parse(subject)
    records, rejected = SplitAnnotations(root, parsed.split).frames(parsed, hand)
    if not records:
        counts = ", ".join(f"{n} {reason}" for reason, n in rejected.most_common()) or "no images of it at all"
        raise InputError(f"run.motion_subject={subject} has no {hand}-hand frame with MANO parameters in {root} "
                         f"({counts}); expected '<split>/Capture<N>/<sequence>[/cam<id>]' of that root")
    counts = Counter(r.camera for r in records)
    camera = parsed.camera or min(counts, key=lambda c: (-counts[c], c))
    records = [r for r in records if r.camera == camera]
    posed = pose_hands(create_model(root, model, hand=hand), records)
    return Motion(hand_pose=posed.hand_pose, global_orient=posed.global_orient,
                  source=f"{parsed.split}/Capture{parsed.capture}/{parsed.seq_name}/cam{camera}")
