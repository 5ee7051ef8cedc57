"""The annotation cache of one subject: every usable frame with its camera, hand pose and boxes (reference §6.2).

    python -m segment.preprocess --root data/synthetic --subject test/Capture0/ROM04_RT_Occlusion

Per frame of the chosen hand that has MANO parameters and passes the published quality filters (box margin and size,
dark or grey image, missing or tiny mask, dark hand): the full-resolution intrinsics K, the camera-frame global
rotation, the hand pose (+ the model's mean pose), the shape, the translation Th (x_cam = x_M + Th), the posed and
rest joints, the 3D box of the posed mesh (M frame), the square 2D box and the annotated camera-space joints. Stored
as `<root>/InterHand2.6M_5fps_batch1/preprocess/<subject>/anno_<hand>.npz` with a fingerprint of its inputs and
settings; `load_cache` rebuilds it when they change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from smplx.utils.cli import InputError, cli_main, finite_float
from smplx.utils.fileio import atomic_write
from segment.annotations import FrameRecord, SplitAnnotations, Subject
from segment.interhand import (ANNOTATION_KINDS, IMAGE_TREE, MASK_TREE, FrameFileError, annotation_path, project,
                               read_rgb, tree_path)
from segment.masks import MIN_IMAGE_MAX
from segment.posing import create_model, pose_hands

__all__ = ["AnnotationCache", "build_cache", "load_cache", "load_caches", "cache_path", "square_box",
           "NoUsableFrames", "CACHE_VERSION"]

CACHE_VERSION = 3  # 2: annotation_order; 3: camrot
MIN_MASK_PX = 3000  # reference §6.2 filters
MIN_HAND_INTENSITY = 20


class NoUsableFrames(InputError):
    """Every frame of a subject was filtered out; the message counts them by reason."""


def square_box(bbox, width: int, height: int) -> np.ndarray:
    """The published crop box: [x, y, w, h] clipped to the image, then grown to a square about its centre (px)."""
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(width - 1.0, x0 + max(0.0, w - 1)), min(height - 1.0, y0 + max(0.0, h - 1))
    if w * h > 0 and x1 >= x0 and y1 >= y0:
        x, y, w, h = x0, y0, x1 - x0, y1 - y0
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    return np.array([cx - side / 2, cy - side / 2, side, side])


def cache_path(root: str | Path, subject: Subject, hand: str = "right") -> Path:
    return subject.preprocess_dir(root) / f"anno_{hand}.npz"


def _fingerprint(root: Path, subject: Subject, hand: str, model_source: str, bbox_offset: float) -> str:
    """A hash of what the cache depends on: settings, model, the annotation files and the subject's masks (sizes and
    modification times, so it is cheap to check without reading them)."""
    parts: list = [CACHE_VERSION, str(subject), hand, model_source, bbox_offset]
    for kind in ANNOTATION_KINDS:
        stat = annotation_path(root, subject.split, kind).stat()
        parts.append((kind, stat.st_size, stat.st_mtime_ns))
    masks = tree_path(root, MASK_TREE, subject.split, f"Capture{subject.capture}/{subject.seq_name}")
    stats = [(str(p.relative_to(masks)), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(masks.rglob("*.png"))]
    parts.append(hashlib.sha256(json.dumps(stats).encode()).hexdigest())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _image_checks(root: Path, split: str, record: FrameRecord) -> str | None:
    """The published image filters; returns the reason a frame is unusable, or None."""
    try:
        rgb = read_rgb(tree_path(root, IMAGE_TREE, split, record.file_name))
        mask = read_rgb(tree_path(root, MASK_TREE, split, record.file_name, ".png"), what="mask")[..., 0]
    except FrameFileError as error:
        return error.reason
    if rgb.max() < MIN_IMAGE_MAX:
        return "dark image"
    channels = rgb.astype(np.int16)
    if any(np.abs(channels[..., a] - channels[..., b]).max() <= 1 for a, b in ((0, 1), (1, 2), (0, 2))):
        return "grayscale image"
    inside = mask > 127
    if mask.max() < 255 or inside.sum() < MIN_MASK_PX:
        return "mask smaller than 3000 px"
    if rgb[inside].mean(0).max() < MIN_HAND_INTENSITY:
        return "dark hand"
    return None


@dataclass
class AnnotationCache:
    """The usable frames of one subject (F frames). Frames: model frame M and camera frame in dm, pixels at full
    resolution."""

    keys: np.ndarray  # (F,) '<split>/<file_name>'
    frame_idx: np.ndarray  # (F,) int
    camera: np.ndarray  # (F,) str
    K: np.ndarray  # (F, 3, 3) full-resolution intrinsics
    camrot: np.ndarray  # (F, 3, 3) world-to-camera rotation of each frame's camera (M is oriented as the camera)
    global_orient: np.ndarray  # (F, 3) camera-frame axis-angle
    hand_pose: np.ndarray  # (F, 45) with the model's mean pose
    betas: np.ndarray  # (F, 10)
    Th: np.ndarray  # (F, 3) x_cam = x_M + Th
    joints: np.ndarray  # (F, 21, 3) posed model joints, M
    tpose_joints: np.ndarray  # (F, 21, 3) rest joints with the frame's shape, M
    joints_cam: np.ndarray  # (F, 21, 3) annotated joints, camera frame
    joint_valid: np.ndarray  # (F, 21) bool
    joint_img: np.ndarray  # (F, 21, 2) annotated joints projected, full-resolution pixels
    box_min: np.ndarray  # (F, 3) 3D box of the posed mesh, M, grown by bbox_offset
    box_max: np.ndarray  # (F, 3)
    bbox: np.ndarray  # (F, 4) square 2D box [x, y, w, h], px
    size: np.ndarray  # (F, 2) image width, height
    annotation_order: np.ndarray  # (F,) position of each frame's annotation in data.json (the published frame order)
    fingerprint: str = ""
    model_source: str = ""

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, index) -> AnnotationCache:
        """A cache of a subset of frames (e.g. every skip-th: `cache.select(slice(None, None, skip))`), or of the frames
        in another order (an index array)."""
        fields = {k: v[index] for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return AnnotationCache(**fields, fingerprint=self.fingerprint, model_source=self.model_source)

    def save(self, path: Path) -> Path:
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        arrays.update(fingerprint=np.array(self.fingerprint), model_source=np.array(self.model_source))
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> AnnotationCache:
        with np.load(path, allow_pickle=False) as data:
            values = {k: data[k] for k in data.files}
        return cls(**{k: (str(v) if k in ("fingerprint", "model_source") else v) for k, v in values.items()})


def build_cache(root: str | Path, subject: Subject, *, hand: str = "right", model: str | None = None,
                bbox_offset: float = 0.01, workers: int = 4, progress: bool = True,
                annotations: SplitAnnotations | None = None) -> tuple[AnnotationCache, Counter]:
    """Select, filter and pose the frames of a subject, and save the cache.

    Args:
        bbox_offset: margin added to each side of the posed mesh's 3D box (dm; the published 0.01).
        annotations: the subject's split, already read (to build several subjects' caches from one reading);
            None: read it here.

    Returns:
        The cache and the count of skipped frames by reason.

    Raises:
        NoUsableFrames: no frame passed, with the counts per reason.
    """
    root = Path(root)
    layer = create_model(root, model, hand=hand)
    if annotations is None or (annotations.root, annotations.split) != (root, subject.split):
        annotations = SplitAnnotations(root, subject.split)
    records, rejected = annotations.frames(subject, hand)
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        reasons = list(tqdm(pool.map(lambda r: _image_checks(root, subject.split, r), records), total=len(records),
                            desc=f"checking {subject}", unit="frame", disable=not progress))
    rejected.update(r for r in reasons if r is not None)
    records = [r for r, reason in zip(records, reasons) if reason is None]
    if not records:
        counts = ", ".join(f"{n} {reason}" for reason, n in rejected.most_common()) or "no images at all"
        raise NoUsableFrames(f"subject {subject} ({hand} hand) has no usable frame in {root}: {counts}. Check the "
                             "subject name, the --hand, and that masks exist (python -m segment.masks)")
    posed = pose_hands(layer, records)
    joint_img = np.stack([project(j, r.K) for j, r in zip(posed.joints_cam, records)])
    cache = AnnotationCache(
        keys=np.array([r.key for r in records]), frame_idx=np.array([r.frame_idx for r in records]),
        camera=np.array([r.camera for r in records]), K=np.stack([r.K for r in records]),
        camrot=np.stack([r.camrot for r in records]),
        global_orient=posed.global_orient, hand_pose=posed.hand_pose, betas=posed.betas, Th=posed.Th,
        joints=posed.joints, tpose_joints=posed.tpose_joints, joints_cam=posed.joints_cam,
        joint_valid=np.stack([r.joint_valid for r in records]), joint_img=joint_img,
        box_min=posed.vertices.min(1) - bbox_offset, box_max=posed.vertices.max(1) + bbox_offset,
        bbox=np.stack([square_box(r.bbox, r.width, r.height) for r in records]),
        size=np.array([[r.width, r.height] for r in records]),
        annotation_order=np.array([r.annotation_index for r in records]),
        fingerprint=_fingerprint(root, subject, hand, layer.source, bbox_offset), model_source=layer.source)
    cache.save(cache_path(root, subject, hand))
    return cache, rejected


def _current_cache(root: Path, subject: Subject, hand: str, model: str | None, bbox_offset: float
                   ) -> AnnotationCache | None:
    """The subject's cache when it is there, readable, and its fingerprint matches the current inputs; else None."""
    path = cache_path(root, subject, hand)
    if not path.is_file():
        return None
    source = create_model(root, model, hand=hand).source
    try:
        cache = AnnotationCache.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version: rebuild
    return cache if cache.fingerprint == _fingerprint(root, subject, hand, source, bbox_offset) else None


def load_caches(root: str | Path, subjects: list[Subject | str], *, hand: str = "right", model: str | None = None,
                bbox_offset: float = 0.01, progress: bool = True) -> list[AnnotationCache]:
    """The subjects' caches, in order: each read when its fingerprint matches the current inputs, (re)built
    otherwise. The caches to build are built split by split, each split's annotation files read and indexed once for
    all its subjects (and let go before the next split is read)."""
    root = Path(root)
    subjects = [Subject.parse(s) if isinstance(s, str) else s for s in subjects]
    found = {s: _current_cache(root, s, hand, model, bbox_offset) for s in dict.fromkeys(subjects)}
    stale = [s for s, cache in found.items() if cache is None]
    for split in dict.fromkeys(s.split for s in stale):
        annotations = SplitAnnotations(root, split)
        for subject in [s for s in stale if s.split == split]:
            found[subject] = build_cache(root, subject, hand=hand, model=model, bbox_offset=bbox_offset,
                                         progress=progress, annotations=annotations)[0]
        del annotations
    return [found[s] for s in subjects]


def load_cache(root: str | Path, subject: Subject | str, *, hand: str = "right", model: str | None = None,
               bbox_offset: float = 0.01, progress: bool = True) -> AnnotationCache:
    """The subject's cache: read when its fingerprint matches the current inputs, (re)built otherwise."""
    return load_caches(root, [subject], hand=hand, model=model, bbox_offset=bbox_offset, progress=progress)[0]


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segment.preprocess", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/InterHand/5"))
    parser.add_argument("--subject", action="append", required=True,
                        help="'<split>/Capture<N>/<sequence>[/cam<id>]'; repeat for several")
    parser.add_argument("--hand", choices=("right", "left"), default="right")
    parser.add_argument("--model", help="MANO-format file or folder, or open_hand (default: the capture's model "
                        "for a synthetic capture, else mano/)")
    parser.add_argument("--bbox-offset", type=finite_float, default=0.01, help="3D box margin, dm (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    subjects = [Subject.parse(text) for text in args.subject]
    for split in dict.fromkeys(s.split for s in subjects):  # one split at a time, its files read once
        annotations = SplitAnnotations(args.root, split)
        for subject in [s for s in subjects if s.split == split]:
            cache, rejected = build_cache(args.root, subject, hand=args.hand, model=args.model,
                                          bbox_offset=args.bbox_offset, workers=args.workers,
                                          progress=not args.quiet, annotations=annotations)
            print(f"{subject}: {len(cache)} frames kept, {sum(rejected.values())} skipped" +
                  "".join(f"\n  {n:6d}  {reason}" for reason, n in rejected.most_common()))
            print(f"wrote {cache_path(args.root, subject, args.hand)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
