"""From a video of one hand (or a folder of its frames) to a capture in the InterHand2.6M layout.

    python -m segment.video.prepare VIDEO|IMAGE_DIR --out data/mine [--hand right|left] [--fov DEG | --focal PX]
        [--every N] [--max-frames N]

Steps (each writes under <out>/video/ and is reused by a second run): frames (OpenCV), hand keypoints (mediapipe in
the optional .venv-video), a fit of the hand model to them (segment.video.fit), masks of the frames (the projected
fitted mesh refined by GrabCut) and a refinement of the fit to those masks (--mask-rounds times), then images, masks
(made again from the refined fit) and annotation files written as segment.video.writer describes. Frames without a
usable hand are dropped and counted by reason; <out>/video/prepare.json records the counts, the camera and the time
of each step. Train on the result with `data.root=<out>` (the sequence names are the default config's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import smplx
from smplx.utils.cli import cli_main, finite_float
from smplx.utils.fileio import atomic_write
from segment.annotations import MIN_BOX_PX, box_ok
from segment.interhand import HAND_TYPES
from segment.video.fit import FitSettings, HandFit, fit_hand
from segment.video.frames import VideoError, extract_frames, intrinsics, split_train_eval
from segment.video.keypoints import detect_keypoints
from segment.video.metadata import focal_35mm
from segment.video.silhouette import silhouette_target
from segment.video.writer import VideoFrame, grabcut_masks, write_capture

__all__ = ["PrepareSettings", "prepare_video", "MIN_TRAIN_FRAMES"]

MIN_TRAIN_FRAMES = 5  # fewer training frames cannot make an avatar
MAX_RESIDUAL = 0.08  # a frame whose fitted landmarks miss the keypoints by more than this share of the hand box's
# diagonal (median over the 21) is dropped
MASK_FIT = replace(FitSettings(), steps=300, lr_end=1e-3)  # the refinement of a fit to the frames' masks


@dataclass(frozen=True)
class PrepareSettings:
    """The options of `python -m segment.video.prepare` (its --help says more)."""

    hand: str = "right"  # the hand filmed
    fov: float | None = None  # degrees across the longer side (None and no focal: the source's stated focal length,
    # else PHONE_FOV_DEG)
    focal: float | None = None  # px of the source frames
    every: int = 1  # keep every N-th frame
    max_frames: int | None = None  # stop after this many kept frames
    max_side: int = 1024  # px: frames are scaled down to this longer side
    eval_fraction: float = 0.2  # the end of the video held out for validation
    model: str = "mano"  # MANO file or folder; the open hand without one
    grabcut: bool = True  # refine the projected mesh's masks with GrabCut
    mask_rounds: int = 1  # GrabCut masks from the fit, then the fit refined to them, this many times (needs grabcut)


def _select(keypoints, hand: str, count: int) -> tuple[np.ndarray, Counter, int]:
    """Frames with a hand, the count of frames dropped by reason, and how many of the kept frames mediapipe labelled
    the other side (the video shows one hand, so a minority of such labels are its mistakes: those frames are kept
    and the fit's residual check judges them). Raises VideoError when most labels say the other hand."""
    found = keypoints.found
    dropped: Counter = Counter({"no hand found": int((~found).sum())})
    other = found & (keypoints.handedness != hand)
    if found.sum() and other.sum() > 0.5 * found.sum():
        side = "left" if hand == "right" else "right"
        raise VideoError(f"the video shows a {side} hand ({int(other.sum())} of {int(found.sum())} frames with a "
                         f"hand), but --hand is {hand}; run again with --hand {side}")
    if found.sum() < MIN_TRAIN_FRAMES:
        raise VideoError(f"a hand was found in {int(found.sum())} of {count} frames; at least {MIN_TRAIN_FRAMES} are "
                         "needed. Film the whole hand in view for longer, or lower --every")
    return found, dropped, int(other.sum())


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished subprocesses (the keypoint step), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def _timed(step: str, wall: dict[str, float], cpu: dict[str, float]):
    """Record the wall and CPU seconds (`_cpu_seconds`) of the block as wall[step] and cpu[step]."""
    clock, used = time.perf_counter(), _cpu_seconds()
    yield
    wall[step], cpu[step] = time.perf_counter() - clock, _cpu_seconds() - used


def _project(points: np.ndarray, focal: float, principal: tuple[float, float]) -> np.ndarray:
    """(..., 3) camera-frame points, m -> (..., 2) px."""
    return points[..., :2] / points[..., 2:3] * focal + np.asarray(principal)


def prepare_video(source: str | Path, out: str | Path, settings: PrepareSettings = PrepareSettings(), *,
                  progress: bool = True) -> dict:
    """Run every step (module docstring); returns the summary also written to <out>/video/prepare.json.

    Raises:
        VideoError: unreadable input, too few frames with a hand, the other hand, impossible settings, no mediapipe.
    """
    if settings.hand not in HAND_TYPES:
        raise VideoError(f"--hand {settings.hand!r} is not one of {HAND_TYPES}")
    if settings.mask_rounds < 0:
        raise VideoError(f"--mask-rounds {settings.mask_rounds} must be 0 or more")
    out = Path(out)
    work = out / "video"
    timings, cpu_timings = {}, {}  # wall and CPU seconds of each step
    with _timed("frames", timings, cpu_timings):
        frames, scale, unreadable = extract_frames(source, work / "frames", every=settings.every,
                                                   max_frames=settings.max_frames, max_side=settings.max_side,
                                                   progress=progress)
        if len(frames) < MIN_TRAIN_FRAMES:
            raise VideoError(f"{source} gave {len(frames)} frames (--every {settings.every}); at least "
                             f"{MIN_TRAIN_FRAMES} are needed: give a longer video or a smaller --every")
        width, height = frames[0].width, frames[0].height
        stated = None if settings.fov is not None or settings.focal is not None else focal_35mm(source)
        focal, principal, camera_text = intrinsics(width, height, fov_deg=settings.fov, focal_px=settings.focal,
                                                   scale=scale, stated=stated)

    with _timed("keypoints", timings, cpu_timings):
        keypoints = detect_keypoints([f.path for f in frames], work / "keypoints.npz")
    keep, dropped, relabelled = _select(keypoints, settings.hand, len(frames))
    dropped["unreadable image"] = unreadable
    held_out = split_train_eval(len(frames), settings.eval_fraction)

    with _timed("fit", timings, cpu_timings):
        model = smplx.create(settings.model, is_rhand=settings.hand == "right", seal=True, distal=True)
        index = np.flatnonzero(keep)
        sources = np.array([frames[i].source_index for i in index])

        def fit_keypoints(**options) -> HandFit:
            return fit_hand(model, keypoints.uv[index].astype(float), keypoints.world[index].astype(float),
                            np.ones((len(index), 21)), focal=focal, principal=principal,
                            consecutive=np.diff(sources) == settings.every, progress=progress, **options)

        fit = fit_keypoints(settings=FitSettings())

    with _timed("fit to masks", timings, cpu_timings):
        faces = model.output_faces.numpy()
        rounds = settings.mask_rounds if settings.grabcut else 0  # the projected mesh alone would only confirm it
        for done in range(rounds):
            masks = grabcut_masks(_project(fit.vertices, focal, principal), [frames[i].path for i in index], faces,
                                  width, height, progress=progress, desc=f"masks for the fit ({done + 1}/{rounds})")
            fit = fit_keypoints(settings=MASK_FIT, start=fit, masks=silhouette_target(masks))

    with _timed("write", timings, cpu_timings):
        uv_vertices = _project(fit.vertices, focal, principal)
        kept = []
        for k, i in enumerate(index):
            lo, hi = uv_vertices[k].min(0), uv_vertices[k].max(0)
            box = [lo[0], lo[1], *(hi - lo)]
            if fit.residual_px[k] > MAX_RESIDUAL * np.hypot(*(hi - lo)):
                dropped["fit misses the keypoints"] += 1
            elif not box_ok(box, width, height):
                dropped[f"hand at the image border or under {MIN_BOX_PX} px"] += 1
            else:
                kept.append(VideoFrame(frames[i].source_index, frames[i].path, bool(held_out[i]), fit.global_orient[k],
                                       fit.hand_pose[k], fit.transl[k], fit.joints[k], fit.vertices[k], uv_vertices[k]))
        n_train = sum(not f.held_out for f in kept)
        if n_train < MIN_TRAIN_FRAMES:
            raise VideoError(f"only {n_train} training frames are left after dropping {sum(dropped.values())} "
                             f"({dict(+dropped)}); at least {MIN_TRAIN_FRAMES} are needed")
        previous = work / "fit.npz"
        same_fit = False
        if previous.is_file():  # the fit is deterministic: the same fit as last time keeps last time's masks
            with np.load(previous) as last:
                same_fit = (np.array_equal(last["source_index"], sources) and np.allclose(last["transl"], fit.transl)
                            and "grabcut" in last and bool(last["grabcut"]) == settings.grabcut
                            and np.allclose(last["hand_pose"], fit.hand_pose) and np.allclose(last["betas"], fit.betas))
        data = model.to_model_data()
        hands_mean = np.zeros(45) if data.hands_mean is None else data.hands_mean
        write_capture(out, kept, faces=faces, betas=fit.betas, hands_mean=hands_mean,
                      hand=settings.hand, focal=focal, principal=principal, width=width, height=height,
                      grabcut=settings.grabcut, overwrite_masks=not same_fit, progress=progress)
    arrays = {k: getattr(fit, k) for k in ("global_orient", "hand_pose", "angles", "betas", "transl", "joints", "uv",
                                           "residual_px")}
    atomic_write(previous, lambda f: np.savez(f, source_index=sources, grabcut=settings.grabcut, faces=faces,
                                              vertices=fit.vertices.astype(np.float32), **arrays))
    summary = {"source": str(source), "out": str(out), "frames": len(frames), "kept": len(kept),
               "train": n_train, "held_out": len(kept) - n_train, "dropped": dict(+dropped),
               "labelled_other_hand_kept": relabelled,
               "camera": {"focal_px": focal, "principal_px": list(principal), "width": width, "height": height,
                          "note": camera_text},
               "hand": settings.hand, "model": model.source, "seconds": timings, "cpu_seconds": cpu_timings,
               "load_average": list(os.getloadavg()),
               "residual_px_median": float(np.median(fit.residual_px)),
               "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__}}
    (work / "prepare.json").write_text(json.dumps(summary, indent=1))
    return summary


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m segment.video.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a video file or a folder of images")
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write, e.g. data/mine")
    parser.add_argument("--hand", default="right", choices=HAND_TYPES, help="the hand filmed (default: right)")
    camera = parser.add_mutually_exclusive_group()
    camera.add_argument("--fov", type=finite_float, help="field of view across the longer side, degrees (default: the "
                        "35 mm equivalent focal length the photos' EXIF or an iPhone video states, else 69: a "
                        "phone's main camera)")
    camera.add_argument("--focal", type=finite_float, help="focal length of the source frames, px")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=int, help="stop after this many kept frames")
    parser.add_argument("--max-side", type=int, default=1024, help="scale frames down to this longer side, px")
    parser.add_argument("--eval-fraction", type=finite_float, default=0.2,
                        help="the last part of the video held out for validation (default 0.2)")
    parser.add_argument("--model", default="mano", help="MANO file or folder (else the open hand); default mano/")
    parser.add_argument("--no-grabcut", action="store_true", help="masks are the projected mesh only (and the fit "
                        "is not refined to masks)")
    parser.add_argument("--mask-rounds", type=int, default=1, help="GrabCut masks, then the fit refined to them, "
                        "this many times (default 1; 0: the keypoint fit only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    settings = PrepareSettings(hand=args.hand, fov=args.fov, focal=args.focal, every=args.every,
                               max_frames=args.max_frames, max_side=args.max_side, eval_fraction=args.eval_fraction,
                               model=args.model, grabcut=not args.no_grabcut, mask_rounds=args.mask_rounds)
    return args, settings


@cli_main
def main(argv: list[str] | None = None) -> int:
    args, settings = _parse(argv)
    summary = prepare_video(args.source, args.out, settings, progress=not args.quiet)
    seconds = ", ".join(f"{k} {v:.1f} s ({summary['cpu_seconds'][k]:.1f} s CPU)"
                        for k, v in summary["seconds"].items())
    print(f"camera: {summary['camera']['note']}")
    print(f"{summary['frames']} frames: kept {summary['kept']} ({summary['train']} training, {summary['held_out']} "
          f"held out); dropped {summary['dropped'] or 'none'}; {summary['labelled_other_hand_kept']} kept frames were "
          "labelled the other hand by mediapipe")
    print(f"fit: median reprojection error {summary['residual_px_median']:.1f} px; {seconds}")
    print(f"wrote {summary['out']}/ (annotations/, InterHand2.6M_5fps_batch1/{{images,masks_removeblack}}/, "
          f"video/prepare.json); train with data.root={summary['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
