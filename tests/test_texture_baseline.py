"""The textured-mesh baseline: its per-vertex colours against a brute-force loop (vertex by vertex, frame by frame,
Möller-Trumbore against every triangle in float64 instead of Embree), its renders against closed forms (a constant
colour, a colour linear in position) and a point-in-triangle rasteriser, and its cached report."""

import json
import shutil

import numpy as np
import pytest

from smplx.utils.config import load_config
from handavatar.baseline import (VertexColours, fit_vertex_colours, hand_layer, pose_meshes, render_vertex_colours,
                                 texture_baseline, training_crops)
from handavatar.baseline.texture import VISIBILITY_TOLERANCE
from handavatar.lpips import load_lpips
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.validate import evaluation_dataset

AMBIGUOUS = 1e-5  # relative distance / normal product within which float32 Embree and float64 loops may disagree


def _config(root, *overrides):
    return load_config(AvatarConfig, [DEFAULTS], [
        f"data.root={root}", "smpl_cfg.model_path=open_hand", "smpl_cfg.levels=0", "smpl_cfg.lbs_weights=",
        "data.resolution=64", "data.eval_skip=1", *overrides])


@pytest.fixture(scope="module")
def capture(synthetic_capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline") / "capture"
    shutil.copytree(synthetic_capture, root)  # the datasets write their annotation caches into it
    config = _config(root)
    layer = hand_layer(root, "open_hand", hand="right", levels=0)
    return config, layer, layer.output_faces.numpy()


def _first_hit(origin, direction, corners):
    """Smallest t > 0 where origin + t direction meets one of (F, 3, 3) triangles (Möller-Trumbore), or inf."""
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    p = np.cross(direction, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-15
    inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
    s = origin - corners[:, 0]
    u = (s * p).sum(1) * inv
    q = np.cross(s, e1)
    v = (q * direction).sum(1) * inv
    t = (q * e2).sum(1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return t[hit].min() if hit.any() else np.inf


def _slow_colours(vertices, faces, Th, K, image, mask):
    """Per vertex: (colour or None, ambiguous) by the baseline's definition, written out one vertex at a time."""
    corners = vertices[faces]
    normals = np.zeros_like(vertices)
    for face, (a, b, c) in zip(faces, corners):
        normals[face] += np.cross(b - a, c - a)  # area-weighted
    centre = -np.asarray(Th, float)
    h, w = mask.shape
    out = []
    for v, n in zip(vertices, normals):
        cam = v + Th
        x, y = K[0, 0] * cam[0] / cam[2] + K[0, 2], K[1, 1] * cam[1] / cam[2] + K[1, 2]
        facing = float(np.dot(centre - v, n) / np.linalg.norm(n) / np.linalg.norm(centre - v))
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1) or facing <= 0:
            out.append((None, abs(facing) < AMBIGUOUS))
            continue
        i, j = min(int(np.floor(x)), w - 2), min(int(np.floor(y)), h - 2)
        if not (mask[j, i] and mask[j, i + 1] and mask[j + 1, i] and mask[j + 1, i + 1]):
            out.append((None, False))
            continue
        t = _first_hit(centre, v - centre, corners)
        threshold = 1 - VISIBILITY_TOLERANCE / np.linalg.norm(v - centre)
        if t < threshold:
            out.append((None, abs(t - threshold) < AMBIGUOUS))
            continue
        fx, fy = x - i, y - j
        colour = ((1 - fx) * (1 - fy) * image[j, i] + fx * (1 - fy) * image[j, i + 1]
                  + (1 - fx) * fy * image[j + 1, i] + fx * fy * image[j + 1, i + 1])
        out.append((colour, abs(facing) < AMBIGUOUS or abs(t - threshold) < AMBIGUOUS))
    return out


def test_vertex_colours_match_a_brute_force_loop(capture):
    config, layer, faces = capture
    dataset = training_crops(config)
    fast = fit_vertex_colours(layer, dataset, progress=False)
    total, count = np.zeros_like(fast.total), np.zeros_like(fast.count)
    ambiguous = np.zeros(len(fast.count), bool)
    for index in range(len(dataset)):
        sample = dataset[index]
        vertices = pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None],
                               sample["betas"][None])[0]
        for v, (colour, unsure) in enumerate(_slow_colours(vertices, faces, sample["Th"].astype(float),
                                                           sample["K"].astype(float), sample["target_rgb"][0],
                                                           sample["target_alpha"][0] > 0)):
            ambiguous[v] |= unsure
            if colour is not None:
                total[v] += colour
                count[v] += 1
    sure = ~ambiguous
    assert len(dataset) == 10 and count.sum() > 1000 and sure.mean() > 0.95, (count.sum(), sure.mean())
    np.testing.assert_array_equal(fast.count[sure], count[sure])
    np.testing.assert_allclose(fast.total[sure], total[sure], rtol=0, atol=1e-5)  # float32 crops, K and Th


def test_unseen_vertices_take_their_neighbours_colour():
    faces = np.array([[0, 1, 2], [1, 3, 2], [3, 4, 2]])
    colours = VertexColours(total=np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]),
                            count=np.array([1, 0, 0, 0, 0]))
    # ring 1: vertices 1 and 2 touch 0; ring 2: 3 and 4 touch 1 and 2
    np.testing.assert_array_equal(colours.filled(faces), np.tile([1.0, 0, 0], (5, 1)))
    colours.total[3], colours.count[3] = [0, 0, 1.0], 1
    filled = colours.filled(faces)
    np.testing.assert_allclose(filled[1], [0.5, 0, 0.5])  # 1 touches 0 and 3
    np.testing.assert_allclose(filled[4], [0, 0, 1.0])  # 4 touches 3 (and 2, which is only filled in this ring)
    island = np.concatenate([faces, [[5, 6, 7]]])  # a triangle no seen vertex connects to: the mean of the seen
    colours = VertexColours(total=np.concatenate([colours.total, np.zeros((3, 3))]),
                            count=np.concatenate([colours.count, [0, 0, 0]]))
    np.testing.assert_allclose(colours.filled(island)[5:], np.tile([0.5, 0, 0.5], (3, 1)))
    with pytest.raises(ValueError, match="no training frame"):
        VertexColours.empty(5).filled(faces)


def _inside_any_triangle(xy, depth, faces, px):
    """(P,) +1 / -1 / 0: the pixel centre lies inside some projected triangle in front of the camera by more than
    1e-3 px, outside all of them by more than that, or too close to an edge to tell."""
    result = -np.ones(len(px), int)
    for a, b, c in faces:
        if min(depth[a], depth[b], depth[c]) <= 0:
            continue
        tri = xy[[a, b, c]]
        low, high = tri.min(0) - 1, tri.max(0) + 1
        near = np.flatnonzero((px[:, 0] >= low[0]) & (px[:, 0] <= high[0]) & (px[:, 1] >= low[1])
                              & (px[:, 1] <= high[1]))
        if not len(near):
            continue
        edges = []
        for p, q in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            d = q - p
            edges.append((d[0] * (px[near, 1] - p[1]) - d[1] * (px[near, 0] - p[0])) / np.linalg.norm(d))
        (ux, uy), (vx, vy) = tri[1] - tri[0], tri[2] - tri[0]
        edges = np.stack(edges, 1) * np.sign(ux * vy - uy * vx)  # orientation of the projected triangle
        result[near[(edges > 1e-3).all(1)]] = 1
        unsure = near[(edges > -1e-3).all(1) & ~(edges > 1e-3).all(1) & (result[near] != 1)]
        result[unsure] = 0
    return result


def test_renders_of_constant_and_linear_colours_are_exact(capture):
    config, layer, faces = capture
    sample = evaluation_dataset(config)[0]
    vertices = pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None], sample["betas"][None])[0]
    origin, K, size = sample["rays_o"].astype(float), sample["K"].astype(float), config.data.resolution
    background = np.array([0.2, 0.4, 0.6])
    constant = np.array([0.9, 0.5, 0.1])
    for supersample in (1, 3):
        shot = render_vertex_colours(vertices, faces, np.tile(constant, (len(vertices), 1)), origin, K, size,
                                     background, supersample=supersample)
        expected = shot.alpha[..., None] * constant + (1 - shot.alpha[..., None]) * background
        np.testing.assert_allclose(shot.rgb, expected, rtol=0, atol=1e-12)  # float64 barycentrics sum to 1
        assert set(np.unique(shot.alpha * supersample ** 2)) <= set(range(supersample ** 2 + 1))
    # one ray per pixel: covered exactly where a pixel centre lies inside a projected triangle
    px = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2).astype(float)
    cam = vertices - origin
    xy = cam[:, :2] / cam[:, 2:] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]
    inside = _inside_any_triangle(xy, cam[:, 2], faces, px).reshape(size, size)
    shot = render_vertex_colours(vertices, faces, np.zeros((len(vertices), 3)), origin, K, size, background)
    assert (inside == 1).sum() > 200
    np.testing.assert_array_equal(shot.alpha[inside != 0], (inside[inside != 0] == 1).astype(float))
    # a colour linear in position is interpolated exactly: the hit point is origin + depth x direction
    A, b = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6], [-0.1, 0.2, 0.3]]), np.array([0.5, 0.5, 0.5])
    shot = render_vertex_colours(vertices, faces, vertices @ A + b, origin, K, size, background)
    hit = shot.alpha > 0
    directions = np.stack([(px[:, 0] - K[0, 2]) / K[0, 0], (px[:, 1] - K[1, 2]) / K[1, 1],
                           np.ones(len(px))], -1).reshape(size, size, 3)
    points = origin + shot.depth[..., None] * directions
    np.testing.assert_allclose(shot.rgb[hit], points[hit] @ A + b, rtol=0, atol=1e-5)  # Embree's float32 t


def test_report_is_written_once_and_read_back(capture, tmp_path, monkeypatch):
    config = capture[0]
    lpips = load_lpips("", "")
    dataset = evaluation_dataset(config)
    summary = texture_baseline(config, dataset, lpips, tmp_path, supersample=1, progress=False)
    assert summary["frames"] == len(dataset) == 4 and summary["train_frames"] == 10
    assert 10 < summary["psnr"] < 60 and 0 < summary["lpips"] < 1 and summary["vertices_seen"] > 0.5
    assert json.loads((tmp_path / "summary.json").read_text())["psnr"] == summary["psnr"]
    assert (tmp_path / "frames.png").is_file() and (tmp_path / "colours.npz").is_file()
    def refuse(*args, **kwargs):
        raise RuntimeError("computed again")

    monkeypatch.setattr("handavatar.baseline.evaluate.hand_layer", refuse)
    assert texture_baseline(config, dataset, lpips, tmp_path, supersample=1, progress=False) == summary
    with pytest.raises(RuntimeError, match="computed again"):  # other settings: not read back
        texture_baseline(config, dataset, lpips, tmp_path, supersample=2, progress=False)


def test_comparison_strip_rows_are_truth_baseline_avatar(capture, tmp_path):
    """`comparison_strip`: one row per chosen frame (spread evenly, first and last included), truth | the baseline's
    render from its colours.npz | the avatar's rgb; the avatar here is a stand-in that draws a constant 0.25."""
    from PIL import Image
    import torch
    from handavatar.baseline.evaluate import posed_vertices
    from handavatar.baseline.strip import comparison_strip, strip_frames

    class Constant:
        def eval(self):
            return self

        def render(self, sample, chunk):
            return {"rgb": torch.full((1, *sample["target_rgb"].shape[1:3], 3), 0.25)}

    config, layer, _ = capture
    dataset = evaluation_dataset(config)
    texture_baseline(config, dataset, load_lpips("", ""), tmp_path, supersample=1, progress=False)
    assert strip_frames(4, 2) == [0, 3] and strip_frames(3, 5) == [0, 1, 2] and strip_frames(9, 3) == [0, 4, 8]
    out = comparison_strip(config, Constant(), dataset, tmp_path / "colours.npz", tmp_path / "strip.png", frames=2,
                           supersample=1)
    strip = np.asarray(Image.open(out)).astype(float) / 255
    size = config.data.resolution
    assert strip.shape == (2 * size, 3 * size, 3)
    table = np.load(tmp_path / "colours.npz")
    for row, index in enumerate([0, 3]):
        sample = dataset[index]
        tiles = strip[row * size:(row + 1) * size]
        baseline = render_vertex_colours(posed_vertices(layer, sample), table["faces"], table["colours"], sample["rays_o"],
                                         sample["K"], size, sample["bgcolor"], supersample=1).rgb
        np.testing.assert_allclose(tiles[:, :size], sample["target_rgb"][0], atol=0.5 / 255 + 1e-6)  # 8-bit PNG
        np.testing.assert_allclose(tiles[:, size:2 * size], np.clip(baseline, 0, 1), atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(tiles[:, 2 * size:], 64 / 255)
    with pytest.raises(FileNotFoundError, match="run the texture baseline first"):
        comparison_strip(config, Constant(), dataset, tmp_path / "none.npz", tmp_path / "x.png")
