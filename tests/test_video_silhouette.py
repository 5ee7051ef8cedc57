"""The mask terms of the video fit (segment.video.silhouette) against brute-force references, and the fit with them
against a synthetic capture's true joints."""

import cv2
import numpy as np
import pytest
import torch

import smplx
from segment.interhand import project, tree_path
from segment.masks import fill_triangles
from segment.video.correspondence import MEDIAPIPE_TO_MANO
from segment.video.fit import FitSettings, fit_hand
from segment.video.metrics import mask_iou
from segment.video.silhouette import (edge_distance, outline_distances, outline_points, pad_indices, sample_field,
                                      silhouette_target, silhouette_vertices)
from tests.test_video_fit import _true_joints


def _blob_mask(height=23, width=31, seed=0):
    """A mask of two overlapping ellipses and a hole, (H, W) bool."""
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (12, 11), (8, 6), 30, 0, 360, 1, -1)
    cv2.ellipse(mask, (20, 14), (6, 4), -20, 0, 360, 1, -1)
    mask[11, 12] = 0
    return mask > 0


def _brute_edge(mask, points):
    """(P,) signed distance of each (x, y) point to the mask's edge: to the nearest pixel centre of the other side
    less half a pixel, positive outside (points on pixel centres)."""
    height, width = mask.shape
    centre = np.clip(np.round(points).astype(int), 0, [width - 1, height - 1])
    inside = mask[centre[:, 1], centre[:, 0]]
    result = np.empty(len(points))
    for side in (True, False):
        ys, xs = np.nonzero(mask != side)
        others = np.stack([xs, ys], 1).astype(float)
        chosen = inside == side
        d = np.linalg.norm(points[chosen][:, None] - others[None], axis=-1).min(1) - 0.5
        result[chosen] = -d if side else d
    return result


def test_edge_distance_is_the_brute_force_signed_distance_and_zero_on_a_straight_edge():
    mask = _blob_mask()
    height, width = mask.shape
    pixels = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1).reshape(-1, 2).astype(float)
    expected = _brute_edge(mask, pixels).reshape(height, width)
    np.testing.assert_allclose(edge_distance(mask), expected, atol=1e-4)  # float32 output of an exact transform
    assert not edge_distance(np.zeros((4, 5), bool)).any()
    half = np.zeros((6, 8), bool)
    half[:, :3] = True  # the edge is the line x = 2.5
    field = torch.tensor(edge_distance(half))[None].double()
    on_edge = torch.tensor([[[2.5, 1.0], [2.5, 3.3], [2.5, 4.7]]], dtype=torch.float64)
    torch.testing.assert_close(sample_field(field, on_edge), torch.zeros(1, 3, dtype=torch.float64))
    torch.testing.assert_close(sample_field(field, on_edge + torch.tensor([1.2, 0.0])),
                               torch.full((1, 3), 1.2, dtype=torch.float64))


def test_sample_field_is_bilinear_interpolation_with_its_gradient():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(2, 7, 9))
    uv = rng.uniform([0, 0], [8, 6], size=(2, 11, 2))

    def bilinear(image, x, y):  # the textbook formula, one point at a time
        x0, y0 = min(int(x), image.shape[1] - 2), min(int(y), image.shape[0] - 2)
        fx, fy = x - x0, y - y0
        return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
                + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])

    expected = [[bilinear(field[n], *uv[n, p]) for p in range(11)] for n in range(2)]
    ours = sample_field(torch.tensor(field), torch.tensor(uv)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-12)  # float64
    plane = torch.tensor(0.5 * np.arange(9)[None, None, :] - 2.0 * np.arange(7)[None, :, None] + 3.0)  # (1, 7, 9)
    points = torch.tensor(uv[:1], requires_grad=True)
    sample_field(plane, points).sum().backward()
    np.testing.assert_allclose(points.grad.numpy(), np.broadcast_to([0.5, -2.0], (1, 11, 2)), atol=1e-12)


def test_target_outside_penalty_matches_brute_force_distance_in_a_crop():
    masks = [_blob_mask(), np.roll(_blob_mask(), (3, -4), axis=(0, 1))]
    target = silhouette_target(masks, margin=0.5)
    rng = np.random.default_rng(1)
    for k, mask in enumerate(masks):
        pixels = rng.integers(0, [31, 23], size=(40, 2)).astype(float)
        ours = target.outside_at(torch.tensor(pixels)[None].expand(2, -1, -1))[k].numpy()
        box_lo, box_hi = target.origin[k].numpy(), target.origin[k].numpy() + np.array(target.edge.shape[:0:-1]) - 1
        inside_crop = np.all((pixels >= box_lo) & (pixels <= box_hi), axis=1)
        assert inside_crop.sum() > 20
        np.testing.assert_allclose(ours[inside_crop], np.maximum(_brute_edge(mask, pixels[inside_crop]), 0), atol=1e-4)
        assert (ours[inside_crop] > 0).any() and (ours[inside_crop] == 0).any()


def test_outline_points_lie_on_the_mask_border_and_silhouette_vertices_on_a_grids_border():
    mask = _blob_mask()
    points = outline_points(mask, 1000)
    sides = {(x + 0.5, float(y)) for y, x in zip(*np.nonzero(mask[:, :-1] != mask[:, 1:]))}
    sides |= {(float(x), y + 0.5) for y, x in zip(*np.nonzero(mask[:-1] != mask[1:]))}
    assert sorted(map(tuple, points)) == sorted(sides)  # every side between a mask pixel and another, once
    assert len(outline_points(mask, 10)) == 10
    border = np.zeros((5, 6), bool)
    border[:3, :2] = True  # a corner of the image: its sides on the image border are not edges
    assert sorted(map(tuple, outline_points(border, 100))) == [(0.0, 2.5), (1.0, 2.5), (1.5, 0.0), (1.5, 1.0),
                                                               (1.5, 2.0)]
    # a 6 x 5 grid of vertices, 6 px apart, two triangles per cell: the outline vertices are its border
    xs, ys = np.meshgrid(np.arange(6), np.arange(5))
    uv = np.stack([10 + 6 * xs, 8 + 6 * ys], -1).reshape(-1, 2).astype(float)
    faces = []
    for y in range(4):
        for x in range(5):
            a = 6 * y + x
            faces += [(a, a + 1, a + 7), (a, a + 7, a + 6)]
    border = np.flatnonzero((xs == 0) | (xs == 5) | (ys == 0) | (ys == 4))
    np.testing.assert_array_equal(silhouette_vertices(uv, np.array(faces), 60, 50), border)


def test_outline_distances_match_a_nearest_neighbour_loop():
    rng = np.random.default_rng(2)
    uv = torch.tensor(rng.uniform(0, 50, size=(3, 30, 2)), requires_grad=True)
    rows = [rng.choice(30, size=s, replace=False) for s in (5, 12, 1)]
    index, valid = pad_indices(rows)
    outline = torch.tensor(rng.uniform(0, 50, size=(3, 8, 2)))
    outline_valid = torch.ones(3, 8, dtype=torch.bool)
    outline_valid[1, 6:] = False
    squared, nearest = outline_distances(outline, outline_valid, uv, index, valid)
    for n, row in enumerate(rows):
        for p in range(8):
            d2 = ((uv[n, row].detach() - outline[n, p]) ** 2).sum(-1)
            if outline_valid[n, p]:
                assert nearest[n, p] == row[int(d2.argmin())] and squared[n, p].item() == pytest.approx(d2.min().item())
            else:
                assert squared[n, p] == 0
    squared.sum().backward()  # d/d(uv) of |uv - outline|^2 at the matched vertices only
    expected = torch.zeros_like(uv)
    for n in range(3):
        for p in range(8):
            if outline_valid[n, p]:
                expected[n, nearest[n, p]] += 2 * (uv[n, nearest[n, p]].detach() - outline[n, p])
    torch.testing.assert_close(uv.grad, expected)


def test_the_mask_terms_pull_a_misplaced_finger_back_onto_the_image(synthetic_capture):
    """Keypoints of a capture moved as mediapipe moves them (a finger off by a few percent of the hand) plus noise:
    the fit with the true masks ends closer to the true joints than the fit without."""
    joints, records, K = _true_joints(synthetic_capture, "400262")
    order = list(MEDIAPIPE_TO_MANO)
    true_uv = project(joints, K)[:, order]  # (5, 21, 2) px, mediapipe order
    rng = np.random.default_rng(3)
    uv = true_uv + rng.normal(scale=1.0, size=true_uv.shape)
    uv[:, 5:9] += np.array([9.0, -6.0])  # the index finger's landmarks shifted sideways
    uv[:, 17:21] += np.array([-7.0, 6.0])  # and the pinky's
    world = joints[:, order] - joints[:, order].mean(1, keepdims=True)
    model = smplx.create("open_hand", seal=True, distal=True)
    common = dict(focal=K[0, 0], principal=(K[0, 2], K[1, 2]), offsets_mm=np.zeros((21, 3)), progress=False)
    keypoint_fit = fit_hand(model, uv, world, np.ones((5, 21)), **common)
    masks = [cv2.imread(str(tree_path(synthetic_capture, "masks_removeblack", "test", r.file_name, ".png")),
                        cv2.IMREAD_GRAYSCALE) > 0 for r in records]
    refined = fit_hand(model, uv, world, np.ones((5, 21)), start=keypoint_fit, masks=silhouette_target(masks),
                       settings=FitSettings(steps=150), **common)

    def errors(fit):
        return np.linalg.norm(project(fit.joints, K)[:, order] - true_uv, axis=-1)

    def iou(fit):
        pixels = project(fit.vertices, K)
        return np.mean([mask_iou(fill_triangles(p, model.output_faces.numpy(), 334, 512) > 0, m)
                        for p, m in zip(pixels, masks)])

    before, after = np.median(errors(keypoint_fit)), np.median(errors(refined))
    assert after < 0.7 * before, (before, after)  # px; measured 4.3 -> 2.3
    assert iou(refined) > iou(keypoint_fit) + 0.03, (iou(keypoint_fit), iou(refined))  # measured 0.854 -> 0.954
