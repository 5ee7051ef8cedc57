"""handavatar.data: crops, intrinsics, rays and patches, checked against the full-resolution frames and a brute-force
ray/box test."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from smplx.utils.cli import InputError
from handavatar.data import DataConfig, InterHandDataset
from handavatar.data.crop import crop_intrinsics, crop_transform, warp
from handavatar.data.rays import box_hit_mask, pixel_directions, ray_box_intersection
from segment.interhand import read_rgb, tree_path


@pytest.fixture(scope="module")
def root(synthetic_capture, tmp_path_factory):
    copy = tmp_path_factory.mktemp("dataset") / "capture"
    shutil.copytree(synthetic_capture, copy)
    return copy


@pytest.fixture(scope="module")
def config(root):
    return DataConfig(root=str(root), subject="test/Capture0/ROM04_RT_Occlusion", background="black")


def test_ray_box_intersection_matches_marching_along_the_rays():
    rng = np.random.default_rng(0)
    box_min, box_max = np.array([-1.0, -0.5, 4.0]), np.array([1.0, 0.7, 5.5])
    directions = np.column_stack([rng.uniform(-0.4, 0.4, (500, 2)), np.ones(500)])
    directions[:5, 0] = 0.0  # axis-parallel components
    origin = np.array([0.1, -0.2, 0.0])
    near, far, hit = ray_box_intersection(origin, directions, box_min, box_max)
    t = np.linspace(0, 10, 20001)
    points = origin + t[None, :, None] * directions[:, None]
    inside = np.all((points >= box_min) & (points <= box_max), axis=-1)
    assert np.array_equal(hit, inside.any(1)) and hit.sum() > 100 and (~hit).sum() > 100
    first = t[inside.argmax(1)]
    last = t[inside.shape[1] - 1 - inside[:, ::-1].argmax(1)]
    np.testing.assert_allclose(near[hit], first[hit], atol=1e-3)
    np.testing.assert_allclose(far[hit], last[hit], atol=1e-3)


def test_box_hit_mask_equals_the_per_ray_test():
    K = np.array([[400.0, 0, 60], [0, 380.0, 50], [0, 0, 1]])
    box_min, box_max = np.array([-0.3, -0.2, 3.0]), np.array([0.2, 0.4, 3.5])
    for origin in (np.zeros(3), np.array([0.1, -0.05, 0.2])):
        ys, xs = np.mgrid[0:100, 0:120]
        expected = ray_box_intersection(origin, pixel_directions(K, xs.astype(float), ys.astype(float)), box_min,
                                        box_max)[2]
        mask = box_hit_mask(K, origin, box_min, box_max, 120, 100)
        assert np.array_equal(mask, expected) and 0 < mask.sum() < mask.size


def test_crop_and_its_intrinsics_agree_on_where_a_joint_lands(config):
    """Projecting a 3D joint with the crop intrinsics K' lands where the crop transform takes its full-image
    projection, and the crop's pixel there is the full image's pixel at the joint."""
    dataset = InterHandDataset(replace(config, mode="image"))
    sample = dataset[3]
    cache = dataset.cache
    joints = cache.joints_cam[3]
    full = joints @ cache.K[3].T
    full = full[:, :2] / full[:, 2:]
    crop = joints @ sample["K"].astype(float).T
    crop = crop[:, :2] / crop[:, 2:]
    transform = crop_transform(cache.bbox[3], scale=1.3, size=256)
    np.testing.assert_allclose(crop, full @ transform[:, :2].T + transform[:, 2], atol=1e-3)
    x, y, w, h = cache.bbox[3]
    np.testing.assert_allclose((crop - 127.5) / 256, (full - [x + w / 2, y + h / 2]) / (1.3 * w), atol=1e-6)
    rgb = read_rgb(tree_path(config.root, "images", "test", sample["key"].split("/", 1)[1])).astype(float) / 255
    mask = sample["target_alpha"][0]
    for (u, v), (fu, fv) in zip(np.round(crop).astype(int), np.round(full).astype(int)):
        if mask[v, u] and 2 <= u < 254 and 2 <= v < 254:
            assert np.abs(sample["target_rgb"][0, v, u] - rgb[fv, fu]).max() < 0.25  # same surface, resampled


def test_rays_pass_through_the_joints_and_hand_pixels_hit_the_box(config):
    dataset = InterHandDataset(replace(config, mode="image"))
    for index in range(len(dataset)):
        sample = dataset[index]
        hand = sample["target_alpha"][0] > 0
        assert hand.sum() > 1000 and np.all(sample["ray_mask"][0][hand])
        assert np.all(sample["near"][0][hand] < sample["far"][0][hand])
        joints_cam = dataset.cache.joints_cam[index]
        uvw = joints_cam @ sample["K"].astype(float).T
        d = pixel_directions(sample["K"].astype(float), uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2])
        points = sample["rays_o"] + joints_cam[:, 2:] * d  # t = camera depth
        np.testing.assert_allclose(points, dataset.cache.joints[index], atol=1e-4)  # model frame
    np.testing.assert_array_equal(sample["pixels"][0, 5, 7], [7, 5])
    assert np.all(sample["target_rgb"][0][~hand] == 0)  # black background outside the hand


def test_patches_are_crops_of_the_image_and_sit_on_the_hand(config):
    image = InterHandDataset(replace(config, mode="image"))[2]
    torch.manual_seed(0)
    patches = InterHandDataset(replace(config, mode="patch", n_patches=4, patch_size=24,
                                       sample_subject_ratio=1.0))[2]
    assert patches["target_rgb"].shape == (4, 24, 24, 3) and patches["rays_d"].shape == (4, 24, 24, 3)
    x, y = patches["pixels"][..., 0], patches["pixels"][..., 1]
    np.testing.assert_array_equal(patches["target_rgb"], image["target_rgb"][0][y, x])
    np.testing.assert_array_equal(patches["target_alpha"], image["target_alpha"][0][y, x])
    np.testing.assert_allclose(patches["rays_d"], image["rays_d"][0][y, x])
    np.testing.assert_array_equal(patches["ray_mask"], image["ray_mask"][0][y, x])
    assert np.all(patches["target_alpha"][:, 12, 12] == 1)  # centred on the hand
    off = InterHandDataset(replace(config, mode="patch", n_patches=4, patch_size=24, sample_subject_ratio=0.0))[2]
    assert np.all(off["target_alpha"][:, 12, 12] == 0) and np.all(off["ray_mask"][:, 12, 12])


def test_random_background_fills_everything_off_the_hand(config):
    torch.manual_seed(1)
    sample = InterHandDataset(replace(config, mode="image", background="random"))[0]
    off = sample["target_alpha"][0] == 0
    np.testing.assert_allclose(sample["target_rgb"][0][off], np.broadcast_to(sample["bgcolor"], (off.sum(), 3)),
                               atol=1e-6)
    assert sample["bgcolor"].std() > 0


def test_published_targets_are_the_warped_composite(config):
    """target 'composite' (published): the crop of the masked image on the background, blended along the outline;
    'masked' (ours) equals it on the thresholded hand and is exactly the background off it. They differ only in a
    thin band just outside the thresholded hand."""
    from segment.interhand import MASK_TREE
    masked, composite = (InterHandDataset(replace(config, mode="image", target=t)) for t in ("masked", "composite"))
    a, b = masked[0], composite[0]
    hand = a["target_alpha"][0] > 0
    np.testing.assert_array_equal(a["target_rgb"][0][hand], b["target_rgb"][0][hand])
    assert np.all(a["target_rgb"][0][~hand] == 0) and b["target_rgb"][0][~hand].max() > 0.05
    split, file_name = str(composite.cache.keys[0]).split("/", 1)
    rgb = read_rgb(tree_path(config.root, "images", split, file_name))
    mask = read_rgb(tree_path(config.root, MASK_TREE, split, file_name, ".png"))[..., 0]
    alpha = (mask > 127)[..., None]
    transform = crop_transform(composite.cache.bbox[0], scale=config.crop_scale, size=config.resolution)
    by_hand = warp(alpha * (rgb / 255.0).astype(np.float32), transform, config.resolution, border=np.zeros(3))
    np.testing.assert_allclose(b["target_rgb"][0], by_hand, atol=1e-6)
    differs = np.abs(a["target_rgb"][0] - b["target_rgb"][0]).max(-1) > 0
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(hand[None, None].astype(np.float32)), 5, 1, 2)[0, 0]
    assert differs.any() and not (differs & ~grown.numpy().astype(bool)).any()  # within 2 px of the hand
    with pytest.raises(ValueError, match="target 'raw'"):
        InterHandDataset(replace(config, target="raw"))


def test_a_subject_trains_on_every_camera_unless_one_is_named(config):
    """As the published loader (a substring match of '<CaptureN>/<SEQ>/' on the file names): a subject without a
    camera takes every annotated image of the sequence from all cameras; '/cam<id>' restricts it to one."""
    import json
    from segment.interhand import annotation_path
    images = json.loads(annotation_path(config.root, "test", "data").read_text())["images"]
    wanted = {(i["camera"], i["frame_idx"]) for i in images if i["seq_name"] == "ROM04_RT_Occlusion"}
    cameras = sorted({c for c, _ in wanted})
    assert len(cameras) == 2
    every = InterHandDataset(replace(config, mode="image")).cache
    assert {(str(c), int(f)) for c, f in zip(every.camera, every.frame_idx)} == wanted
    one = InterHandDataset(replace(config, mode="image", subject=f"{config.subject}/cam{cameras[0]}")).cache
    assert {str(c) for c in one.camera} == {cameras[0]} and len(one.camera) == len(wanted) // 2


def test_each_sample_carries_its_cameras_world_rotation(config):
    """'world_rotation' (which places the learned lights) is the camera.json camrot of the sample's camera: the
    test capture's two cameras are turned differently."""
    import json
    from segment.interhand import annotation_path
    camrot = json.loads(annotation_path(config.root, "test", "camera").read_text())["0"]["camrot"]
    dataset = InterHandDataset(replace(config, mode="image"))
    seen = set()
    for i in range(len(dataset)):
        camera = str(dataset.cache.camera[i])
        np.testing.assert_allclose(dataset[i]["world_rotation"], np.array(camrot[camera]), atol=1e-6)
        seen.add(camera)
    assert len(seen) == 2 and not np.allclose(*(np.array(camrot[c]) for c in sorted(seen)))


def test_loader_with_workers_and_distributed_sampler(config):
    dataset = InterHandDataset(config)
    shards = [list(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(len(dataset)))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, sampler=DistributedSampler(
        dataset, num_replicas=2, rank=1, shuffle=True, seed=0))
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == len(shards[1])
    assert batches[0]["rays_d"].shape == (2, 2, 32, 32, 3) and batches[0]["rays_d"].dtype == torch.float32


def test_a_frame_that_breaks_after_caching_is_skipped(config, root, tmp_path, caplog):
    copy = tmp_path / "broken"
    shutil.copytree(root, copy)
    dataset = InterHandDataset(replace(config, root=str(copy)))
    tree_path(copy, "images", "test", str(dataset.cache.keys[1]).split("/", 1)[1]).unlink()
    sample = dataset[1]
    assert sample["index"] == 2 and "missing image" in caplog.text
    for key in dataset.cache.keys:  # none left: a user error naming the subject, not a crash
        tree_path(copy, "images", "test", str(key).split("/", 1)[1]).unlink(missing_ok=True)
    with pytest.raises(InputError, match="no frame of test/Capture0/ROM04_RT_Occlusion could be read"):
        dataset[0]


def test_bad_settings_are_named(config):
    with pytest.raises(ValueError, match="data mode 'rays' is not"):
        InterHandDataset(replace(config, mode="rays"))
    with pytest.raises(ValueError, match="no frames left after skip=1, max_frames=0"):
        InterHandDataset(replace(config, max_frames=0))
    assert len(InterHandDataset(replace(config, skip=3))) == 4  # frames 0, 3, 6, 9 of 10
    warped = warp(np.ones((10, 10), np.float32), crop_transform([0, 0, 10, 10], size=20), 20)
    assert warped.shape == (20, 20) and warped[10, 10] == 1 and warped[0, 0] == 0
    np.testing.assert_allclose(crop_intrinsics(np.eye(3), np.array([[2.0, 0, 1], [0, 2, 3]]))[:2, 2], [1, 3])
