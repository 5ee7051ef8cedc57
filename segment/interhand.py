"""The InterHand2.6M file layout, joint order and camera conventions (5 fps release).

One dataset root (`data/InterHand/5`, or a synthetic capture such as `data/synthetic`) holds

    annotations/<split>/InterHand2.6M_<split>_{data,camera,joint_3d,MANO_NeuralAnnot}.json
    InterHand2.6M_5fps_batch1/images/<split>/Capture<N>/<seq>/cam<id>/image<frame>.jpg
    InterHand2.6M_5fps_batch1/masks_removeblack/<split>/... .png      (made by segment/, or written by a synthetic
                                                                       capture together with albedo/, shading/, depth/)

Annotation schema (keys are strings where InterHand's are: capture, frame and camera ids in the dictionaries):

- data.json, COCO style. images: id, file_name (relative to images/<split>/), width, height, capture, subject,
  seq_name, camera (str), frame_idx. annotations: id, image_id, bbox [x, y, w, h] px, joint_valid (42 x [0|1]),
  hand_type ('right' | 'left' | 'interacting'), hand_type_valid (0|1).
- camera.json: {capture: {campos: {cam: [3] mm}, camrot: {cam: 3x3 world->camera}, focal: {cam: [fx, fy]},
  princpt: {cam: [cx, cy]}}}. A world point x (mm) is x_cam = camrot (x - campos).
- joint_3d.json: {capture: {frame: {world_coord: 42 x 3 mm, joint_valid: 42 x [bool], hand_type, hand_type_valid}}},
  right hand joints 0-20 and left hand 21-41, each in INTERHAND_JOINT_NAMES order.
- MANO_NeuralAnnot.json: {capture: {frame: {'right': None | {pose: 48, shape: 10, trans: 3}, 'left': ...}}}. `pose` is
  the world-frame global rotation then the 45 finger values relative to the model's mean hand pose (`hands_mean`);
  `trans` is metres, added to the MANO output in metres (world mm = 1000 x (MANO(pose, shape) + trans)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DATA_FOLDER", "IMAGE_TREE", "MASK_TREE", "ANNOTATION_KINDS", "HAND_TYPES", "INTERHAND_JOINT_NAMES",
           "MANO_TO_INTERHAND", "INTERHAND_TO_MANO", "hand_joints", "image_file_name", "annotation_path",
           "tree_path", "camera_matrix", "world_to_camera", "project", "FrameFileError", "read_rgb"]

DATA_FOLDER = "InterHand2.6M_5fps_batch1"
IMAGE_TREE = "images"
MASK_TREE = "masks_removeblack"
ANNOTATION_KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
HAND_TYPES = ("right", "left")

INTERHAND_JOINT_NAMES = tuple(f"{finger}{k}" for finger in ("thumb", "index", "middle", "ring", "pinky")
                              for k in (4, 3, 2, 1)) + ("wrist",)
"""The 21 joints of one hand in InterHand2.6M order (4 is the tip, 1 the knuckle next to the palm)."""

MANO_TO_INTERHAND = (20, 15, 14, 13, 16, 3, 2, 1, 17, 6, 5, 4, 19, 12, 11, 10, 18, 9, 8, 7, 0)
"""interhand_joints = mano_joints[MANO_TO_INTERHAND] for the 21 MANO joints with fingertips (distal=True)."""

INTERHAND_TO_MANO = tuple(int(i) for i in np.argsort(MANO_TO_INTERHAND))
"""mano_joints = interhand_joints[INTERHAND_TO_MANO]: wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3,
then the tips of index, middle, pinky, ring, thumb (reference: INTERHAND2MANO)."""


def hand_joints(hand_type: str) -> slice:
    """The rows of the 42 InterHand joints that belong to `hand_type` ('right': 0-20, 'left': 21-41)."""
    if hand_type not in HAND_TYPES:
        raise ValueError(f"hand_type={hand_type!r} is not one of {HAND_TYPES}")
    return slice(0, 21) if hand_type == "right" else slice(21, 42)


def image_file_name(capture: int, seq_name: str, camera: str, frame_idx: int) -> str:
    """`file_name` of an image as data.json stores it: 'Capture0/ROM04_RT_Occlusion/cam400262/image20357.jpg'."""
    return f"Capture{capture}/{seq_name}/cam{camera}/image{frame_idx}.jpg"


def annotation_path(root: str | Path, split: str, kind: str) -> Path:
    """root/annotations/<split>/InterHand2.6M_<split>_<kind>.json, kind in ANNOTATION_KINDS."""
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"kind={kind!r} is not one of {ANNOTATION_KINDS}")
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def tree_path(root: str | Path, tree: str, split: str, file_name: str, suffix: str | None = None) -> Path:
    """A file of one of the per-image trees: root/InterHand2.6M_5fps_batch1/<tree>/<split>/<file_name>.

    Args:
        tree: IMAGE_TREE, MASK_TREE, or a ground-truth tree of a synthetic capture ('albedo', 'shading', 'depth').
        suffix: replaces the file name's suffix (masks are '.png' beside '.jpg' images).
    """
    path = Path(root) / DATA_FOLDER / tree / split / file_name
    return path.with_suffix(suffix) if suffix else path


def camera_matrix(focal, princpt) -> np.ndarray:
    """(3, 3) intrinsics K from camera.json's focal [fx, fy] and princpt [cx, cy] (pixels; a null is NaN)."""
    (fx, fy), (cx, cy) = focal, princpt
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=float)


def world_to_camera(points: np.ndarray, camrot, campos) -> np.ndarray:
    """Camera coordinates of world points: camrot (x - campos).

    Args:
        points: (..., 3) world, mm.
        camrot: (3, 3) world-to-camera rotation.
        campos: (3,) camera centre, world mm.

    Returns:
        (..., 3) camera frame (x right, y down, z forward), mm.
    """
    return (np.asarray(points, dtype=float) - np.asarray(campos, dtype=float)) @ np.asarray(camrot, dtype=float).T


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 2) pixel coordinates (integers at pixel centres, OpenCV convention) of (..., 3) camera-frame points."""
    uvw = np.asarray(points_cam, dtype=float) @ np.asarray(K, dtype=float).T
    return uvw[..., :2] / uvw[..., 2:3]


class FrameFileError(Exception):
    """An image or mask of a frame is missing or cannot be decoded; `reason` says which, for per-reason counts."""

    def __init__(self, reason: str, path: Path, detail: str = ""):
        super().__init__(f"{reason}: {path}" + (f" ({detail})" if detail else ""))
        self.reason, self.path = reason, path


def read_rgb(path: str | Path, *, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file.

    Raises:
        FrameFileError: reason 'missing <what>' or 'unreadable <what>' (e.g. a truncated JPEG).
    """
    path = Path(path)
    if not path.is_file():
        raise FrameFileError(f"missing {what}", path)
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated file raises here instead of giving grey rows
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise FrameFileError(f"unreadable {what}", path, str(error)) from error
