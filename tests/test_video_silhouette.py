"""The mask term of the video fit (segment.video.silhouette) against brute-force references and a closed form, and
the fit with it against a synthetic capture's true joints and its own silhouettes."""

from dataclasses import replace

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
from segment.video.prepare import MASK_FIT
from segment.video.silhouette import (edge_distance, mask_disagreement, mesh_edges, mesh_outline, sample_field,
                                      silhouette_target)
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
    field, frame = torch.tensor(edge_distance(half))[None].double(), torch.zeros(3, dtype=torch.int64)
    on_edge = torch.tensor([[2.5, 1.0], [2.5, 3.3], [2.5, 4.7]], dtype=torch.float64)
    torch.testing.assert_close(sample_field(field, frame, on_edge), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(sample_field(field, frame, on_edge + torch.tensor([1.2, 0.0])),
                               torch.full((3,), 1.2, dtype=torch.float64))


def test_sample_field_is_bilinear_interpolation_with_its_gradient():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(2, 7, 9))
    frame = torch.tensor(rng.integers(0, 2, size=11))
    xy = rng.uniform([0, 0], [8, 6], size=(11, 2))

    def bilinear(image, x, y):  # the textbook formula, one point at a time
        x0, y0 = min(int(x), image.shape[1] - 2), min(int(y), image.shape[0] - 2)
        fx, fy = x - x0, y - y0
        return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
                + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])

    expected = [bilinear(field[n], *p) for n, p in zip(frame.tolist(), xy)]
    ours = sample_field(torch.tensor(field), frame, torch.tensor(xy)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-12)  # float64
    plane = torch.tensor(0.5 * np.arange(9)[None, None, :] - 2.0 * np.arange(7)[None, :, None] + 3.0)  # (1, 7, 9)
    points = torch.tensor(xy, requires_grad=True)
    sample_field(plane, torch.zeros(11, dtype=torch.int64), points).sum().backward()
    np.testing.assert_allclose(points.grad.numpy(), np.broadcast_to([0.5, -2.0], (11, 2)), atol=1e-12)


def test_target_value_is_the_brute_force_distance_to_the_edge_in_a_crop():
    masks = [_blob_mask(), np.roll(_blob_mask(), (3, -4), axis=(0, 1))]
    target = silhouette_target(masks, margin=0.5)
    rng = np.random.default_rng(1)
    for k, mask in enumerate(masks):
        pixels = rng.integers(0, [31, 23], size=(40, 2)).astype(float)
        ours = target.value_at(torch.full((40,), k), torch.tensor(pixels)).numpy()
        box_lo, box_hi = target.origin[k].numpy(), target.origin[k].numpy() + np.array(target.edge.shape[:0:-1]) - 1
        inside_crop = np.all((pixels >= box_lo) & (pixels <= box_hi), axis=1)
        assert inside_crop.sum() > 20
        np.testing.assert_allclose(ours[inside_crop], np.clip(0.5 - _brute_edge(mask, pixels[inside_crop]), 0, 1),
                                   atol=1e-4)
        assert (ours[inside_crop] == 0).any() and (ours[inside_crop] == 1).any()


def _capture_fit(synthetic_capture, shift_index=(9.0, -6.0), shift_pinky=(-7.0, 6.0)):
    """A keypoint fit of the capture's 5 training frames of camera 400262 to their true joints moved as mediapipe moves
    them (a finger off by a few percent of the hand) plus noise; with what the tests need beside it."""
    joints, records, K = _true_joints(synthetic_capture, "400262")
    order = list(MEDIAPIPE_TO_MANO)
    true_uv = project(joints, K)[:, order]  # (5, 21, 2) px, mediapipe order
    rng = np.random.default_rng(3)
    uv = true_uv + rng.normal(scale=1.0, size=true_uv.shape)
    uv[:, 5:9] += np.array(shift_index)  # the index finger's landmarks shifted sideways
    uv[:, 17:21] += np.array(shift_pinky)  # and the pinky's
    world = joints[:, order] - joints[:, order].mean(1, keepdims=True)
    model = smplx.create("open_hand", seal=True, distal=True)
    common = dict(focal=K[0, 0], principal=(K[0, 2], K[1, 2]), offsets_mm=np.zeros((21, 3)), progress=False)
    fit = fit_hand(model, uv, world, np.ones((5, 21)), **common)
    faces = model.output_faces.numpy()

    def silhouettes(f):
        return [fill_triangles(p, faces, 334, 512) > 0 for p in project(f.vertices, K)]

    return fit, model, uv, world, common, records, K, true_uv, silhouettes


def test_the_mask_term_pulls_a_misplaced_finger_back_onto_the_image(synthetic_capture):
    """The fit with the true masks (prepare's settings) ends closer to the true joints than the fit without."""
    keypoint_fit, model, uv, world, common, records, K, true_uv, silhouettes = _capture_fit(synthetic_capture)
    masks = [cv2.imread(str(tree_path(synthetic_capture, "masks_removeblack", "test", r.file_name, ".png")),
                        cv2.IMREAD_GRAYSCALE) > 0 for r in records]
    refined = fit_hand(model, uv, world, np.ones((5, 21)), start=keypoint_fit, masks=silhouette_target(masks),
                       settings=MASK_FIT, **common)

    def errors(fit):
        return np.linalg.norm(project(fit.joints, K)[:, order] - true_uv, axis=-1)

    def iou(fit):
        return np.mean([mask_iou(a, b) for a, b in zip(silhouettes(fit), masks)])

    order = list(MEDIAPIPE_TO_MANO)
    before, after = np.median(errors(keypoint_fit)), np.median(errors(refined))
    assert after < 0.5 * before, (before, after)  # px; measured 4.3 -> 1.3 (2.3 with the earlier vertex terms)
    assert iou(refined) > 0.97, (iou(keypoint_fit), iou(refined))  # measured 0.854 -> 0.984 (0.954 earlier)


def test_the_mask_term_alone_keeps_a_hand_on_its_own_silhouette_and_brings_a_moved_one_back(synthetic_capture):
    """With the keypoint, prior and smoothness terms off, a fit whose masks are its own projections is where the mask
    term is least, and the same fit moved by 5 mm across the view comes back to it."""
    fit, model, uv, world, common, _, _, _, silhouettes = _capture_fit(synthetic_capture, (0.0, 0.0), (0.0, 0.0))
    masks = silhouettes(fit)
    alone = replace(MASK_FIT, w_2d=0.0, w_3d=0.0, w_pose=0.0, w_shape=0.0, w_smooth=0.0, steps=100, lr=3e-3)
    moved = fit_hand(model, uv, world, np.ones((5, 21)), settings=FitSettings(steps=0), **common,
                     start=replace(fit, transl=fit.transl + np.array([0.004, -0.003, 0.0])))

    def iou(f):
        return np.mean([mask_iou(a, b) for a, b in zip(silhouettes(f), masks)])

    assert iou(moved) < 0.85  # measured 0.82
    for start in (fit, moved):
        refined = fit_hand(model, uv, world, np.ones((5, 21)), start=start, masks=silhouette_target(masks),
                           settings=alone, **common)
        assert iou(refined) > 0.985, iou(refined)  # measured 0.992 from both; 0.977 and 0.980 with the old terms


def _octahedron(centre, half, angle=0.0):
    """A closed octahedron whose equator projects to a square of side 2 * half px (rotated by `angle` rad) about
    `centre`, both apexes onto its centre: (6, 2) projected vertices and (8, 3) outward-wound faces."""
    c, s = np.cos(angle), np.sin(angle)
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]]) @ np.array([[c, s], [-s, c]])
    uv = np.concatenate([square + centre, [centre, centre]])
    top = [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]
    bottom = [[1, 0, 5], [2, 1, 5], [3, 2, 5], [0, 3, 5]]
    return uv, np.array(bottom[:2] + top + bottom[2:])  # two sides listed first by their lower face


def test_mesh_edges_pair_each_edge_with_its_two_opposite_vertices_and_refuse_open_or_misoriented_meshes():
    _, faces = _octahedron(np.zeros(2), 1.0)
    mesh = mesh_edges(faces, ignored=[5])
    assert len(mesh.edges) == 12
    for (i, j), (p, q), counted in zip(mesh.edges.tolist(), mesh.third.tolist(), mesh.counted.tolist()):
        having = [set(f) for f in faces.tolist() if {i, j} <= set(f)]
        assert {p, q} == {(f - {i, j}).pop() for f in having}
        assert counted == (5 not in {i, j, p, q})  # the faces around vertex 5 are left out
    with pytest.raises(ValueError, match="not closed"):
        mesh_edges(faces[:-1])
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    with pytest.raises(ValueError, match="consistently oriented"):
        mesh_edges(flipped)


@pytest.mark.parametrize("angle", [0.0, 0.5])
def test_outline_points_cover_the_projected_outline_once_along_the_folding_edges(angle):
    uv, faces = _octahedron(np.array([40.3, 37.8]), 15.0, angle)
    mesh = mesh_edges(faces)
    points = mesh_outline(uv[None], faces, mesh)
    equator = {frozenset(e) for e in ([0, 1], [1, 2], [2, 3], [3, 0])}
    assert all(frozenset(mesh.edges[e].tolist()) in equator for e in points.edge.tolist())  # not the apexes' edges
    # the perimeter, whatever the square's direction (the grid, half-pixel cells here, counts the cells an edge
    # touches as inside, so the filled square is up to a quarter pixel wider on each side: 122.2 px when rotated)
    assert abs(points.length.sum().item() - 4 * 30.0) < 0.025 * 120
    per_edge = torch.zeros(len(mesh.edges), dtype=torch.float64).index_add(0, points.edge, points.length)
    assert ((per_edge - 30.0).abs()[per_edge > 0] < 1.5).all()  # each side once (its corners may go to a neighbour)


def test_outline_area_gradient_is_the_disagreement_areas_closed_form():
    """A square outline (the octahedron's equator) off a square mask by (tx, ty) px: the area in one and not the
    other is 2 (L^2 - (L - |tx|)(L - |ty|)), whose derivative in the translation is 2 sign(tx) (L - |ty|) in x."""
    side, tx, ty = 30.0, -1.3, 0.6
    mask = np.zeros((80, 80), bool)
    mask[20:50, 25:55] = True  # the square [24.5, 54.5] x [19.5, 49.5] px
    uv, faces = _octahedron(np.array([39.5 + tx, 34.5 + ty]), side / 2)
    mesh, target = mesh_edges(faces), silhouette_target([mask])
    vertices = torch.tensor(uv[None], requires_grad=True)
    surrogate, total = mask_disagreement(vertices, mesh, target, mesh_outline(uv[None], faces, mesh))
    assert surrogate.item() == 0.0
    surrogate.sum().backward()
    moved = vertices.grad[0].sum(0)  # moving every vertex together
    expected = torch.tensor([2 * np.sign(tx) * (side - abs(ty)), 2 * np.sign(ty) * (side - abs(tx))])
    torch.testing.assert_close(moved.float(), expected.float(), rtol=0.04, atol=0.0)
    # growing the square outwards: the two sides outside the mask add, the two inside take away: 0 in total
    assert abs(total.item()) < 0.04 * 4 * side
