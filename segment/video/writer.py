"""Write a fitted video as a capture in the InterHand2.6M layout (segment.interhand), so the masks, cache, training
and run commands read it like InterHand or the synthetic capture: one camera (the phone) at the world origin, the
training frames as sequence ROM04_RT_Occlusion and the held-out frames as ROM03_RT_No_Occlusion of test/Capture0
(the names configs/default.yaml already points at), masks in masks_removeblack/.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smplx.utils.fileio import atomic_write, write_json
from segment.interhand import (HAND_TYPES, IMAGE_TREE, MANO_TO_INTERHAND, MASK_TREE, annotation_path, hand_joints,
                               image_file_name, tree_path)
from segment.masks import fill_triangles

__all__ = ["VideoFrame", "write_capture", "refine_mask", "grabcut_masks", "BAND_FRACTION", "SPLIT", "CAPTURE", "CAMERA",
           "TRAIN_SEQ", "EVAL_SEQ"]

SPLIT, CAPTURE, CAMERA = "test", 0, "0"
TRAIN_SEQ, EVAL_SEQ = "ROM04_RT_Occlusion", "ROM03_RT_No_Occlusion"
BAND_FRACTION = 0.05  # GrabCut decides a band this share of the hand box's diagonal around the mesh's outline
# (measured on the synthetic capture as a video, every 10th of its 300 training frames, mean IoU with the true masks:
# the projected fitted mesh 0.81; GrabCut in a band of 4 px 0.92, 6 px 0.95, 10 px 0.98, 15 px 0.987, 20 px 0.989;
# the hand box's diagonal is about 200-300 px)


@dataclass
class VideoFrame:
    """One kept frame with its fit, camera frame = world frame, metres."""

    source_index: int  # frame number in the video: becomes frame_idx
    image: Path  # the extracted JPEG
    held_out: bool
    global_orient: np.ndarray  # (3,) rad
    hand_pose: np.ndarray  # (45,) rad, full pose
    transl: np.ndarray  # (3,) m
    joints: np.ndarray  # (21, 3) m, MANO order with fingertips
    vertices: np.ndarray  # (V, 3) m
    uv: np.ndarray  # (V, 2) px, projected vertices


def refine_mask(silhouette: np.ndarray, bgr: np.ndarray, *, band_px: int, iterations: int = 4) -> np.ndarray:
    """The projected mesh's silhouette snapped to the image with GrabCut.

    Pixels more than `band_px` inside the silhouette are sure hand, more than `band_px` outside sure background, the
    band between is decided by GrabCut's colour models (run on a crop around the hand).

    Args:
        silhouette: (H, W) uint8, 255 inside the projected mesh.
        bgr: (H, W, 3) uint8 image.

    Returns:
        (H, W) uint8 0/255 mask.
    """
    inside = silhouette > 0
    if not inside.any():
        return silhouette
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
    sure_fg = cv2.erode(silhouette, kernel) > 0
    maybe = cv2.dilate(silhouette, kernel) > 0
    ys, xs = np.nonzero(maybe)
    margin = 4 * band_px
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, bgr.shape[0])
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, bgr.shape[1])
    labels = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    labels[maybe[y0:y1, x0:x1]] = cv2.GC_PR_BGD
    labels[inside[y0:y1, x0:x1]] = cv2.GC_PR_FGD
    labels[sure_fg[y0:y1, x0:x1]] = cv2.GC_FGD
    if not (labels == cv2.GC_BGD).any() or not sure_fg.any():
        return silhouette
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(bgr[y0:y1, x0:x1]), labels, None, *models, iterations, cv2.GC_INIT_WITH_MASK)
    out = np.zeros_like(silhouette)
    out[y0:y1, x0:x1] = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0)
    return out


def grabcut_masks(uv: np.ndarray, images: list[Path], faces: np.ndarray, width: int, height: int, *,
                  grabcut: bool = True, progress: bool = True, desc: str = "masks") -> list[np.ndarray]:
    """Masks of N frames: the projected mesh, refined by GrabCut (refine_mask) in a band of BAND_FRACTION of the hand
    box's diagonal.

    Args:
        uv: (N, V, 2) px projected vertices of each frame.
        images: N image files.
        faces: (F, 3) faces of the vertices.
        grabcut: False keeps the projected mesh.

    Returns:
        N (H, W) uint8 0/255 masks.
    """
    masks = []
    for pixels, image in zip(tqdm(uv, desc=desc, unit="frame", disable=not progress), images):
        mask = fill_triangles(pixels, faces, width, height)
        if grabcut:
            band = max(4, round(BAND_FRACTION * float(np.hypot(*(pixels.max(0) - pixels.min(0))))))
            mask = refine_mask(mask, cv2.imread(str(image), cv2.IMREAD_COLOR), band_px=band)
        masks.append(mask)
    return masks


def _link_or_copy(source: Path, target: Path) -> None:
    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _rounded(array, digits: int) -> list:
    return np.round(np.asarray(array, dtype=float), digits).tolist()


def write_capture(root: str | Path, frames: list[VideoFrame], *, faces: np.ndarray, betas: np.ndarray,
                  hands_mean: np.ndarray, hand: str, focal: float, principal: tuple[float, float], width: int,
                  height: int, grabcut: bool = True, overwrite_masks: bool = False, progress: bool = True) -> None:
    """Write images, masks and the four annotation files of the split under `root` (existing images are kept,
    existing masks too unless overwrite_masks, annotations are replaced).

    Args:
        faces: (F, 3) faces of the fitted vertices.
        betas: (NB,) the video's shape.
        hands_mean: (45,) the model's mean hand pose (NeuralAnnot stores finger poses relative to it).
        hand: 'right' or 'left'.
    """
    if hand not in HAND_TYPES:
        raise ValueError(f"hand={hand!r} is not one of {HAND_TYPES}")
    root = Path(root)
    valid = np.zeros(42, dtype=int)
    valid[hand_joints(hand)] = 1
    images, annotations, joint_3d, mano = [], [], {}, {}
    for f in tqdm(frames, desc="masks", unit="frame", disable=not progress):
        seq = EVAL_SEQ if f.held_out else TRAIN_SEQ
        file_name = image_file_name(CAPTURE, seq, CAMERA, f.source_index)
        _link_or_copy(f.image, tree_path(root, IMAGE_TREE, SPLIT, file_name))
        mask_path = tree_path(root, MASK_TREE, SPLIT, file_name, ".png")
        if overwrite_masks or not mask_path.is_file():
            mask = grabcut_masks(f.uv[None], [f.image], faces, width, height, grabcut=grabcut, progress=False)[0]
            encoded = cv2.imencode(".png", np.repeat(mask[..., None], 3, axis=2))[1]
            atomic_write(mask_path, lambda out, data=encoded: out.write(data.tobytes()))
        (x0, y0), (x1, y1) = f.uv.min(0), f.uv.max(0)
        index = len(images)
        images.append({"id": index, "file_name": file_name, "width": width, "height": height, "capture": CAPTURE,
                       "subject": CAPTURE, "seq_name": seq, "camera": CAMERA, "frame_idx": f.source_index})
        annotations.append({"id": index, "image_id": index, "bbox": _rounded([x0, y0, x1 - x0, y1 - y0], 4),
                            "joint_valid": [[int(v)] for v in valid], "hand_type": hand, "hand_type_valid": 1})
        world = np.zeros((42, 3))
        world[hand_joints(hand)] = 1000 * f.joints[list(MANO_TO_INTERHAND)]
        joint_3d[str(f.source_index)] = {"world_coord": _rounded(world, 4), "joint_valid": [[bool(v)] for v in valid],
                                         "hand_type": hand, "hand_type_valid": True}
        params = {"pose": _rounded(np.concatenate([f.global_orient, f.hand_pose - hands_mean]), 7),
                  "shape": _rounded(betas, 7), "trans": _rounded(f.transl, 7)}
        mano[str(f.source_index)] = {h: (params if h == hand else None) for h in HAND_TYPES}
    capture = str(CAPTURE)
    camera = {"campos": {CAMERA: [0.0, 0.0, 0.0]}, "camrot": {CAMERA: np.eye(3).tolist()},
              "focal": {CAMERA: [round(focal, 4)] * 2}, "princpt": {CAMERA: _rounded(principal, 4)}}
    content = {"data": {"images": images, "annotations": annotations}, "camera": {capture: camera},
               "joint_3d": {capture: joint_3d}, "MANO_NeuralAnnot": {capture: mano}}
    for kind, obj in content.items():
        write_json(annotation_path(root, SPLIT, kind), obj)
