"""Measure the video path on a synthetic capture used as a plain video: its annotations are withheld from the fit
and only used to score it.

    python -m segment.video.evaluate --truth data/synthetic --out out/video_eval [--camera 400262]
        [--background none|clutter|wood]

Writes the chosen camera's images of both sequences (training, then held-out) as a folder of frames (with
--background, the hand composited by its true mask onto a cluttered desk or a skin-coloured wood grain), prepares it
with the capture's true focal length and the held-out part set to the capture's held-out sequence
(python -m segment.video.prepare), then prints and writes
<out>/video/evaluation.json: the keypoint detection rate, the 2D error of the fitted joints against the true
projected joints (and against the keypoints), MPJPE and PA-MPJPE in mm against the true joints, the IoU of the
written masks and of the projected fitted mesh against the true masks, the distance of each mediapipe landmark to its
model joint, and the time of each step; the fit's figures also for three groups of frames: `tune` (every 3rd training
frame, where the fit's weights were chosen), `train_rest` (the other training frames) and `held_out`; where the 2D
error has its tail (metrics.error_tail: frames whose mean joint error exceeds 12 px, by group, and each landmark's mean
and 95th percentile); and <out>/video/fit_errors.csv, one row per fitted frame (its 2D error, PA-MPJPE and mesh IoU),
to set beside an avatar's per-frame validation metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from smplx.utils.cli import cli_main
from smplx.utils.fileio import atomic_write, write_csv
from segment.annotations import SplitAnnotations, Subject
from segment.interhand import INTERHAND_TO_MANO, MASK_TREE, project, tree_path, world_to_camera
from segment.masks import fill_triangles
from segment.synthetic import SEQUENCES, read_manifest
from segment.video.correspondence import MEDIAPIPE_NAMES, MEDIAPIPE_TO_MANO
from segment.video.frames import VideoError
from segment.video.keypoints import load_keypoints
from segment.video.metrics import error_tail, mask_iou, mpjpe, pa_mpjpe, pixel_error
from segment.video.prepare import PrepareSettings, prepare_video
from segment.video.writer import CAMERA, CAPTURE, EVAL_SEQ, SPLIT, TRAIN_SEQ

__all__ = ["evaluate_on_synthetic", "background_image", "TUNE_EVERY", "BACKGROUNDS"]

TUNE_EVERY = 3  # the fit's weights were chosen on every 3rd training frame
BACKGROUNDS = ("none", "clutter", "wood")


def _fit_figures(joints_mm: np.ndarray, true_cam: np.ndarray, fit_px: np.ndarray, mesh_iou: np.ndarray) -> dict:
    """The fit's errors over F frames: joints_mm, true_cam (F, 21, 3) mm; fit_px (F, 21) px; mesh_iou (F,)."""
    return {"frames": len(joints_mm), "joints_px_median_vs_truth": float(np.median(fit_px)),
            "mpjpe_mm": float(mpjpe(joints_mm, true_cam).mean()),
            "pa_mpjpe_mm": float(pa_mpjpe(joints_mm, true_cam).mean()),
            "mesh_iou_mean": float(mesh_iou.mean()),
            "tail": {k: v for k, v in error_tail(fit_px, MEDIAPIPE_NAMES).items() if k != "by_joint"}}


def _write_frame_errors(path: Path, rows: np.ndarray, group: np.ndarray, fit_px: np.ndarray, pa_mm: np.ndarray,
                        mesh_iou: np.ndarray) -> None:
    """One CSV row per fitted frame: rows (F,) source index, group (F,) name, fit_px (F, 21), pa_mm (F,),
    mesh_iou (F,)."""
    write_csv(path, ["source_index", "group", "joints_px_mean", "joints_px_median", "joints_px_max", "worst_landmark",
                     "pa_mpjpe_mm", "mesh_iou"],
              [[int(i), g, f"{e.mean():.2f}", f"{np.median(e):.2f}", f"{e.max():.2f}", MEDIAPIPE_NAMES[int(e.argmax())],
                f"{pa:.2f}", f"{iou:.4f}"] for i, g, e, pa, iou in zip(rows, group, fit_px, pa_mm, mesh_iou)])


def _truth_records(truth: Path, camera: str | None):
    """The true frames of both sequences of one camera, in video order."""
    manifest = read_manifest(truth)
    split, capture = manifest["settings"]["split"], manifest["settings"]["capture"]
    camera = camera or manifest["cameras"][0]
    annotations = SplitAnnotations(truth, split)
    records = []
    for seq_name, _ in SEQUENCES:
        found, _ = annotations.frames(Subject(split, capture, seq_name, camera), manifest["settings"]["hand"])
        records += found
    if not records:
        raise VideoError(f"{truth} has no frames of camera {camera}")
    return records, split, manifest["settings"]["hand"]


def background_image(kind: str, width: int, height: int, *, seed: int = 7) -> np.ndarray:
    """(height, width, 3) float32 BGR in [0, 255]: a backdrop for the hand, the same for every frame.

    'clutter': a desk of 60 shapes of many colours (about a third skin-toned) and thin lines, slightly blurred;
    'wood': a warm wood grain close to skin colour, the hard case for GrabCut's colour model. Both with 2 % noise.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    if kind == "clutter":
        image = np.stack([0.35 + 0.2 * x, 0.3 + 0.1 * y, 0.25 + 0.15 * (1 - x)], -1).astype(np.float32)
        for _ in range(60):
            skin = rng.random() >= 0.7
            colour = tuple(float(c) for c in (np.array([0.55, 0.65, 0.85]) * rng.uniform(0.7, 1.1) if skin
                                              else rng.uniform(0, 1, 3)))
            corner = rng.integers(0, [width, height], 2)
            if rng.random() < 0.5:
                cv2.rectangle(image, tuple(map(int, corner)), tuple(map(int, corner + rng.integers(10, 120, 2))),
                              colour, -1)
            else:
                cv2.ellipse(image, tuple(map(int, corner)), tuple(map(int, rng.integers(5, 60, 2))),
                            float(rng.uniform(0, 180)), 0, 360, colour, -1)
            if rng.random() < 0.3:
                cv2.line(image, tuple(map(int, rng.integers(0, [width, height], 2))),
                         tuple(map(int, rng.integers(0, [width, height], 2))), colour, int(rng.integers(1, 4)))
        image = cv2.GaussianBlur(image, (0, 0), 1.5)
    elif kind == "wood":
        grain = np.sin(40 * (y + 0.05 * np.sin(9 * x))) * 0.5 + 0.5
        image = np.stack([0.35 + 0.1 * grain, 0.5 + 0.12 * grain, 0.68 + 0.1 * grain], -1)
    else:
        raise VideoError(f"--background {kind!r} is not one of {BACKGROUNDS}")
    return (255 * np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)).astype(np.float32)


def evaluate_on_synthetic(truth: str | Path, out: str | Path, *, camera: str | None = None, grabcut: bool = True,
                          mask_rounds: int = 1, background: str = "none", progress: bool = True) -> dict:
    """See the module docstring; returns the numbers written to <out>/video/evaluation.json."""
    truth, out = Path(truth), Path(out)
    records, split, hand = _truth_records(truth, camera)
    frames_dir = out / "video" / "source"
    frames_dir.mkdir(parents=True, exist_ok=True)
    marker = frames_dir / "background.txt"
    if marker.is_file() and marker.read_text().strip() != background:
        raise VideoError(f"{out} was prepared with --background {marker.read_text().strip()}, not {background}: its "
                         "frames and keypoints would be reused; give another --out")
    marker.write_text(background + "\n")
    backdrop = None if background == "none" else background_image(background, records[0].width, records[0].height)
    for k, r in enumerate(records):
        target, image = frames_dir / f"{k:05d}.jpg", tree_path(truth, "images", split, r.file_name)
        if target.exists() or target.is_symlink():
            continue
        if backdrop is None:
            target.symlink_to(image.resolve())
            continue
        mask = cv2.imread(str(tree_path(truth, MASK_TREE, split, r.file_name, ".png")), cv2.IMREAD_GRAYSCALE) > 0
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)[..., None]  # the cut softened a little
        composite = alpha * cv2.imread(str(image), cv2.IMREAD_COLOR) + (1 - alpha) * backdrop
        encoded = cv2.imencode(".jpg", np.clip(composite, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        atomic_write(target, lambda f, data=encoded: f.write(data.tobytes()))
    focal = float(records[0].K[0, 0])
    held_out = sum(r.seq_name == SEQUENCES[1][0] for r in records) / len(records)  # the truth's held-out sequence
    summary = prepare_video(frames_dir, out, PrepareSettings(hand=hand, focal=focal, grabcut=grabcut,
                                                             eval_fraction=held_out, mask_rounds=mask_rounds),
                            progress=progress)

    keypoints = load_keypoints(out / "video" / "keypoints.npz", len(records))
    with np.load(out / "video" / "fit.npz") as stored:
        fitted = dict(stored)
    order = list(MEDIAPIPE_TO_MANO)
    true_cam = np.stack([world_to_camera(r.world_joints[list(INTERHAND_TO_MANO)], r.camrot, r.campos)
                         for r in records])  # (N, 21, 3) mm, MANO order
    true_uv = np.stack([project(j, r.K) for j, r in zip(true_cam, records)])[:, order]
    found = keypoints.found
    landmark_px = pixel_error(keypoints.uv[found], true_uv[found])  # (F, 21)
    rows = fitted["source_index"]
    fit_uv = np.stack([project(1000 * fitted["joints"][k], records[i].K) for k, i in enumerate(rows)])[:, order]
    fit_px = pixel_error(fit_uv, true_uv[rows])
    joints_mm = 1000 * fitted["joints"]
    faces = fitted["faces"]
    width, height = summary["camera"]["width"], summary["camera"]["height"]
    mesh_iou = []
    for k, i in enumerate(rows):
        true = cv2.imread(str(tree_path(truth, MASK_TREE, split, records[i].file_name, ".png")), cv2.IMREAD_GRAYSCALE)
        mesh_iou.append(mask_iou(fill_triangles(project(1000 * fitted["vertices"][k], records[i].K), faces, width,
                                                height) > 0, true > 0))
    mesh_iou = np.array(mesh_iou)
    in_train = np.array([records[i].seq_name != SEQUENCES[1][0] for i in rows])
    groups = {"tune": in_train & (rows % TUNE_EVERY == 0), "train_rest": in_train & (rows % TUNE_EVERY != 0),
              "held_out": ~in_train}
    group_names = np.select([groups["tune"], groups["train_rest"]], ["tune", "train_rest"], "held_out")
    _write_frame_errors(out / "video" / "fit_errors.csv", rows, group_names, fit_px,
                        pa_mpjpe(joints_mm, true_cam[rows]), mesh_iou)

    written = SplitAnnotations(out, SPLIT)
    ious = []
    for seq in (TRAIN_SEQ, EVAL_SEQ):
        for r in written.frames(Subject(SPLIT, CAPTURE, seq, CAMERA), hand)[0]:
            ours = cv2.imread(str(tree_path(out, MASK_TREE, SPLIT, r.file_name, ".png")), cv2.IMREAD_GRAYSCALE)
            true = cv2.imread(str(tree_path(truth, MASK_TREE, split, records[r.frame_idx].file_name, ".png")),
                              cv2.IMREAD_GRAYSCALE)
            ious.append(mask_iou(ours > 0, true > 0))
    result = {
        "frames": len(records), "detection_rate": float(found.mean()),
        "labelled_other_hand": int((found & (keypoints.handedness != hand)).sum()), "kept": summary["kept"],
        "dropped": summary["dropped"],
        "keypoint_px_median": float(np.median(landmark_px)),
        "keypoint_px_median_by_landmark": dict(zip(MEDIAPIPE_NAMES, np.median(landmark_px, 0).round(1).tolist())),
        "fit_joints_px_median_vs_truth": float(np.median(fit_px)),
        "fit_landmarks_px_median_vs_keypoints": summary["residual_px_median"],
        "mpjpe_mm": float(mpjpe(joints_mm, true_cam[rows]).mean()),
        "pa_mpjpe_mm": float(pa_mpjpe(joints_mm, true_cam[rows]).mean()),
        "mask_iou_mean": float(np.mean(ious)), "mask_iou_median": float(np.median(ious)),
        "mesh_iou_mean": float(mesh_iou.mean()), "mesh_iou_median": float(np.median(mesh_iou)),
        "tail": error_tail(fit_px, MEDIAPIPE_NAMES),
        "groups": {name: _fit_figures(joints_mm[chosen], true_cam[rows][chosen], fit_px[chosen], mesh_iou[chosen])
                   for name, chosen in groups.items()},
        "seconds": summary["seconds"], "cpu_seconds": summary["cpu_seconds"], "load_average": summary["load_average"],
    }
    (out / "video" / "evaluation.json").write_text(json.dumps(result, indent=1))
    return result


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segment.video.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=Path("data/synthetic"), help="a synthetic capture")
    parser.add_argument("--out", type=Path, required=True, help="where the prepared capture goes")
    parser.add_argument("--camera", help="camera id of the capture to use (default: its first)")
    parser.add_argument("--no-grabcut", action="store_true", help="masks are the projected mesh only")
    parser.add_argument("--mask-rounds", type=int, default=1, help="GrabCut masks, then the fit refined to them, "
                        "this many times (default 1)")
    parser.add_argument("--background", choices=BACKGROUNDS, default="none", help="put the hand on a cluttered desk "
                        "or a skin-coloured wood grain (composited with the true masks) instead of the capture's dark "
                        "background (default none)")
    args = parser.parse_args(argv)
    result = evaluate_on_synthetic(args.truth, args.out, camera=args.camera, grabcut=not args.no_grabcut,
                                   mask_rounds=args.mask_rounds, background=args.background)
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}/video/evaluation.json and {args.out}/video/fit_errors.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
