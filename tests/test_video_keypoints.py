"""The video path with the keypoint extra (mediapipe in .venv-video): detection on a synthetic clip against its true
joints, a frame without a hand, and the whole preparation from a video file to a capture the readers accept.
Skipped outside CI when the extra is not installed (`make video-install`); CI installs it and fails without it."""

import csv
import os

import cv2
import numpy as np
import pytest

from segment.annotations import SplitAnnotations, Subject
from segment.interhand import INTERHAND_TO_MANO, project, tree_path, world_to_camera
from segment.video.correspondence import MEDIAPIPE_TO_MANO
from segment.video.frames import VideoError
from segment.video.keypoints import detect_keypoints, video_python
from segment.video.prepare import PrepareSettings, prepare_video
from segment.video.writer import CAMERA, CAPTURE, EVAL_SEQ, SPLIT, TRAIN_SEQ


@pytest.fixture(scope="module")
def extra():
    try:
        return video_python()
    except VideoError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the keypoint extra is not installed (make video-install)")


def _clip(root):
    """Camera 400262's images of both sequences of the test capture, in video order, and their records."""
    annotations = SplitAnnotations(root, "test")
    records = []
    for seq in ("ROM04_RT_Occlusion", "ROM03_RT_No_Occlusion"):
        records += annotations.frames(Subject("test", 0, seq, "400262"))[0]
    return [tree_path(root, "images", "test", r.file_name) for r in records], records


def test_keypoints_on_a_synthetic_clip(extra, synthetic_capture, tmp_path):
    paths, records = _clip(synthetic_capture)
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((512, 334, 3), 20, np.uint8))
    keypoints = detect_keypoints([blank] + paths, tmp_path / "kp.npz")
    assert not keypoints.found[0] and np.isnan(keypoints.uv[0]).all()  # no hand, no landmarks
    found = keypoints.found[1:]
    assert found.sum() >= 6 and (keypoints.handedness[1:][found] == "right").all()
    true = np.stack([project(world_to_camera(r.world_joints[list(INTERHAND_TO_MANO)], r.camrot, r.campos), r.K)
                     for r in records])[:, list(MEDIAPIPE_TO_MANO)]
    error = np.linalg.norm(keypoints.uv[1:][found] - true[found], axis=-1)
    assert np.median(error) < 15  # px on a ~200 px hand; mediapipe's landmarks are not MANO's joints (~9 px)
    world = keypoints.world[1:][found]
    assert 0.1 < np.linalg.norm(world[:, 12] - world[:, 0], axis=-1).mean() < 0.3  # wrist to middle tip, metres


def test_prepare_a_video_file(extra, synthetic_capture, tmp_path):
    paths, _ = _clip(synthetic_capture)
    video = tmp_path / "hand.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (334, 512))
    for path in paths:  # 7 frames with the hand
        writer.write(cv2.imread(str(path)))
    for shift in (200, 240):  # the hand leaving the frame on the right
        writer.write(cv2.warpAffine(cv2.imread(str(paths[-1])), np.float32([[1, 0, shift], [0, 1, 0]]), (334, 512)))
    writer.write(np.full((512, 334, 3), 20, np.uint8))  # and a frame without a hand
    writer.release()
    out = tmp_path / "mine"
    summary = prepare_video(video, out, PrepareSettings(focal=1200.0, eval_fraction=0.2), progress=False)
    assert summary["frames"] == 10 and summary["dropped"]["no hand found"] >= 1
    assert summary["kept"] <= 7 and summary["kept"] + sum(summary["dropped"].values()) == 10  # every frame counted
    annotations = SplitAnnotations(out, SPLIT)
    train, rejected = annotations.frames(Subject(SPLIT, CAPTURE, TRAIN_SEQ, CAMERA))
    held, _ = annotations.frames(Subject(SPLIT, CAPTURE, EVAL_SEQ, CAMERA))
    assert len(train) == summary["train"] >= 5 and len(held) == summary["held_out"] and not rejected
    assert all(tree_path(out, "masks_removeblack", SPLIT, r.file_name, ".png").is_file() for r in train + held)
    frames = tmp_path / "mirrored"  # a mirrored right hand is a left hand
    frames.mkdir()
    for k, path in enumerate(paths):
        cv2.imwrite(str(frames / f"{k}.jpg"), cv2.imread(str(path))[:, ::-1])
    with pytest.raises(VideoError, match="--hand left"):
        prepare_video(frames, tmp_path / "other", PrepareSettings(focal=1200.0), progress=False)
    left = prepare_video(frames, tmp_path / "left", PrepareSettings(hand="left", focal=1200.0), progress=False)
    records, rejected = SplitAnnotations(tmp_path / "left", SPLIT).frames(Subject(SPLIT, CAPTURE, TRAIN_SEQ, CAMERA),
                                                                          "left")
    assert len(records) == left["train"] >= 5 and not rejected and left["model"].endswith("open_hand")


def test_evaluate_scores_a_synthetic_capture_as_a_video(extra, synthetic_capture, tmp_path):
    from segment.video.evaluate import evaluate_on_synthetic
    result = evaluate_on_synthetic(synthetic_capture, tmp_path / "eval", progress=False)
    assert result["frames"] == 7 and result["detection_rate"] >= 6 / 7
    # loose bounds for 7 frames (measured: 8.4 px, PA-MPJPE 12.5 mm, IoU 0.98); a wrong frame order,
    # camera or unit would be off by far more
    assert result["fit_joints_px_median_vs_truth"] < 15 and result["pa_mpjpe_mm"] < 20
    assert result["mask_iou_mean"] > 0.9
    with open(tmp_path / "eval" / "video" / "fit_errors.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["kept"] == sum(g["frames"] for g in result["groups"].values())
    per_frame = np.array([float(r["joints_px_mean"]) for r in rows])  # the tail read back from the per-frame file
    assert result["tail"]["tail_frames"] == int((per_frame > 12).sum())
    assert result["tail"]["mean"] == pytest.approx(per_frame.mean(), abs=0.02)
    assert set(result["cpu_seconds"]) == set(result["seconds"]) and result["cpu_seconds"]["fit"] > 0


def test_evaluate_on_a_wood_background(extra, synthetic_capture, tmp_path):
    from segment.video.evaluate import background_image, evaluate_on_synthetic
    result = evaluate_on_synthetic(synthetic_capture, tmp_path / "eval", background="wood", progress=False)
    assert result["frames"] == 7 and result["mask_iou_mean"] > 0.85  # loose for 7 frames on a skin-coloured table
    paths, records = _clip(synthetic_capture)
    frame = cv2.imread(str(tmp_path / "eval" / "video" / "source" / "00000.jpg")).astype(float)
    mask = cv2.imread(str(tree_path(synthetic_capture, "masks_removeblack", "test", records[0].file_name, ".png")),
                      cv2.IMREAD_GRAYSCALE) > 0
    kernel = np.ones((5, 5), np.uint8)
    hand = cv2.erode(mask.astype(np.uint8), kernel) > 0
    away = cv2.dilate(mask.astype(np.uint8), kernel) == 0
    assert np.abs(frame[hand] - cv2.imread(str(paths[0])).astype(float)[hand]).mean() < 3  # JPEG's error
    backdrop = background_image("wood", frame.shape[1], frame.shape[0])
    assert np.abs(frame[away] - backdrop[away]).mean() < 4
    with pytest.raises(VideoError, match="prepared with --background wood, not none"):
        evaluate_on_synthetic(synthetic_capture, tmp_path / "eval", progress=False)
