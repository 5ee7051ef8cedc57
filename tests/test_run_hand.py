"""Free-pose rendering (handavatar.run): the files of every mode, the freepose schedule, the orbit cameras, driving
motions, and the messages of bad input. A tiny untrained avatar renders 32x32 images."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

import smplx
from smplx.utils.config import ConfigError, config_to_dict, load_config
from smplx.hand_pose import pose_to_angles
from smplx.joint_names import JOINT_NAMES
from segment.preprocess import load_cache
from handavatar.cameras import AXES, Camera, camera_sample, frame_camera, orbit_cameras
from handavatar.data import DataConfig, InterHandDataset
from handavatar.poses import freepose_angles, freepose_poses, load_motion_file
from handavatar.checkpoint import build_avatar, load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.run import Shot, _margin, plan_shots, reference_frame, render_shot, run
from tests.hand_fixtures import train_tiny_pairof

EVAL = "test/Capture0/ROM03_RT_No_Occlusion"


@pytest.fixture(scope="module")
def setup(synthetic_capture, tmp_path_factory):
    """A capture, a tiny PairOF and the latest.tar of an untrained tiny avatar."""
    work = tmp_path_factory.mktemp("run_hand")
    shutil.copytree(synthetic_capture, work / "capture")
    train_tiny_pairof(work)
    config = _config(work)
    avatar = build_avatar(config, torch.device("cpu"))
    latest = work / "runs" / "tiny" / "latest.tar"
    latest.parent.mkdir(parents=True)
    torch.save({"iter": 0, "network": avatar.state_dict(), "optimizer": {},
                "config": json.dumps(config_to_dict(config))}, latest)
    return work


def _config(work, *overrides):
    return load_config(AvatarConfig, [DEFAULTS], [
        f"out_root={work / 'runs'}", "experiment=tiny", f"data.root={work / 'capture'}",
        "smpl_cfg.model_path=open_hand", "smpl_cfg.levels=1", "smpl_cfg.lbs_weights=",
        f"smpl_cfg.pairof={work / 'field' / 'pairof.ckpt'}", "N_samples=4", "network.code_dim=8", "device=cpu",
        "run.resolution=32", "run.mesh_resolution=12", "run.fps=5", *overrides])


def _video_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def _check_outputs(folder, mode, frames, *, width=32):
    pngs = sorted((folder / "frames").glob("*.png"))
    assert [p.name for p in pngs] == [f"{k:06d}.png" for k in range(frames)]
    image = Image.open(pngs[0])
    assert image.mode == "RGBA" and image.size == (width, 32)
    assert _video_frames(folder / f"{mode}.mp4") == frames
    assert Image.open(folder / f"{mode}.gif").n_frames == frames


def test_freepose_schedule_runs_from_range_starts_to_ends():
    table = load_config(AvatarConfig, [DEFAULTS]).run.joint_rot
    assert table["ring2"] == [[0, 80], [0, 10], [0, 0]] and table["thumb1"] == [[0, 0], [0, 0], [0, 50]]
    angles = freepose_angles(table, 7)
    starts = np.array([np.array(table[name])[:, 0] for name in JOINT_NAMES])
    ends = np.array([np.array(table[name])[:, 1] for name in JOINT_NAMES])
    np.testing.assert_allclose(angles[0], starts)
    np.testing.assert_allclose(angles[-1], ends)
    np.testing.assert_allclose(angles[3], (starts + ends) / 2)  # linear: half-way at the middle frame
    hand = smplx.create("open_hand", **smplx.PAPER_FRAME)
    frames = hand.pose_frames()
    orient = np.array([0.3, -0.2, 1.0])
    wrist = {**table, "wrist": [[0, 30], [0, 0], [10, 10]]}
    orients, poses = freepose_poses(freepose_angles(wrist, 2), frames, orient)
    # the hand poses are the anatomical angles of the table (read back through the inverse map)
    np.testing.assert_allclose(pose_to_angles(poses[-1], frames), ends[1:], atol=1e-9)
    np.testing.assert_allclose(pose_to_angles(poses[0], frames), starts[1:], atol=1e-9)
    expected = Rotation.from_euler("XYZ", [30, 0, 10], degrees=True) * Rotation.from_rotvec(orient)
    np.testing.assert_allclose(Rotation.from_rotvec(orients[-1]).as_matrix(), expected.as_matrix(), atol=1e-12)
    with pytest.raises(ValueError, match=r"run.joint_rot.indx1: not a MANO joint .*did you mean 'index1'"):
        freepose_angles({"indx1": [[0, 1], [0, 0], [0, 0]]}, 3)
    with pytest.raises(ValueError, match=r"run.joint_rot.index1 must be three \[from, to\] ranges"):
        freepose_angles({"index1": [[0, 90]]}, 3)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_orbit_cameras_circle_the_hand_and_look_at_it(axis):
    K = np.array([[300.0, 0, 14.0], [0, 310.0, 19.0], [0, 0, 1]])
    start = Camera(K=K, R=np.eye(3), centre=np.array([0.4, -0.3, -6.0]), size=33)
    target = np.array([0.1, 0.25, 0.05])
    radius = np.linalg.norm(start.centre - target)
    cameras = orbit_cameras(start, target, axis, 8)
    a = AXES[axis]
    for k, camera in enumerate(cameras):
        offset = camera.centre - target
        assert np.linalg.norm(offset) == pytest.approx(radius, rel=1e-12)
        assert offset @ a == pytest.approx(0.0, abs=1e-12)  # in the plane through the target, perpendicular to a
        np.testing.assert_allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(camera.R) == pytest.approx(1.0)
        view = camera.R @ (target - camera.centre)  # camera frame: the target lies on the optical axis
        np.testing.assert_allclose(view[:2], 0.0, atol=1e-12)
        assert view[2] == pytest.approx(radius)
        # the pixel ray at the image centre passes through the target
        sample = camera_sample(camera, target - 0.5, target + 0.5)
        centre_ray = sample["rays_d"][0, 16, 16].astype(float)
        np.testing.assert_allclose(camera.centre + view[2] * centre_ray, target, atol=1e-5)
        assert sample["ray_mask"][0, 16, 16]
        if k:
            previous = cameras[k - 1].centre - target
            cos = previous @ offset / radius ** 2
            assert cos == pytest.approx(np.cos(2 * np.pi / 8), abs=1e-12)
            assert np.cross(previous, offset) @ a > 0  # anticlockwise about the axis
    first = cameras[0].centre
    assert np.linalg.norm(first - start.centre) <= min(np.linalg.norm(c.centre - start.centre) for c in cameras)
    if axis == "y":  # the frame camera's image-down axis: the views stay upright
        assert all(c.R[1] @ a > 0.99 for c in cameras)


def test_frame_camera_rays_match_the_dataset(setup):
    root = setup / "capture"
    config = DataConfig(root=str(root), mode="image", resolution=32, background="black")
    sample = InterHandDataset(config)[3]
    cache = load_cache(root, config.subject)
    camera = frame_camera(cache.K[3], cache.bbox[3], cache.Th[3], crop_scale=1.3, size=32)
    rays = camera_sample(camera, sample["box_min"], sample["box_max"])
    for key in ("rays_o", "rays_d", "near", "far", "ray_mask", "pixels", "K", "Th"):
        np.testing.assert_allclose(rays[key], sample[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_freeview_with_layers_and_meshes(setup):
    folder = run(_config(setup, "run.mode=freeview", "run.views=3", "run.save_layers=true", "run.export_mesh=true",
                         "run.mesh_format=obj"))
    assert folder == setup / "runs" / "tiny" / "freeview"
    _check_outputs(folder, "freeview", 3)
    for layer in ("albedo", "shading"):
        assert len(list((folder / layer).glob("*.png"))) == 3
    meshes = sorted(p.name for p in (folder / "meshes").iterdir())
    assert meshes == [f"{k:06d}_{kind}.obj" for k in range(3) for kind in ("manohd", "pairof")]
    hand = trimesh.load(folder / "meshes" / "000000_manohd.obj", process=False)
    avatar, _, _ = load_avatar(_config(setup), torch.device("cpu"))
    assert len(hand.faces) == len(avatar.hand.output_faces)


def test_freepose_and_layers(setup):
    folder = run(_config(setup, "run.mode=freepose", "run.frames=3", "run.layer=albedo"))
    _check_outputs(folder, "freepose", 3)
    assert not (folder / "meshes").exists() and not (folder / "albedo").exists()
    # a rerun with fewer frames replaces the frames
    run(_config(setup, "run.mode=freepose", "run.frames=2", "run.layer=shading"))
    _check_outputs(folder, "freepose", 2)
    shading = np.asarray(Image.open(folder / "frames" / "000000.png"))
    assert np.array_equal(shading[..., 0], shading[..., 1])  # shading only: grey


def test_tpose_and_test_modes(setup):
    folder = run(_config(setup, "run.mode=tpose"))
    _check_outputs(folder, "tpose", 1)
    folder = run(_config(setup, "run.mode=tpose", "run.tpose_orbit=true", "run.views=2"))
    _check_outputs(folder, "tpose", 2)
    folder = run(_config(setup, "run.mode=test", "data.eval_skip=1", "data.max_frames=2"))
    _check_outputs(folder, "test", 2, width=4 * 32)
    rows = (folder / "metrics.csv").read_text().strip().splitlines()
    assert rows[0] == "key,psnr,ssim,psnr_masked,ssim_masked,lpips" and len(rows) == 3
    strip = np.asarray(Image.open(folder / "frames" / "000000.png"))
    assert np.all(strip[:, 96:, 3] == 255)  # the target panel is opaque
    target = np.asarray(InterHandDataset(DataConfig(root=str(setup / "capture"), subject=EVAL, mode="image",
                                                    resolution=32, background="black", model="open_hand"))[0][
        "target_rgb"][0])
    np.testing.assert_allclose(strip[:, 96:, :3] / 255, target, atol=0.5 / 255 + 1e-6)


def test_frames_are_the_avatar_rendered_at_the_shot_pose(setup, tmp_path):
    """tpose, freepose and movement frames (PNG, RGBA) against one render of the avatar from the reference frame's
    camera with the pose each mode should give, taken from the dataset's own sample of that frame: the flat hand
    (tpose, and freepose with a table of zero ranges) and the frame's own pose (movement driven by a file holding
    it). (test_frame_camera_rays_match_the_dataset checks that camera's rays against the dataset's.) The exact fast
    renderer (band 0), so that no render depends on the poses band 'auto' measured before it."""
    exact = "render.band=0"
    config = _config(setup, exact)
    avatar, _, _ = load_avatar(config, torch.device("cpu"))
    avatar.eval()
    data = DataConfig(root=str(setup / "capture"), subject=config.data.subject, mode="image", resolution=32,
                      background="black", model="open_hand")
    sample = InterHandDataset(data)[config.run.frame_idx]
    camera = reference_frame(config).camera

    def direct(hand_pose):
        out = render_shot(avatar, Shot(sample["global_orient"], hand_pose, camera), margin=_margin(config))
        return np.dstack([out["rgb"][0].numpy(), out["alpha"][0].numpy()])

    def saved(folder, k):
        return np.asarray(Image.open(folder / "frames" / f"{k:06d}.png")) / 255

    flat, own = direct(np.zeros(45)), direct(sample["hand_pose"])
    assert np.abs(flat - own).max() > 0.1 and flat[..., 3].max() > 0.2  # the two poses look different
    tolerance = 0.5 / 255 + 1e-6  # 8-bit rounding
    np.testing.assert_allclose(saved(run(_config(setup, exact, "run.mode=tpose")), 0), flat, rtol=0, atol=tolerance)
    zero_table = "{" + ", ".join(f"{name}: [[0, 0], [0, 0], [0, 0]]" for name in JOINT_NAMES[:16]) + "}"
    folder = run(_config(setup, exact, "run.mode=freepose", "run.frames=2", f"run.joint_rot={zero_table}"))
    for k in range(2):
        np.testing.assert_allclose(saved(folder, k), flat, rtol=0, atol=tolerance)
    np.savez(tmp_path / "own.npz", pose=np.concatenate([sample["global_orient"], sample["hand_pose"]])[None])
    folder = run(_config(setup, exact, "run.mode=movement", f"run.motion_file={tmp_path / 'own.npz'}"))
    np.testing.assert_allclose(saved(folder, 0), own, rtol=0, atol=tolerance)


def test_movement_drives_this_avatar_with_the_sequence_poses(setup):
    folder = run(_config(setup, "run.mode=movement", f"run.motion_subject={EVAL}", "run.export_mesh=true",
                         "run.mesh_format=ply"))
    _check_outputs(folder, "movement", 2)
    # the driving subject's poses of its camera 400262 (both cameras have 2 frames: the lowest id is used)
    cache = load_cache(setup / "capture", EVAL, model="open_hand")
    rows = np.flatnonzero(cache.camera == "400262")
    avatar, _, _ = load_avatar(_config(setup), torch.device("cpu"))
    with torch.no_grad():
        posed = avatar.pose(torch.as_tensor(cache.global_orient[rows], dtype=torch.float32),
                            torch.as_tensor(cache.hand_pose[rows], dtype=torch.float32))
    for k in range(2):
        mesh = trimesh.load(folder / "meshes" / f"{k:06d}_manohd.ply", process=False)
        np.testing.assert_allclose(mesh.vertices, posed.vertices[k].double().numpy(), atol=1e-5)
    # run.motion_orient=frame keeps the frame's global rotation; a motion file gives its poses
    config = _config(setup, "run.mode=movement", f"run.motion_subject={EVAL}/cam400263", "run.motion_orient=frame")
    shots = plan_shots(avatar, config)
    frame = load_cache(setup / "capture", config.data.subject, model="open_hand")
    other = np.flatnonzero(cache.camera == "400263")
    np.testing.assert_allclose(np.stack([s.hand_pose for s in shots]), cache.hand_pose[other], atol=1e-9)
    assert all(np.allclose(s.global_orient, frame.global_orient[0]) for s in shots)
    poses = np.random.default_rng(0).normal(scale=0.3, size=(3, 48))
    np.savez(setup / "motion.npz", pose=poses)
    shots = plan_shots(avatar, _config(setup, "run.mode=movement", f"run.motion_file={setup / 'motion.npz'}",
                                       "run.motion_skip=2"))
    np.testing.assert_allclose(np.stack([s.global_orient for s in shots]), poses[::2, :3])
    np.testing.assert_allclose(np.stack([s.hand_pose for s in shots]), poses[::2, 3:])


def test_bad_input_is_named(setup):
    with pytest.raises(FileNotFoundError, match=r"never/latest.tar does not exist: train the avatar first"):
        run(_config(setup, "experiment=never"))
    with pytest.raises(ValueError, match=r"albedo.codes: this config builds \(256, 16\), the checkpoint has "
                                         r"\(256, 8\).*network.code_dim: 8 in the checkpoint, 16 here"):
        load_avatar(_config(setup, "network.code_dim=16"), torch.device("cpu"))
    state = torch.load(setup / "runs" / "tiny" / "latest.tar", weights_only=True)
    del state["config"]
    torch.save(state, setup / "bare.tar")
    with pytest.raises(ValueError, match=r"albedo.codes.*check network.code_dim, smpl_cfg.pairof"):
        load_avatar(_config(setup, f"run.ckpt={setup / 'bare.tar'}", "network.code_dim=16"), torch.device("cpu"))
    (setup / "junk.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk.tar cannot be read"):
        load_avatar(_config(setup, f"run.ckpt={setup / 'junk.tar'}"), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"motion_subject=test/Capture0/NoSuchSequence has no right-hand frame"):
        run(_config(setup, "run.mode=movement", "run.motion_subject=test/Capture0/NoSuchSequence"))
    with pytest.raises(ConfigError, match=r"needs exactly one of run.motion_subject"):
        run(_config(setup, "run.mode=movement"))
    with pytest.raises(ConfigError, match=r"run.frame_idx=99 but subject .* has 10 usable frames \(0..9\)"):
        run(_config(setup, "run.mode=tpose", "run.frame_idx=99"))


@pytest.mark.parametrize("name,content,message", [
    ("short.npz", {"pose": np.zeros((4, 40))}, r"'pose' must be \(N, 48\) with N >= 1, found shape \(4, 40\)"),
    ("keys.npz", {"poses": np.zeros((4, 48))}, r"must hold 'pose' \(N, 48\), or 'hand_pose' .*found \['poses'\]"),
    ("lengths.json", {"hand_pose": [[0.0] * 45] * 3, "global_orient": [[0.0] * 3] * 2},
     r"'global_orient' has 2 frames, 'hand_pose' 3"),
    ("nan.json", {"hand_pose": [[float("nan")] * 45]}, r"'hand_pose' has NaN or infinite values in 1 frame"),
    ("empty.json", {"hand_pose": []}, r"found shape \(0,\)"),
    ("broken.json", "{not json", r"cannot be read as json"),
    ("poses.txt", "1 2 3", r"must be .npz or .json"),
])
def test_malformed_motion_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif name.endswith(".npz"):
        np.savez(path, **content)
    else:
        path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_motion_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_motion_file(tmp_path / "absent.npz")
