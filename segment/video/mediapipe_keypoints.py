"""Hand keypoints of a frame sequence with mediapipe's legacy hands solution, offline (its models are in the wheel).

Runs in the optional environment .venv-video (`make video-install`), never in the core one: it imports only
mediapipe, numpy and OpenCV, reads images and writes one .npz file, so the core install keeps numpy 2.

    .venv-video/bin/python -m segment.video.mediapipe_keypoints --images frames.txt --out keypoints.npz

`frames.txt` lists image files, one a line, in video order; mediapipe runs in tracking mode over them (a hand found
in one frame is tracked into the next, which finds hands that single-image detection misses).

Output (.npz), N frames, landmarks in mediapipe order (0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index MCP, PIP,
DIP, tip; 9-12 middle; 13-16 ring; 17-20 pinky):
    found: (N,) bool, a hand was returned.
    uv: (N, 21, 2) float32 px, OpenCV convention (integers at pixel centres); NaN where not found.
    world: (N, 21, 3) float32 m, mediapipe's metric world landmarks (origin near the hand's centre); NaN if not found.
    handedness: (N,) '<U5' 'right' | 'left' | '' -- the hand as seen in an unmirrored image (mediapipe labels a
        mirrored, selfie image; we swap its label).
    handedness_score: (N,) float32 in [0, 1].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

__all__ = ["detect", "KeypointInputError"]

NUM_LANDMARKS = 21
_SWAP = {"Left": "right", "Right": "left"}  # mediapipe assumes a mirrored (front camera) image


class KeypointInputError(Exception):
    """An input file cannot be read. This environment cannot import smplx.utils.cli (no torch), so main() keeps the same
    contract by hand: one `error: ...` line and exit status 2 for this error only; anything else is a bug."""


def detect(paths: list[Path], *, min_confidence: float = 0.5, progress: bool = True) -> dict[str, np.ndarray]:
    """Run mediapipe hands in tracking mode over images; returns the arrays of the module docstring."""
    import mediapipe as mp

    n = len(paths)
    out = {"found": np.zeros(n, dtype=bool), "uv": np.full((n, NUM_LANDMARKS, 2), np.nan, np.float32),
           "world": np.full((n, NUM_LANDMARKS, 3), np.nan, np.float32), "handedness": np.full(n, "", dtype="<U5"),
           "handedness_score": np.zeros(n, np.float32)}
    with mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=1, model_complexity=1,
                                  min_detection_confidence=min_confidence,
                                  min_tracking_confidence=min_confidence) as hands:
        for i, path in enumerate(paths):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise KeypointInputError(f"{path} cannot be read as an image")
            height, width = bgr.shape[:2]
            result = hands.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if result.multi_hand_landmarks:
                image = result.multi_hand_landmarks[0].landmark
                world = result.multi_hand_world_landmarks[0].landmark
                label = result.multi_handedness[0].classification[0]
                out["found"][i] = True
                # normalised coordinates span the image edges: pixel centre convention subtracts half a pixel
                out["uv"][i] = [[p.x * width - 0.5, p.y * height - 0.5] for p in image]
                out["world"][i] = [[p.x, p.y, p.z] for p in world]
                out["handedness"][i] = _SWAP.get(label.label, "")
                out["handedness_score"][i] = label.score
            if progress and ((i + 1) % 25 == 0 or i + 1 == n):
                print(f"keypoints: {i + 1}/{n} frames, hand in {int(out['found'][:i + 1].sum())}", file=sys.stderr,
                      flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segment.video.mediapipe_keypoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="text file: image paths, one a line")
    parser.add_argument("--out", type=Path, required=True, help="keypoint file to write (.npz)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="detection and tracking (default 0.5)")
    args = parser.parse_args(argv)
    try:
        if not args.images.is_file():
            raise KeypointInputError(f"--images {args.images} does not exist")
        paths = [Path(line) for line in args.images.read_text().splitlines() if line.strip()]
        result = detect(paths, min_confidence=args.min_confidence)
    except KeypointInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    partial = args.out.with_name(args.out.name + ".partial.npz")
    np.savez(partial, **result)
    partial.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
