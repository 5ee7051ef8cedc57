"""Run the keypoint step (segment.video.mediapipe_keypoints) in the optional environment, and read its file.

The step needs mediapipe <= 0.10.21, whose pins (numpy < 2, ...) clash with the core install, so it runs as a
subprocess of `.venv-video/bin/python` (made by `make video-install` from requirements-video.txt), or of the
interpreter named by the HANDAVATAR_VIDEO_PYTHON environment variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segment.video.frames import VideoError

__all__ = ["Keypoints", "video_python", "detect_keypoints", "load_keypoints", "INSTALL_HINT"]

INSTALL_HINT = ("install the optional keypoint extra with `make video-install` (creates .venv-video from "
                "requirements-video.txt: mediapipe 0.10.21 and numpy 1.26, apart from the core .venv), or point "
                "HANDAVATAR_VIDEO_PYTHON at a Python that has mediapipe<=0.10.21")
_REPO = Path(__file__).resolve().parents[2]


@dataclass
class Keypoints:
    found: np.ndarray  # (N,) bool
    uv: np.ndarray  # (N, 21, 2) px, mediapipe order; NaN where not found
    world: np.ndarray  # (N, 21, 3) m, camera axes, origin near the hand's centre
    handedness: np.ndarray  # (N,) 'right' | 'left' | ''
    handedness_score: np.ndarray  # (N,)


def video_python() -> Path:
    """The interpreter of the keypoint extra; raises VideoError with INSTALL_HINT when there is none."""
    configured = os.environ.get("HANDAVATAR_VIDEO_PYTHON")
    path = Path(configured) if configured else _REPO / ".venv-video" / "bin" / "python"
    if not path.is_file():
        raise VideoError(f"hand keypoints need mediapipe, and {path} does not exist: {INSTALL_HINT}")
    probe = subprocess.run([str(path), "-c", "import mediapipe.python.solutions.hands"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise VideoError(f"{path} cannot import mediapipe's hands ({last}): {INSTALL_HINT}")
    return path


def detect_keypoints(images: list[Path], out: Path) -> Keypoints:
    """Keypoints of `images` (video order) written to `out` (.npz) by the optional environment; an existing `out`
    made for the same image list is read instead."""
    out = Path(out).resolve()  # the subprocess runs in the repository root
    listing = out.with_suffix(".txt")
    wanted = "".join(f"{Path(p).resolve()}\n" for p in images)
    if out.is_file() and listing.is_file() and listing.read_text() == wanted:
        return load_keypoints(out, len(images))
    python = video_python()
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(wanted)
    env = dict(os.environ, PYTHONPATH=str(_REPO), GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
    command = [str(python), "-m", "segment.video.mediapipe_keypoints", "--images", str(listing), "--out", str(out)]
    lines = []
    with subprocess.Popen(command, cwd=_REPO, env=env, stderr=subprocess.PIPE, text=True) as step:
        for line in step.stderr:  # progress lines pass through; mediapipe's own logging does not
            lines.append(line.rstrip())
            if line.startswith("keypoints:"):
                print(line.rstrip(), file=sys.stderr, flush=True)
    if step.returncode != 0:
        errors = [line for line in lines if line.startswith("error:")] or lines
        raise VideoError(f"the keypoint step failed ({' '.join(command[:3])}): "
                         f"{errors[-1] if errors else 'exit code ' + str(step.returncode)}")
    return load_keypoints(out, len(images))


def load_keypoints(path: Path, count: int) -> Keypoints:
    """Read a keypoint file of `count` frames (format: segment.video.mediapipe_keypoints)."""
    try:
        with np.load(path) as data:
            keypoints = Keypoints(**{name: data[name] for name in Keypoints.__dataclass_fields__})
    except (OSError, KeyError, ValueError) as error:
        raise VideoError(f"{path} is not a keypoint file ({error}); delete it and run again") from error
    if len(keypoints.found) != count:
        raise VideoError(f"{path} holds {len(keypoints.found)} frames, expected {count}; delete it and run again")
    return keypoints
