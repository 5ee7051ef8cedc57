"""segment/: reading InterHand2.6M annotations (with the real files' quirks), masks from projected meshes, and the
annotation cache, tested on a synthetic capture whose ground truth is known."""

import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import smplx
from segment.annotations import SplitAnnotations, Subject
from segment.interhand import annotation_path, tree_path
from segment.masks import fill_triangles, make_masks, mask_fill, remove_black
from segment.preprocess import NoUsableFrames, build_cache, cache_path, load_cache, square_box

SUBJECT = Subject.parse("test/Capture0/ROM04_RT_Occlusion")


def _mask(root, file_name, tree="masks_removeblack"):
    return np.asarray(Image.open(tree_path(root, tree, "test", file_name, ".png")))[..., 0] > 0


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_subject_names():
    assert Subject.parse("val/Capture12/ROM03_RT_No_Occlusion/cam400262") == Subject(
        "val", 12, "ROM03_RT_No_Occlusion", "400262")
    assert str(SUBJECT) == "test/Capture0/ROM04_RT_Occlusion"
    with pytest.raises(ValueError, match="is not '<split>/Capture<N>/<sequence>"):
        Subject.parse("test/ROM04_RT_Occlusion")


def test_real_file_quirks_are_counted_not_fatal(synthetic_capture, tmp_path):
    """Null MANO entries, interacting hands, frames without MANO entry or annotation, a missing image, a truncated
    JPEG and a missing mask: each frame is skipped and counted by reason; the rest are cached."""
    root = tmp_path / "quirks"
    shutil.copytree(synthetic_capture, root)
    data = json.loads(annotation_path(root, "test", "data").read_text())
    train = [i for i in data["images"] if i["seq_name"] == SUBJECT.seq_name]  # 5 frames x 2 cameras
    frames = sorted({i["frame_idx"] for i in train})

    def mano(d):
        d["0"][str(frames[0])]["right"] = None  # both cameras of frame 0
        del d["0"][str(frames[1])]  # both cameras of frame 1

    _edit_json(annotation_path(root, "test", "MANO_NeuralAnnot"), mano)
    late = [i for i in train if i["frame_idx"] in frames[2:]]

    def anns(d):
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != late[0]["id"]]
        next(a for a in d["annotations"] if a["image_id"] == late[1]["id"])["hand_type"] = "interacting"

    _edit_json(annotation_path(root, "test", "data"), anns)
    tree_path(root, "images", "test", late[2]["file_name"]).unlink()
    jpeg = tree_path(root, "images", "test", late[3]["file_name"])
    jpeg.write_bytes(jpeg.read_bytes()[:3000])
    tree_path(root, "masks_removeblack", "test", late[4]["file_name"], ".png").unlink()

    cache, rejected = build_cache(root, SUBJECT, progress=False)
    assert rejected == Counter({"MANO parameters null": 2, "no MANO entry": 2, "no annotation": 1,
                                "hand type interacting": 1, "missing image": 1, "unreadable image": 1,
                                "missing mask": 1})
    assert list(cache.keys) == [f"test/{i['file_name']}" for i in late[5:]]


def test_no_usable_frame_says_why(synthetic_capture):
    with pytest.raises(NoUsableFrames, match=r"has no usable frame .*: 10 hand type right"):
        build_cache(synthetic_capture, SUBJECT, hand="left", progress=False)


def test_bad_annotation_files_are_named(synthetic_capture, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(synthetic_capture / "annotations", root / "annotations")
    path = annotation_path(root, "test", "camera")
    path.write_text(path.read_text()[:-20])
    with pytest.raises(ValueError, match=r"InterHand2.6M_test_camera.json is not valid JSON .* at line"):
        SplitAnnotations(root, "test")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"InterHand2.6M_test_camera.json is missing"):
        SplitAnnotations(root, "test")


def test_cached_hand_projects_onto_its_mask(synthetic_capture, tmp_path):
    """Pose a fresh layer with the cache's camera-frame parameters, move it by Th and project it with K: the filled
    silhouette matches the ray-traced mask, and the posed joints land on the annotated ones."""
    shutil.copytree(synthetic_capture, tmp_path / "root")
    cache = load_cache(tmp_path / "root", SUBJECT, progress=False)
    assert len(cache) == 10
    layer = smplx.create("open_hand", **smplx.PAPER_FRAME, dtype=torch.float64)
    with torch.no_grad():
        out = layer(betas=torch.tensor(cache.betas), global_orient=torch.tensor(cache.global_orient),
                    hand_pose=torch.tensor(cache.hand_pose))
    np.testing.assert_allclose(out.joints.numpy() + cache.Th[:, None], cache.joints_cam, atol=1e-4)  # dm
    for i in range(len(cache)):
        cam = out.vertices[i].numpy() + cache.Th[i]
        uv = cam @ cache.K[i].T
        silhouette = fill_triangles(uv[:, :2] / uv[:, 2:], layer.output_faces.numpy(), *cache.size[i]) > 0
        truth = _mask(synthetic_capture, str(cache.keys[i]).split("/", 1)[1])
        assert (silhouette & truth).sum() / (silhouette | truth).sum() > 0.99
        assert np.all(cache.box_min[i] <= out.vertices[i].numpy().min(0)) and np.all(
            cache.box_max[i] >= out.vertices[i].numpy().max(0))
        x, y, w, h = cache.bbox[i]  # a square box around the hand
        ys, xs = np.nonzero(truth)
        assert w == h and x <= xs.min() + 2 and y <= ys.min() + 2 and x + w >= xs.max() - 2 and y + h >= ys.max() - 2


def test_cache_is_reused_until_its_inputs_change(synthetic_capture, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(synthetic_capture, root, ignore=shutil.ignore_patterns("preprocess"))
    first = load_cache(root, SUBJECT, progress=False)
    path = cache_path(root, SUBJECT)
    stamp = path.stat().st_mtime_ns
    again = load_cache(root, SUBJECT, progress=False)
    assert path.stat().st_mtime_ns == stamp and again.fingerprint == first.fingerprint
    data = annotation_path(root, "test", "data")
    os.utime(data, ns=(stamp + 10 ** 9, stamp + 10 ** 9))
    rebuilt = load_cache(root, SUBJECT, progress=False)
    assert rebuilt.fingerprint != first.fingerprint and path.stat().st_mtime_ns != stamp
    np.testing.assert_array_equal(rebuilt.Th, first.Th)


def test_masks_from_the_projected_model_match_the_rendered_ones(synthetic_capture, tmp_path):
    root = tmp_path / "masks"
    shutil.copytree(synthetic_capture, root)
    subjects = [SUBJECT, Subject("test", 0, "ROM03_RT_No_Occlusion")]
    written, existing, rejected = make_masks(root, subjects, filtering=False, tree="masks_test", progress=False)
    assert (written, existing, sum(rejected.values())) == (14, 0, 0)
    for image in json.loads(annotation_path(root, "test", "data").read_text())["images"]:
        ours, truth = _mask(root, image["file_name"], "masks_test"), _mask(root, image["file_name"])
        assert (ours & truth).sum() / (ours | truth).sum() > 0.99
    tree_path(root, "images", "test", image["file_name"]).unlink()
    written, existing, rejected = make_masks(root, subjects, filtering=True, tree="masks_test", progress=False)
    assert (written, existing) == (0, 14)  # kept without --overwrite
    written, existing, rejected = make_masks(root, subjects, tree="masks_test", overwrite=True, progress=False)
    assert (written, existing, rejected) == (13, 0, Counter({"missing image": 1}))


def test_published_fill_rounds_and_counts_every_touched_pixel(synthetic_capture, tmp_path):
    """fill 'published': the vertices rounded to whole pixels, every pixel the outline touches inside. On a square
    from (10.3, 10.3) to (20.6, 20.6): published 12 x 12 pixels (rounded to 10..21, both ends in); coverage 10 x 10
    (the pixels at least half inside: centres 11..20). On a capture's mask the published one is fatter all round:
    measured 346 pixels more and 6 fewer (rounding moves a vertex inwards by up to half a pixel), a band 0.37 px wide
    along the outline (its length: the edge transitions along x and y, divided by 4 / pi)."""
    square = np.array([[10.3, 10.3], [20.6, 10.3], [20.6, 20.6], [10.3, 20.6]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    published = fill_triangles(square, faces, 32, 32, fill="published") > 0
    coverage = fill_triangles(square, faces, 32, 32) > 0
    assert published.sum() == 144 and published[10:22, 10:22].all()
    assert coverage.sum() == 100 and coverage[11:21, 11:21].all()
    with pytest.raises(ValueError, match="fill 'round'"):
        fill_triangles(square, faces, 32, 32, fill="round")
    root = tmp_path / "fill"
    shutil.copytree(synthetic_capture, root)
    for fill in ("coverage", "published"):
        make_masks(root, [SUBJECT], filtering=False, tree=f"masks_{fill}", progress=False, fill=fill)
    image = json.loads(annotation_path(root, "test", "data").read_text())["images"][0]
    ours, theirs = (_mask(root, image["file_name"], f"masks_{fill}") for fill in ("coverage", "published"))
    for fill in ("coverage", "published"):  # each PNG records its fill; the capture's ray-traced masks do not say
        assert mask_fill(tree_path(root, f"masks_{fill}", "test", image["file_name"], ".png")) == fill
    assert mask_fill(tree_path(root, "masks_removeblack", "test", image["file_name"], ".png")) is None
    length = ((ours ^ np.roll(ours, 1, 0)).sum() + (ours ^ np.roll(ours, 1, 1)).sum()) / (4 / np.pi)
    gained, lost = (theirs & ~ours).sum(), (ours & ~theirs).sum()
    assert lost <= 0.05 * gained and 0.2 < gained / length < 0.6


def test_remove_black_keeps_the_largest_mid_intensity_region():
    rgb = np.full((40, 60, 3), 100, np.uint8)
    rgb[:, 30:33] = 5  # a dark seam splits the mask in two
    rgb[5:8, 5:8] = 250  # a very bright spot inside the larger part: a hole, filled again by the contour
    mask = np.zeros((40, 60), np.uint8)
    mask[2:38, 2:50] = 255
    out = remove_black(mask, rgb)
    expected = np.zeros_like(mask)
    expected[2:38, 2:30] = 255
    np.testing.assert_array_equal(out, expected)


def test_square_box():
    np.testing.assert_allclose(square_box([10, 20, 30, 50], 334, 512), [0, 20, 49, 49])
    np.testing.assert_allclose(square_box([-10, 0, 40, 20], 100, 100), [0, -10, 39, 39])  # clipped first
