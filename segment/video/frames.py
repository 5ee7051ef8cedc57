"""Frames of a video or an image folder, and the pinhole intrinsics to use for them.

A phone's main camera sees about 69 degrees across the longer image side (26 mm equivalent focal length); that is the
default field of view when neither --fov nor --focal is given and the source states no focal length
(segment.video.metadata: the EXIF 35 mm equivalent of photos, the QuickTime key of iPhone videos). Frames are written
as JPEG files to a work folder as they are read (every N-th, at most a given count, scaled down so the longer side is
at most `max_side` pixels), so a long video never sits in memory and a second run reuses what the first wrote.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from smplx.utils.cli import UserError
from smplx.utils.fileio import atomic_write

__all__ = ["VideoError", "FrameFile", "PHONE_FOV_DEG", "FILM_DIAGONAL_MM", "IMAGE_SUFFIXES", "image_files",
           "extract_frames", "focal_px_from_35mm", "intrinsics", "split_train_eval"]

PHONE_FOV_DEG = 69.0  # across the longer side: 26 mm equivalent, a phone's main camera
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)  # a 35 mm equivalent focal length is measured across this diagonal
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoError(UserError):
    """The input cannot be turned into a capture; the message says what was wrong and what to do."""


@dataclass(frozen=True)
class FrameFile:
    source_index: int  # frame number in the video, or position in the sorted image folder
    path: Path  # the written JPEG
    width: int  # pixels, after scaling
    height: int


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: Path) -> list[Path]:
    """The image files of a folder in frame order (numbers in names compared as numbers)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)


def _source_frames(source: Path):
    """(index, BGR image or None for an undecodable image file) in order."""
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise VideoError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a video file or a folder "
                             "of frames")
        for index, path in enumerate(files):
            yield index, cv2.imread(str(path), cv2.IMREAD_COLOR)
        return
    if not source.is_file():
        raise VideoError(f"{source} does not exist; give a video file (.mp4, .mov, ...) or a folder of images")
    capture = cv2.VideoCapture(str(source))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise VideoError(f"{source} cannot be read as a video (OpenCV found no frame in it); convert it, e.g. "
                             f"`ffmpeg -i {source.name} -c:v libx264 video.mp4`, or give a folder of images")
        index = 0
        while ok:
            yield index, frame
            ok, frame = capture.read()
            index += 1
    finally:
        capture.release()


def extract_frames(source: str | Path, folder: str | Path, *, every: int = 1, max_frames: int | None = None,
                   max_side: int = 1024, progress: bool = True) -> tuple[list[FrameFile], float, int]:
    """Write every `every`-th frame of `source` (at most `max_frames`) to folder/frame<index>.jpg.

    Returns:
        The frames written (or found from an earlier run), the scale applied to the source's pixels (<= 1), and the
        number of source images that could not be decoded (image folders only; a broken video stops where it breaks).

    Raises:
        VideoError: a missing or unreadable source, or frames of different sizes.
    """
    if every < 1 or (max_frames is not None and max_frames < 1) or max_side < 16:
        raise VideoError("--every and --max-frames must be at least 1, --max-side at least 16")
    source, folder = Path(source), Path(folder)
    out, scale, size, unreadable, bar = [], 1.0, None, 0, None
    for index, bgr in _source_frames(source):
        if bar is None:  # after the source opened: an unreadable one fails before any output
            bar = tqdm(desc="frames", unit="frame", total=max_frames, disable=not progress)
            folder.mkdir(parents=True, exist_ok=True)
        if index % every:
            continue
        if bgr is None:
            unreadable += 1
            continue
        if size is None:
            size = bgr.shape[:2]
            scale = min(1.0, max_side / max(size))
        elif bgr.shape[:2] != size:
            raise VideoError(f"frame {index} of {source} is {bgr.shape[1]}x{bgr.shape[0]} px but the first was "
                             f"{size[1]}x{size[0]}; all frames must have one size (one camera)")
        height, width = round(size[0] * scale), round(size[1] * scale)
        path = folder / f"frame{index:06d}.jpg"
        if not path.is_file():
            image = bgr if scale == 1.0 else cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
            encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            atomic_write(path, lambda f, data=encoded: f.write(data.tobytes()))
        out.append(FrameFile(index, path, width, height))
        bar.update()
        if max_frames is not None and len(out) >= max_frames:
            break
    if bar is not None:
        bar.close()
    return out, scale, unreadable


def focal_px_from_35mm(focal_mm: float, width: int, height: int) -> float:
    """Focal length in pixels of a `width` x `height` frame from a 35 mm equivalent focal length: the one giving the
    same field of view across the frame's diagonal as `focal_mm` across the 36 x 24 mm frame's."""
    return focal_mm / FILM_DIAGONAL_MM * math.hypot(width, height)


def intrinsics(width: int, height: int, *, fov_deg: float | None = None, focal_px: float | None = None,
               scale: float = 1.0, stated: tuple[float, str] | None = None) -> tuple[float, tuple[float, float], str]:
    """Focal length and principal point of the written frames, and a sentence saying where they came from.

    Args:
        width, height: written frame size, px.
        fov_deg: field of view across the longer side, degrees.
        focal_px: focal length in pixels of the *source* frames (before scaling); wins over fov_deg.
        scale: source-to-written pixel scale from `extract_frames`.
        stated: the source's 35 mm equivalent focal length and where it was read (segment.video.metadata), used
            when neither focal_px nor fov_deg is given; without any of them, PHONE_FOV_DEG.

    Returns:
        (focal px, (cx, cy) px, description); the principal point is the image centre (OpenCV convention).
    """
    if focal_px is not None and fov_deg is not None:
        raise VideoError("give --focal or --fov, not both")
    principal = ((width - 1) / 2, (height - 1) / 2)
    if focal_px is not None:
        if focal_px <= 0:
            raise VideoError(f"--focal {focal_px} must be positive (pixels)")
        return focal_px * scale, principal, f"focal {focal_px:g} px (--focal) x scale {scale:.4g}"
    if fov_deg is None and stated is not None:
        focal = focal_px_from_35mm(stated[0], width, height)
        return focal, principal, (f"focal {focal:.1f} px from a {stated[0]:g} mm equivalent focal length ({stated[1]}; "
                                  "pass --fov or --focal to override)")
    fov = PHONE_FOV_DEG if fov_deg is None else fov_deg
    if not 1 <= fov <= 170:
        raise VideoError(f"--fov {fov} must be a field of view in degrees, between 1 and 170")
    focal = (max(width, height) / 2) / math.tan(math.radians(fov) / 2)
    origin = "--fov" if fov_deg is not None else ("default: a phone's main camera; the source states no focal length; "
                                                  "pass --fov or --focal if known")
    return focal, principal, (f"focal {focal:.1f} px from a {fov:g} degree field of view across the longer side "
                              f"({origin})")


def split_train_eval(count: int, eval_fraction: float) -> np.ndarray:
    """(count,) bool, True for held-out frames: the last `eval_fraction` of the video (at least one frame when the
    fraction is positive), so validation poses come after every training pose."""
    if not 0 <= eval_fraction < 1:
        raise VideoError(f"--eval-fraction {eval_fraction} must lie in [0, 1)")
    held = 0 if eval_fraction == 0 else max(1, round(count * eval_fraction))
    return np.arange(count) >= count - held
