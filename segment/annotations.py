"""Reading the InterHand2.6M annotation files of one split, and selecting the frames of one subject.

A subject is '<split>/Capture<N>/<sequence>' (all cameras, as the published configs use it) or
'<split>/Capture<N>/<sequence>/cam<id>' (one camera). The four JSON files of the split are read once and indexed by
(capture, sequence), so that selecting a subject reads its own frames only; nothing of another split is held. One
`SplitAnnotations` serves every subject of its split (segment.preprocess reads a split once for all its subjects).
Frames that cannot be used are counted by reason, never silently dropped. Each frame also keeps its annotation's
position in data.json, the order in which the published loader reads the frames (and takes every skip-th of them).
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smplx.utils.cli import InputError, MissingFileError
from segment.interhand import (ANNOTATION_KINDS, DATA_FOLDER, HAND_TYPES, annotation_path, camera_matrix,
                               hand_joints)

__all__ = ["Subject", "FrameRecord", "SplitAnnotations", "BORDER_PX", "MIN_BOX_PX", "box_ok"]

BORDER_PX = 10  # reference §6.2: the hand box must keep this margin to the image border...
MIN_BOX_PX = 80  # ...and be at least this large


@dataclass(frozen=True)
class Subject:
    split: str
    capture: int
    seq_name: str
    camera: str | None = None  # None: all cameras

    @classmethod
    def parse(cls, text: str) -> Subject:
        """'test/Capture0/ROM04_RT_Occlusion' or 'test/Capture0/ROM04_RT_Occlusion/cam400262'."""
        parts = text.strip("/").split("/")
        if len(parts) not in (3, 4) or not parts[1].startswith("Capture") or not parts[1][7:].isdigit() or (
                len(parts) == 4 and not parts[3].startswith("cam")):
            raise InputError(f"subject {text!r} is not '<split>/Capture<N>/<sequence>[/cam<id>]', e.g. "
                             "'test/Capture0/ROM04_RT_Occlusion'")
        return cls(parts[0], int(parts[1][7:]), parts[2], parts[3][3:] if len(parts) == 4 else None)

    def __str__(self) -> str:
        return f"{self.split}/Capture{self.capture}/{self.seq_name}" + (f"/cam{self.camera}" if self.camera else "")

    def preprocess_dir(self, root: str | Path) -> Path:
        """Where the annotation cache of this subject lives: <root>/InterHand2.6M_5fps_batch1/preprocess/<subject>."""
        return Path(root) / DATA_FOLDER / "preprocess" / str(self)


@dataclass
class FrameRecord:
    """What the annotation files say about one image of one hand."""

    key: str  # '<split>/<file_name>', unique over a dataset root
    file_name: str  # relative to images/<split>/
    capture: int
    seq_name: str
    camera: str
    frame_idx: int
    width: int
    height: int
    bbox: np.ndarray  # (4,) [x, y, w, h] px
    K: np.ndarray  # (3, 3) full-resolution intrinsics
    camrot: np.ndarray  # (3, 3) world to camera
    campos: np.ndarray  # (3,) mm
    pose: np.ndarray  # (48,) NeuralAnnot: world global rotation, then finger pose relative to the mean hand pose
    shape: np.ndarray  # (10,) betas
    world_joints: np.ndarray  # (21, 3) mm, this hand, InterHand joint order
    joint_valid: np.ndarray  # (21,) bool, this hand
    annotation_index: int = -1  # position of the frame's annotation in data.json's 'annotations' (published order)


def box_ok(bbox, width: int, height: int) -> bool:
    """The published frame filter on the hand box: BORDER_PX from every image border and at least MIN_BOX_PX."""
    x, y, w, h = bbox
    return (x >= BORDER_PX and y >= BORDER_PX and max(w, h) >= MIN_BOX_PX and x + w <= width - BORDER_PX
            and y + h <= height - BORDER_PX)


def _read_json(path: Path):
    if not path.is_file():
        raise MissingFileError(f"annotation file {path} is missing. Put the InterHand2.6M annotations under "
                                f"{path.parent.parent.parent}/annotations/<split>/, or render a synthetic capture "
                                "(python -m segment.synthetic)")
    enabled = gc.isenabled()
    gc.disable()  # a split's file parses into millions of objects: the collector's passes took 3/4 of the time
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise InputError(f"annotation file {path} is not valid JSON ({error.msg} at line {error.lineno}, column "
                         f"{error.colno}); download or regenerate it") from error
    finally:
        if enabled:
            gc.enable()


def _nonfinite(record: FrameRecord) -> str | None:
    """The reason a frame is dropped when a number it was given is NaN or infinite (a null in the JSON too)."""
    for reason, arrays in (("non-finite MANO parameters", (record.pose, record.shape)),
                           ("non-finite camera parameters", (record.K, record.camrot, record.campos)),
                           ("non-finite 3D joints", (record.world_joints,))):
        if not all(np.isfinite(a).all() for a in arrays):
            return reason
    return None


class SplitAnnotations:
    """The four annotation files of one split (data, camera, joint_3d, MANO_NeuralAnnot), indexed.

    Args:
        root: dataset root (data/InterHand/5, or a synthetic capture).
        split: 'train', 'val' or 'test'.
    """

    def __init__(self, root: str | Path, split: str):
        self.root, self.split = Path(root), split
        files = {kind: annotation_path(root, split, kind) for kind in ANNOTATION_KINDS}
        self.paths = files
        data = _read_json(files["data"])
        try:
            self.images = {image["id"]: image for image in data["images"]}
            self.annotations = {ann["image_id"]: ann for ann in data["annotations"]}
            self.annotation_index = {ann["image_id"]: i for i, ann in enumerate(data["annotations"])}
        except (KeyError, TypeError) as error:
            raise InputError(f"{files['data']} is not an InterHand2.6M data file: missing {error}") from error
        self.cameras = _read_json(files["camera"])
        self.joint_3d = _read_json(files["joint_3d"])
        self.mano = _read_json(files["MANO_NeuralAnnot"])
        # image ids by (capture, sequence), each list in (frame, camera) order: a subject reads its own frames only
        self.sequences: dict[tuple[int, str], list[tuple[int, str, int]]] = {}
        for image_id, image in self.images.items():
            self.sequences.setdefault((int(image["capture"]), image["seq_name"]), []).append(
                (int(image["frame_idx"]), str(image["camera"]), image_id))
        for entries in self.sequences.values():
            entries.sort()

    def frames(self, subject: Subject, hand: str = "right") -> tuple[list[FrameRecord], Counter]:
        """The frames of a subject that have everything a hand avatar needs, in (frame, camera) order (each with its
        `annotation_index`, for the published order).

        Returns:
            The records, and the count of skipped images by reason ('no annotation', 'hand type left', 'MANO
            parameters null', 'no MANO entry', 'no camera parameters', 'no 3D joints', 'non-finite box', 'box too
            close to the border or too small', 'non-finite MANO parameters', 'non-finite camera parameters',
            'non-finite 3D joints').
        """
        if hand not in HAND_TYPES:
            raise InputError(f"hand={hand!r} is not one of {HAND_TYPES}")
        if subject.split != self.split:
            raise InputError(f"subject {subject} is not in split {self.split!r}")
        capture = str(subject.capture)
        rejected: Counter = Counter()
        records = []
        cap = subject.capture
        for frame_idx, camera, image_id in self.sequences.get((cap, subject.seq_name), ()):
            if subject.camera is not None and camera != subject.camera:
                continue
            image = self.images[image_id]
            ann = self.annotations.get(image_id)
            if ann is None:
                rejected["no annotation"] += 1
                continue
            if ann["hand_type"] != hand:
                rejected[f"hand type {ann['hand_type']}"] += 1
                continue
            try:
                params = self.mano[capture][str(frame_idx)][hand]
            except KeyError:
                rejected["no MANO entry"] += 1
                continue
            if params is None:
                rejected["MANO parameters null"] += 1
                continue
            cams = self.cameras.get(capture, {})
            if any(camera not in cams.get(k, {}) for k in ("campos", "camrot", "focal", "princpt")):
                rejected["no camera parameters"] += 1
                continue
            joints = self.joint_3d.get(capture, {}).get(str(frame_idx))
            if joints is None:
                rejected["no 3D joints"] += 1
                continue
            if not np.isfinite(np.asarray(ann["bbox"], dtype=float)).all():
                rejected["non-finite box"] += 1
                continue
            if not box_ok(ann["bbox"], image["width"], image["height"]):
                rejected["box too close to the border or too small"] += 1
                continue
            rows = hand_joints(hand)
            record = FrameRecord(
                key=f"{self.split}/{image['file_name']}", file_name=image["file_name"], capture=cap,
                seq_name=image["seq_name"], camera=camera, frame_idx=frame_idx, width=int(image["width"]),
                height=int(image["height"]), bbox=np.asarray(ann["bbox"], dtype=float),
                K=camera_matrix(cams["focal"][camera], cams["princpt"][camera]),
                camrot=np.asarray(cams["camrot"][camera], dtype=float),
                campos=np.asarray(cams["campos"][camera], dtype=float),
                pose=np.asarray(params["pose"], dtype=float), shape=np.asarray(params["shape"], dtype=float),
                world_joints=np.asarray(joints["world_coord"], dtype=float)[rows],
                joint_valid=np.asarray(ann["joint_valid"], dtype=float).reshape(-1)[rows] > 0,
                annotation_index=self.annotation_index[image_id])
            reason = _nonfinite(record)
            if reason:
                rejected[reason] += 1
                continue
            records.append(record)
        return records, rejected
