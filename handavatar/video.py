"""Image sequences to files: RGBA PNG frames, an MP4 (OpenCV's mp4v encoder, no ffmpeg needed) and a looping GIF."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from smplx.utils.fileio import atomic_write, to_uint8, write_png

__all__ = ["to_uint8", "write_png", "write_mp4", "write_gif"]


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write (H, W, 3) uint8 RGB frames (all the same size) as an MP4 (mp4v), atomically.

    Raises:
        RuntimeError: OpenCV cannot open an mp4v writer on this system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # OpenCV picks the container by suffix
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    try:
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open an mp4v video writer for {path}; the PNG frames are written")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
        writer.release()
        os.replace(tmp, path)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return path


def write_gif(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """Write (H, W, 3) uint8 RGB frames as a looping GIF, atomically. Pillow merges a frame identical to the one
    before it into that frame (a longer display time), so a still sequence gives fewer GIF frames."""
    images = [Image.fromarray(frame) for frame in frames]
    duration = max(int(round(1000 / fps)), 1)
    return atomic_write(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                       duration=duration, loop=0))
