import numpy as np
import pytest
import torch

import smplx.mesh_losses
from smplx.mesh_losses import (face_adjacency, faces_to_all_points_sq, laplacian_smoothing, mesh_to_points_sq,
                               normal_consistency, point_triangle_distance_sq, points_to_all_faces_sq,
                               points_to_mesh_sq, uniform_laplacian)


def _segment_distance_sq(p, a, b):
    t = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    return np.sum((p - a - t * (b - a)) ** 2)


def _slow_point_triangle(p, a, b, c):
    """Independent reference: the plane projection if it falls inside the triangle, else the nearest edge."""
    n = np.cross(b - a, c - a)
    n = n / np.linalg.norm(n)
    q = p - ((p - a) @ n) * n
    inside = all(np.cross(v1 - v0, q - v0) @ n >= 0 for v0, v1 in ((a, b), (b, c), (c, a)))
    if inside:
        return ((p - a) @ n) ** 2
    return min(_segment_distance_sq(p, a, b), _segment_distance_sq(p, b, c), _segment_distance_sq(p, c, a))


def test_point_triangle_distance_matches_reference():
    rng = np.random.default_rng(0)
    tris = rng.normal(size=(400, 3, 3))
    points = rng.normal(scale=2.0, size=(400, 3))
    points[:50] = tris[:50].mean(1) + 0.01 * rng.normal(size=(50, 3))  # near the face interior
    points[50:80] = tris[50:80, 0] + 1e-3 * rng.normal(size=(30, 3))  # near a corner
    fast = point_triangle_distance_sq(torch.from_numpy(points), torch.from_numpy(tris)).numpy()
    slow = np.array([_slow_point_triangle(p, *t) for p, t in zip(points, tris)])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)  # float64, different formulas


def test_point_triangle_distance_closed_form_and_gradient():
    tri = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    points = torch.tensor([[0.2, 0.2, 0.5], [2.0, 0.0, 0.0], [-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]],
                          dtype=torch.float64, requires_grad=True)
    d = point_triangle_distance_sq(points, tri.expand(4, 3, 3))
    torch.testing.assert_close(d, torch.tensor([0.25, 1.0, 2.0, 0.5], dtype=torch.float64))
    (grad,) = torch.autograd.grad(d[0], points)
    torch.testing.assert_close(grad[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # d/dz z^2 at z=0.5


def test_mesh_distances_with_all_candidates_are_brute_force():
    rng = np.random.default_rng(1)
    verts = torch.from_numpy(rng.normal(size=(2, 30, 3)))
    faces = torch.from_numpy(rng.integers(0, 30, size=(40, 3)))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    points = torch.from_numpy(rng.normal(size=(2, 25, 3)))
    got = points_to_mesh_sq(points, verts, faces, torch.arange(len(faces)).expand(25, -1))
    brute = torch.stack([torch.stack([min(point_triangle_distance_sq(points[b, p], verts[b, f]) for f in faces)
                                      for p in range(25)]) for b in range(2)])
    torch.testing.assert_close(got, brute, rtol=0, atol=0)
    back = mesh_to_points_sq(verts, faces, points, torch.arange(25).expand(len(faces), -1))
    brute_back = torch.stack([torch.stack([min(point_triangle_distance_sq(points[b, p], verts[b, f])
                                                for p in range(25)) for f in faces]) for b in range(2)])
    torch.testing.assert_close(back, brute_back, rtol=0, atol=0)


@pytest.mark.parametrize("pairs_per_chunk", [7, 1 << 22])
def test_all_faces_distances_equal_the_full_minimum_values_and_gradients(monkeypatch, pairs_per_chunk):
    """points_to_all_faces_sq / faces_to_all_points_sq (the nearest searched without gradients, a few rows at a time)
    against the minimum over every candidate at once: the same values, and the same gradients (torch's min routes
    them to its argmin, as the gather does). 7 pairs per chunk: one row at a time."""
    monkeypatch.setattr(smplx.mesh_losses, "_PAIRS_PER_CHUNK", pairs_per_chunk)
    rng = np.random.default_rng(2)
    faces = torch.from_numpy(rng.integers(0, 30, size=(40, 3)))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    for forward, full in (
            (lambda p, v: points_to_all_faces_sq(p, v, faces),
             lambda p, v: points_to_mesh_sq(p, v, faces, torch.arange(len(faces)).expand(25, -1))),
            (lambda p, v: faces_to_all_points_sq(v, faces, p),
             lambda p, v: mesh_to_points_sq(v, faces, p, torch.arange(25).expand(len(faces), -1)))):
        results = []
        for fn in (forward, full):
            verts = torch.from_numpy(rng.normal(size=(2, 30, 3))) if not results else results[0][2]
            points = torch.from_numpy(rng.normal(size=(2, 25, 3))) if not results else results[0][3]
            v, p = verts.clone().requires_grad_(), points.clone().requires_grad_()
            d = fn(p, v)
            weights = torch.linspace(0.5, 1.5, d.numel(), dtype=d.dtype).reshape(d.shape)
            grads = torch.autograd.grad((d * weights).sum(), (p, v))
            results.append((d.detach(), grads, verts, points))
        (d_fast, g_fast, _, _), (d_full, g_full, _, _) = results
        torch.testing.assert_close(d_fast, d_full, rtol=0, atol=0)  # float64, the same formula on the same pair
        for fast, slow in zip(g_fast, g_full):
            torch.testing.assert_close(fast, slow, rtol=0, atol=1e-15)  # accumulation order only


def test_laplacian_matches_neighbour_means(tube_data):
    faces = torch.from_numpy(tube_data.faces)
    verts = torch.from_numpy(tube_data.v_template)[None].repeat(2, 1, 1)
    verts[1] += 0.001 * torch.randn(verts.shape[1:], generator=torch.Generator().manual_seed(0), dtype=verts.dtype)
    lap = uniform_laplacian(faces, tube_data.num_vertices + 1)  # one unused vertex: a zero row
    verts = torch.cat([verts, torch.zeros(2, 1, 3, dtype=verts.dtype)], 1)
    ring = [set() for _ in range(tube_data.num_vertices)]
    for a, b, c in tube_data.faces.tolist():
        ring[a] |= {b, c}
        ring[b] |= {a, c}
        ring[c] |= {a, b}
    slow = torch.stack([torch.stack([(verts[k, v] - verts[k, sorted(r)].mean(0)).norm() for v, r in enumerate(ring)]
                                    + [torch.zeros((), dtype=verts.dtype)]) for k in range(2)])
    torch.testing.assert_close(laplacian_smoothing(verts, lap), slow.mean(), rtol=1e-6, atol=0)  # float32 L


def test_normal_consistency_closed_form():
    # two triangles folded along the x axis by 90 degrees: one interior edge, 1 - cos(90) = 1
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    faces = torch.tensor([[0, 1, 2], [1, 0, 3]])
    adjacency = face_adjacency(faces)
    assert adjacency.tolist() == [[0, 1]]
    torch.testing.assert_close(normal_consistency(verts, faces, adjacency), torch.tensor(1.0))
    flat = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]]])
    torch.testing.assert_close(normal_consistency(flat, faces, adjacency), torch.tensor(0.0))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_losses_run_on_device(tube_data, device):
    faces = torch.from_numpy(tube_data.faces).to(device)
    verts = torch.from_numpy(tube_data.v_template).float().to(device)[None]
    lap = uniform_laplacian(faces, tube_data.num_vertices)
    assert torch.isfinite(laplacian_smoothing(verts, lap) + normal_consistency(verts, faces, face_adjacency(faces)))
