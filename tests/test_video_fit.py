"""The video path without mediapipe: frames, intrinsics, the anatomical-angle twin, the hand fit against a synthetic
capture's true joints, the metrics, and the InterHand2.6M-layout writer read back by the real readers."""

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

import smplx
from smplx.hand_pose import JOINT_LIMITS, angles_to_pose
from segment.annotations import SplitAnnotations, Subject
from segment.interhand import INTERHAND_TO_MANO, project, tree_path, world_to_camera
from segment.posing import MODEL_OPTIONS, pose_hands
from segment.video.correspondence import MEDIAPIPE_TO_MANO
from segment.video.fit import FitSettings, angles_to_pose_torch, fit_hand
from segment.video.frames import PHONE_FOV_DEG, VideoError, extract_frames, intrinsics, split_train_eval
from segment.video.keypoints import Keypoints
from segment.video.metrics import error_tail, mpjpe, pa_mpjpe, procrustes_align
from segment.video.prepare import _select, prepare_video
from segment.video.writer import CAMERA, CAPTURE, EVAL_SEQ, SPLIT, TRAIN_SEQ, VideoFrame, write_capture


def test_angles_to_pose_torch_matches_scipy():
    rng = np.random.default_rng(0)
    low, high = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    angles = low + (high - low) * rng.uniform(size=(6, 15, 3))
    angles[0] = 0.0  # the identity, where the axis is undefined
    frames = smplx.create("open_hand").pose_frames()
    ours = angles_to_pose_torch(torch.tensor(angles), torch.tensor(frames)).numpy()
    # rotation vectors are unique below pi (every joint limit keeps the angle there), so compare them directly
    np.testing.assert_allclose(ours, angles_to_pose(angles, frames), atol=1e-10)  # float64 round-off


def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(21, 3))
    rotation = Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()
    source = 0.7 * target @ rotation.T + np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(procrustes_align(source, target), target, atol=1e-10)
    assert pa_mpjpe(source, target) < 1e-10
    shifted = target + np.array([0.0, 0.0, 1.0]) * (np.arange(21) == 5)[:, None]  # one joint 1 unit off
    assert mpjpe(shifted, target) == pytest.approx(1 / 21)


def test_error_tail_finds_the_frames_and_joints_that_carry_it():
    errors = np.full((10, 3), 2.0)
    errors[7] = [2.0, 40.0, 60.0]  # one frame far off (mean 34 px), in its last two joints
    tail = error_tail(errors, ["a", "b", "c"], threshold=12.0)
    total = 9 * 6.0 + 102.0
    assert tail["tail_frames"] == 1 and tail["tail_share"] == pytest.approx(102.0 / total, abs=5e-4)
    assert tail["mean"] == pytest.approx(total / 30) and tail["median"] == 2.0
    assert tail["frame_mean_p90"] == pytest.approx(2.0 + 0.1 * (34.0 - 2.0))  # numpy's linear percentile, 9 of 10 at 2
    assert tail["by_joint"]["a"] == [2.0, 2.0]
    assert tail["by_joint"]["c"] == [pytest.approx(7.8), pytest.approx(2.0 + 0.55 * 58.0)]  # p95: 8.55 of 9 steps
    assert error_tail(errors, ["a", "b", "c"], threshold=40.0)["tail_frames"] == 0
    with pytest.raises(ValueError, match="expected"):
        error_tail(errors, ["a", "b"])


def test_intrinsics_and_split():
    focal, principal, note = intrinsics(1920, 1080)
    assert focal == pytest.approx(960 / math.tan(math.radians(PHONE_FOV_DEG / 2)))
    assert principal == (959.5, 539.5) and "phone" in note
    assert intrinsics(960, 540, focal_px=1500, scale=0.5)[0] == 750
    with pytest.raises(VideoError, match="not both"):
        intrinsics(10, 10, fov_deg=60, focal_px=100)
    np.testing.assert_array_equal(split_train_eval(10, 0.2), [False] * 8 + [True] * 2)
    assert split_train_eval(3, 0.01).sum() == 1 and not split_train_eval(3, 0.0).any()


def _write_video(path, count, size=(96, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for k in range(count):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, :] = (10 * k, 0, 255 - 10 * k)
        writer.write(frame)
    writer.release()


def test_extract_frames_every_max_and_errors(tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, 12)
    frames, scale, unreadable = extract_frames(video, tmp_path / "f", every=3, max_frames=3, max_side=48,
                                               progress=False)
    assert [f.source_index for f in frames] == [0, 3, 6] and scale == 0.5 and unreadable == 0
    assert cv2.imread(str(frames[1].path)).shape == (32, 48, 3)
    blue = cv2.imread(str(frames[2].path))[..., 0].mean()
    assert abs(blue - 60) < 6  # frame 6 was written, not another (JPEG/MJPG round-off)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="cannot be read as a video"):
        extract_frames(tmp_path / "broken.mp4", tmp_path / "g", progress=False)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in (10, 2, 1):
        cv2.imwrite(str(folder / f"img{k}.png"), np.full((8, 8, 3), k, np.uint8))
    (folder / "img5.png").write_bytes(b"truncated")
    frames, _, unreadable = extract_frames(folder, tmp_path / "h", progress=False)
    assert [f.source_index for f in frames] == [0, 1, 3] and unreadable == 1  # img1, img2, (img5), img10


def test_a_short_video_is_refused_before_any_work(tmp_path):
    _write_video(tmp_path / "short.avi", 3)
    with pytest.raises(VideoError, match="gave 3 frames.*at least 5"):
        prepare_video(tmp_path / "short.avi", tmp_path / "out", progress=False)


def _true_joints(root, camera):
    """True camera-frame joints (N, 21, 3) m, MANO order, the records and the intrinsics of one camera."""
    records, _ = SplitAnnotations(root, "test").frames(Subject("test", 0, TRAIN_SEQ, camera))
    joints = np.stack([world_to_camera(r.world_joints[list(INTERHAND_TO_MANO)], r.camrot, r.campos)
                       for r in records]) / 1000
    return joints, records, records[0].K


def test_fit_recovers_true_joints_from_noisy_keypoints(synthetic_capture):
    joints, _, K = _true_joints(synthetic_capture, "400262")
    order = list(MEDIAPIPE_TO_MANO)
    rng = np.random.default_rng(0)
    true_uv = project(joints, K)[:, order]
    uv = true_uv + rng.normal(scale=1.5, size=true_uv.shape)
    world = joints[:, order] - joints[:, order].mean(1, keepdims=True) + rng.normal(scale=0.002, size=(5, 21, 3))
    model = smplx.create("open_hand", seal=True, distal=True)
    fit = fit_hand(model, uv, world, np.ones((5, 21)), focal=K[0, 0], principal=(K[0, 2], K[1, 2]),
                   offsets_mm=np.zeros((21, 3)), progress=False)  # the keypoints are the joints themselves
    # the synthetic subject's shape and depth are unknown to the fit: joints agree up to a similarity
    assert np.median(np.linalg.norm(fit.uv - true_uv, axis=-1)) < 3.0  # px; 1.5 px noise, ~200 px hand
    assert 1000 * pa_mpjpe(fit.joints, joints).mean() < 6.0  # mm; measured ~4 with this noise
    assert 1000 * mpjpe(fit.joints, joints).mean() < 25.0  # mm, includes the hand's unknown scale
    start = fit_hand(model, uv, world, np.ones((5, 21)), focal=K[0, 0], principal=(K[0, 2], K[1, 2]),
                     offsets_mm=np.zeros((21, 3)), settings=FitSettings(rigid_steps=0, steps=0), progress=False)
    assert 1000 * pa_mpjpe(start.joints, joints).mean() > 10.0  # the relaxed start is far: the fit did the work


def test_written_capture_reads_back_and_poses_like_the_fit(tmp_path, synthetic_capture):
    joints, records, K = _true_joints(synthetic_capture, "400262")
    order = list(MEDIAPIPE_TO_MANO)
    uv = project(joints, K)[:, order]
    world = joints[:, order] - joints[:, order].mean(1, keepdims=True)
    model = smplx.create("open_hand", seal=True, distal=True)
    fit = fit_hand(model, uv, world, np.ones((5, 21)), focal=K[0, 0], principal=(K[0, 2], K[1, 2]),
                   offsets_mm=np.zeros((21, 3)), progress=False)
    frames = []
    for k, r in enumerate(records):
        pixels = project(fit.vertices[k], K)
        frames.append(VideoFrame(100 + 2 * k, tree_path(synthetic_capture, "images", "test", r.file_name), k == 4,
                                 fit.global_orient[k], fit.hand_pose[k], fit.transl[k], fit.joints[k],
                                 fit.vertices[k], pixels))
    hands_mean = model.to_model_data().hands_mean
    write_capture(tmp_path, frames, faces=model.output_faces.numpy(), betas=fit.betas, hands_mean=hands_mean,
                  hand="right", focal=K[0, 0], principal=(K[0, 2], K[1, 2]), width=334, height=512, progress=False)
    annotations = SplitAnnotations(tmp_path, SPLIT)
    train, rejected = annotations.frames(Subject(SPLIT, CAPTURE, TRAIN_SEQ, CAMERA))
    held, _ = annotations.frames(Subject(SPLIT, CAPTURE, EVAL_SEQ, CAMERA))
    assert [r.frame_idx for r in train] == [100, 102, 104, 106] and [r.frame_idx for r in held] == [108]
    assert not rejected
    # the project's own posing code, from the written NeuralAnnot parameters, puts the joints where the fit had them
    layer = smplx.create("open_hand", dtype=torch.float64, **MODEL_OPTIONS)
    posed = pose_hands(layer, train + held)
    in_camera = (posed.joints + posed.Th[:, None]) / 10  # dm -> m
    np.testing.assert_allclose(in_camera, fit.joints, atol=2e-5)  # float32 fit vs float64 posing, m
    mask = cv2.imread(str(tree_path(tmp_path, "masks_removeblack", SPLIT, train[0].file_name, ".png")))
    true = cv2.imread(str(tree_path(synthetic_capture, "masks_removeblack", "test", records[0].file_name, ".png")))
    iou = np.logical_and(mask > 0, true > 0).sum() / np.logical_or(mask > 0, true > 0).sum()
    assert iou > 0.95  # exact keypoints and GrabCut; measured 0.994


def _keypoints(hands):
    n = len(hands)
    return Keypoints(found=np.array([h != "" for h in hands]), uv=np.zeros((n, 21, 2)), world=np.zeros((n, 21, 3)),
                     handedness=np.array(hands), handedness_score=np.ones(n))


def test_select_counts_drops_and_refuses_the_other_hand():
    keep, dropped, relabelled = _select(_keypoints(["right"] * 6 + ["", "left"]), "right", 8)
    assert keep.sum() == 7 and dropped["no hand found"] == 1 and relabelled == 1  # a minority label is kept
    with pytest.raises(VideoError, match="--hand left"):
        _select(_keypoints(["left"] * 6 + ["right"]), "right", 7)
    with pytest.raises(VideoError, match="at least 5"):
        _select(_keypoints(["right"] * 3 + [""] * 5), "right", 8)


def test_backgrounds_are_fixed_pictures_and_unknown_ones_are_refused():
    from segment.video.evaluate import background_image
    for kind in ("clutter", "wood"):
        image = background_image(kind, 40, 30)
        assert image.shape == (30, 40, 3) and 0 <= image.min() and image.max() <= 255 and image.std() > 5
        np.testing.assert_array_equal(image, background_image(kind, 40, 30))  # the same for every frame and run
    with pytest.raises(VideoError, match="not one of"):
        background_image("beach", 40, 30)
