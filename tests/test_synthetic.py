"""The synthetic capture: InterHand2.6M schema, geometry against the written annotations, the image decomposition,
determinism, resume and clear errors."""

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import smplx
from segment.interhand import (INTERHAND_JOINT_NAMES, INTERHAND_TO_MANO, MANO_TO_INTERHAND, annotation_path,
                               tree_path)
from segment.synthetic import CaptureSettings, SyntheticCaptureError, main, make_capture
from smplx.joint_names import FINGERTIP_NAMES, JOINT_NAMES
from tests.hand_fixtures import SMALL_CAPTURE

SMALL = SMALL_CAPTURE


@pytest.fixture(scope="module")
def capture(synthetic_capture):
    return synthetic_capture


def _load(root, split="test"):
    return {kind: json.loads(annotation_path(root, split, kind).read_text())
            for kind in ("data", "camera", "joint_3d", "MANO_NeuralAnnot")}


def _read(path):
    return np.asarray(Image.open(path))


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_joint_orders_agree_by_name():
    mano_names = list(JOINT_NAMES) + [n.replace("_tip", "4") for n in FINGERTIP_NAMES]
    assert [mano_names[i] for i in MANO_TO_INTERHAND] == list(INTERHAND_JOINT_NAMES)
    assert [INTERHAND_JOINT_NAMES[i] for i in INTERHAND_TO_MANO] == mano_names


def test_annotation_files_follow_the_interhand_schema(capture):
    """Field names, types and nesting as in InterHand2.6M's own files (checked against a real excerpt's layout)."""
    ann = _load(capture)
    data = ann["data"]
    assert set(data) == {"images", "annotations"} and len(data["images"]) == 7 * 2
    image_types = {"id": int, "file_name": str, "width": int, "height": int, "capture": int, "subject": int,
                   "seq_name": str, "camera": str, "frame_idx": int}
    annotation_types = {"id": int, "image_id": int, "bbox": list, "joint_valid": list, "hand_type": str,
                        "hand_type_valid": int}
    for image, annotation in zip(data["images"], data["annotations"]):
        assert {k: type(v) for k, v in image.items()} == image_types
        assert {k: type(v) for k, v in annotation.items()} == annotation_types
        assert annotation["image_id"] == image["id"] and (image["width"], image["height"]) == (334, 512)
        assert image["file_name"] == (f"Capture0/{image['seq_name']}/cam{image['camera']}/"
                                      f"image{image['frame_idx']}.jpg")
        assert tree_path(capture, "images", "test", image["file_name"]).is_file()
        assert annotation["joint_valid"] == [[1]] * 21 + [[0]] * 21 and annotation["hand_type"] == "right"
        assert len(annotation["bbox"]) == 4 and all(isinstance(v, float) for v in annotation["bbox"])
    assert {i["seq_name"] for i in data["images"]} == {"ROM04_RT_Occlusion", "ROM03_RT_No_Occlusion"}
    assert len({i["id"] for i in data["images"]}) == len(data["images"])

    cams = ann["camera"]["0"]
    assert set(cams) == {"campos", "camrot", "focal", "princpt"}
    assert set(cams["campos"]) == {"400262", "400263"}
    for cam in cams["camrot"]:
        rot = np.array(cams["camrot"][cam])
        assert rot.shape == (3, 3) and np.allclose(rot @ rot.T, np.eye(3), atol=1e-6)
        assert len(cams["campos"][cam]) == 3 and len(cams["focal"][cam]) == 2 and len(cams["princpt"][cam]) == 2

    frames = {str(i["frame_idx"]) for i in data["images"]}
    assert set(ann["joint_3d"]) == {"0"} and set(ann["joint_3d"]["0"]) == frames
    for entry in ann["joint_3d"]["0"].values():
        assert set(entry) == {"world_coord", "joint_valid", "hand_type", "hand_type_valid"}
        assert np.array(entry["world_coord"]).shape == (42, 3) and entry["hand_type_valid"] is True
        assert entry["joint_valid"] == [[True]] * 21 + [[False]] * 21
    assert set(ann["MANO_NeuralAnnot"]["0"]) == frames
    for entry in ann["MANO_NeuralAnnot"]["0"].values():
        assert entry["left"] is None and set(entry["right"]) == {"pose", "shape", "trans"}
        assert [len(entry["right"][k]) for k in ("pose", "shape", "trans")] == [48, 10, 3]


def _posed_from_annotations(ann, frame_idx, hand="right"):
    """World vertices and joints (mm) of a frame, from the NeuralAnnot entry the way InterHand's own tools do it:
    a MANO layer that adds the model's mean pose, the translation added in metres, then x 1000."""
    params = ann["MANO_NeuralAnnot"]["0"][str(frame_idx)][hand]
    layer = smplx.create("open_hand", is_rhand=hand == "right", flat_hand_mean=False, seal=True, distal=True,
                         dtype=torch.float64)
    pose = torch.tensor([params["pose"]], dtype=torch.float64)
    out = layer(betas=torch.tensor([params["shape"]], dtype=torch.float64), global_orient=pose[:, :3],
                hand_pose=pose[:, 3:], transl=torch.tensor([params["trans"]], dtype=torch.float64))
    return out.vertices[0].numpy() * 1000, out.joints[0].numpy() * 1000, layer.output_faces.numpy()


def test_world_joints_match_the_mano_parameters(capture):
    ann = _load(capture)
    for frame_idx, entry in ann["joint_3d"]["0"].items():
        _, joints, _ = _posed_from_annotations(ann, frame_idx)
        np.testing.assert_allclose(np.array(entry["world_coord"])[:21], joints[list(MANO_TO_INTERHAND)], atol=2e-3)
        assert not np.any(entry["world_coord"][21:])


def _filled_triangles(vertices_world, faces, ann, camera, size):
    """A mask made independently of the ray tracer: project the mesh and fill every triangle (a pixel is in when its
    centre is)."""
    cam = {k: np.array(v[camera]) for k, v in ann["camera"]["0"].items()}
    local = (vertices_world - cam["campos"]) @ cam["camrot"].T
    uv = local[:, :2] / local[:, 2:] * cam["focal"] + cam["princpt"]
    mask = np.zeros(size[::-1], bool)
    for a, b, c in uv[faces]:  # pixel centres (integer coordinates) inside the triangle, either winding
        x0, y0 = np.floor(np.minimum(np.minimum(a, b), c)).astype(int)
        x1, y1 = np.ceil(np.maximum(np.maximum(a, b), c)).astype(int)
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        p = np.stack([xs, ys], -1).astype(float)
        edges = [(q - p0)[0] * (p - p0)[..., 1] - (q - p0)[1] * (p - p0)[..., 0] for p0, q in ((a, b), (b, c), (c, a))]
        inside = np.all([e >= 0 for e in edges], 0) | np.all([e <= 0 for e in edges], 0)
        mask[ys[inside], xs[inside]] = True
    return mask


@pytest.mark.parametrize("index", [0, 5, 7, 11])
def test_projected_mesh_matches_the_mask(capture, index):
    ann = _load(capture)
    image = ann["data"]["images"][index]
    vertices, _, faces = _posed_from_annotations(ann, image["frame_idx"])
    reference = _filled_triangles(vertices, faces, ann, image["camera"], (image["width"], image["height"]))
    mask = _read(tree_path(capture, "masks_removeblack", "test", image["file_name"], ".png"))
    assert mask.shape == (512, 334, 3) and set(np.unique(mask)) <= {0, 255}
    written = mask[..., 0] > 0
    iou = (written & reference).sum() / (written | reference).sum()
    assert iou > 0.98, iou
    x, y, w, h = ann["data"]["annotations"][index]["bbox"]
    ys, xs = np.nonzero(written)
    assert abs(xs.min() - x) <= 1.5 and abs(ys.min() - y) <= 1.5 and abs(xs.max() - (x + w)) <= 1.5
    assert 100 <= max(w, h) <= 250  # InterHand-like hand size


def test_image_is_albedo_times_shading(capture):
    ann = _load(capture)
    for image in ann["data"]["images"][:4]:
        name = image["file_name"]
        rgb = _read(tree_path(capture, "images", "test", name)).astype(float)
        albedo = _read(tree_path(capture, "albedo", "test", name, ".png")).astype(float)
        shading = _read(tree_path(capture, "shading", "test", name, ".png")).astype(float) / 255
        mask = _read(tree_path(capture, "masks_removeblack", "test", name, ".png"))[..., 0]
        inside = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0  # away from the anti-aliased outline
        error = np.abs(rgb[inside] - albedo[inside] * shading[inside][:, None])
        assert error.mean() < 1.5 and np.percentile(error, 99) < 8, (error.mean(), np.percentile(error, 99))
        depth = _read(tree_path(capture, "depth", "test", name, ".png"))
        outside = cv2.dilate(mask, np.ones((3, 3), np.uint8)) == 0
        assert depth.dtype == np.uint16 and np.all(depth[inside] > 0) and not np.any(depth[outside])
        assert 8000 < np.median(depth[inside]) < 12000  # 0.1 mm units, the hand about 1 m from the camera


def test_cast_shadows_darken_the_same_surface_point(capture, tmp_path):
    """The first training frame rendered again without shadow rays: its shadowed pixels become brighter, the rest do
    not change."""
    lit = tmp_path / "lit"
    make_capture(replace(SMALL, train_frames=1, eval_frames=0, shadows=False), lit,
                 workers=1, progress=False)
    first = _load(lit)["MANO_NeuralAnnot"]["0"]
    assert first == {k: v for k, v in _load(capture)["MANO_NeuralAnnot"]["0"].items() if k in first}  # same start
    name = _load(lit)["data"]["images"][0]["file_name"]
    shadowed = _read(tree_path(capture, "shading", "test", name, ".png")).astype(float)
    unshadowed = _read(tree_path(lit, "shading", "test", name, ".png")).astype(float)
    in_shadow = unshadowed - shadowed > 40
    assert in_shadow.sum() > 100  # the pose casts a real shadow
    assert np.all(shadowed <= unshadowed + 1)
    image_dark = _read(tree_path(capture, "images", "test", name)).astype(float).sum(-1)
    image_lit = _read(tree_path(lit, "images", "test", name)).astype(float).sum(-1)
    assert np.mean(image_dark[in_shadow] < image_lit[in_shadow] - 20) > 0.95


def test_same_seed_same_bytes_and_resume(capture, tmp_path):
    again = tmp_path / "again"
    make_capture(SMALL, again, workers=2, progress=False)
    assert _hashes(again) == _hashes(capture)
    (tree_path(again, "images", "test", _load(again)["data"]["images"][3]["file_name"])).unlink()
    annotation_path(again, "test", "data").unlink()
    summary = make_capture(SMALL, again, workers=1, progress=False)
    assert (summary["rendered"], summary["skipped"]) == (1, 13)
    assert _hashes(again) == _hashes(capture)


def test_other_settings_need_overwrite(capture, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(capture, out)
    other = replace(SMALL, train_frames=2, eval_frames=0, cameras=1, seed=4)
    with pytest.raises(SyntheticCaptureError, match=r"other settings \(cameras, eval_frames, seed, train_frames\)"):
        make_capture(other, out, workers=1, progress=False)
    make_capture(other, out, workers=1, progress=False, overwrite=True)
    assert len(_load(out)["data"]["images"]) == 2
    assert not (out / "InterHand2.6M_5fps_batch1" / "images" / "test" / "Capture0" / "ROM03_RT_No_Occlusion").exists()


def test_left_hand(tmp_path):
    settings = replace(SMALL, hand="left", train_frames=1, eval_frames=0, cameras=1, seed=5)
    make_capture(settings, tmp_path, workers=1, progress=False)
    ann = _load(tmp_path)
    image = ann["data"]["images"][0]
    assert ann["data"]["annotations"][0]["joint_valid"] == [[0]] * 21 + [[1]] * 21
    assert ann["MANO_NeuralAnnot"]["0"][str(image["frame_idx"])]["right"] is None
    vertices, joints, faces = _posed_from_annotations(ann, image["frame_idx"], hand="left")
    world = np.array(ann["joint_3d"]["0"][str(image["frame_idx"])]["world_coord"])
    np.testing.assert_allclose(world[21:], joints[list(MANO_TO_INTERHAND)], atol=2e-3)
    reference = _filled_triangles(vertices, faces, ann, image["camera"], (334, 512))
    written = _read(tree_path(tmp_path, "masks_removeblack", "test", image["file_name"], ".png"))[..., 0] > 0
    assert (written & reference).sum() / (written | reference).sum() > 0.98


@pytest.mark.parametrize("settings, out, message", [
    (CaptureSettings(model="no/such/MANO_RIGHT.pkl"), "ok", r"cannot load the hand model .*MANO_RIGHT\.pkl"),
    (replace(SMALL, distance=300.0), "ok", r"the hand leaves the 334x512 image of camera 400262 in frame 10000"),
    (replace(SMALL, distance=5.0), "ok", r"the hand is behind camera 400262 in frame 10000"),
    (replace(SMALL, skin="green"), "ok", r"--skin 'green' is not one of"),
    (replace(SMALL, train_frames=2, eval_frames=0), "file/sub", r"cannot write to the output folder .*file/sub"),
])
def test_bad_input_fails_before_rendering(tmp_path, settings, out, message):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SyntheticCaptureError, match=message):
        make_capture(settings, tmp_path / out, workers=1, progress=False)
    assert not (tmp_path / "ok").exists()


def test_command_line_reports_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--distance", "5", "--quiet"])
    assert exit_info.value.code == 2
    assert "error: the hand is behind camera" in capsys.readouterr().err
