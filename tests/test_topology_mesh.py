import numpy as np
import pytest
import torch

from smplx.mesh import interpolate_barycentric, sample_surface, smoothed_vertex_normals, vertex_normals
from smplx.topology import boundary_loops, one_ring, seal_fan, unique_edges


def test_unique_edges_first_appearance_order(tube_data):
    edges, face_edges = unique_edges(tube_data.faces)
    seen = {}
    for face in tube_data.faces.tolist():
        for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
            seen.setdefault((min(a, b), max(a, b)), len(seen))
    assert [tuple(e) for e in edges.tolist()] == list(seen)
    for f, face in enumerate(tube_data.faces.tolist()):
        for i in range(3):
            a, b = face[i], face[(i + 1) % 3]
            assert face_edges[f, i] == seen[(min(a, b), max(a, b))]


def test_one_ring_matches_naive(tube_data):
    offsets, neighbours = one_ring(tube_data.faces, tube_data.num_vertices + 2)  # two unused vertices at the end
    naive = [set() for _ in range(tube_data.num_vertices + 2)]
    for a, b, c in tube_data.faces.tolist():
        naive[a] |= {b, c}
        naive[b] |= {a, c}
        naive[c] |= {a, b}
    for v, ring in enumerate(naive):
        assert neighbours[offsets[v]:offsets[v + 1]].tolist() == sorted(ring)


def test_boundary_loop_follows_face_direction(tube_data):
    loops = boundary_loops(tube_data.faces)
    assert [len(lp) for lp in loops] == [8]
    half = {(a, b) for f in tube_data.faces.tolist() for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    loop = loops[0].tolist()
    assert all((loop[i], loop[(i + 1) % len(loop)]) in half for i in range(len(loop)))
    fan = seal_fan(loops[0], tube_data.num_vertices)
    fan_half = {(a, b) for f in fan.tolist() for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert not half & fan_half  # consistent orientation: no directed edge used twice


def test_boundary_loops_reject_pinched_boundaries():
    bowtie = np.array([[0, 1, 2], [0, 3, 4]])  # two triangles sharing only vertex 0
    with pytest.raises(ValueError, match="vertex 0 starts two boundary edges"):
        boundary_loops(bowtie)


def test_vertex_normals_match_loop(tube_data):
    g = torch.Generator().manual_seed(0)
    verts = torch.from_numpy(tube_data.v_template) + 0.002 * torch.randn(tube_data.num_vertices, 3, generator=g,
                                                                          dtype=torch.float64)
    fast = vertex_normals(verts[None].repeat(2, 1, 1), torch.from_numpy(tube_data.faces))
    slow = torch.zeros_like(verts)
    for a, b, c in tube_data.faces.tolist():
        n = torch.linalg.cross(verts[b] - verts[a], verts[c] - verts[a])
        for v in (a, b, c):
            slow[v] += n
    slow = slow / slow.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(fast, slow.expand_as(fast), rtol=0, atol=1e-12)  # float64


def test_smoothed_vertex_normals_average_over_the_face_edges(tube_data):
    """Each pass: a vertex's normal plus its neighbour's across every face edge around it (an edge shared by two faces
    counts twice), normalised; written as a loop over the faces' edges. 0 passes: the vertex normals; more passes
    smooth a bumpy surface's normals (closer to those of the smooth tube)."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.from_numpy(tube_data.v_template)
    verts = smooth + 0.002 * torch.randn(tube_data.num_vertices, 3, generator=g, dtype=torch.float64)
    faces = torch.from_numpy(tube_data.faces)
    slow = vertex_normals(verts, faces)
    for _ in range(3):
        total = slow.clone()
        for face in tube_data.faces.tolist():
            for i in range(3):
                a, b = face[i], face[(i + 1) % 3]
                total[a] += slow[b]
                total[b] += slow[a]
        slow = total / total.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(smoothed_vertex_normals(verts, faces, 3), slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(smoothed_vertex_normals(verts, faces, 0), vertex_normals(verts, faces))
    truth = vertex_normals(smooth, faces)
    error = [(1 - (smoothed_vertex_normals(verts, faces, k) * truth).sum(-1)).mean() for k in (0, 2)]
    assert error[1] < 0.5 * error[0]


def test_surface_samples_lie_on_faces_in_area_proportion():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [0, 3, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 3, 4]])  # areas 0.5 and 4.5
    n = 20000
    s = sample_surface(verts, faces, n, generator=torch.Generator().manual_seed(0))
    assert torch.all(s.barycentrics >= 0)
    torch.testing.assert_close(s.barycentrics.sum(1), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(s.points, interpolate_barycentric(verts, faces, s.face_ids, s.barycentrics))
    frac = (s.face_ids == 1).double().mean().item()
    assert abs(frac - 0.9) < 4 * np.sqrt(0.9 * 0.1 / n)  # binomial, 4 sigma
    torch.testing.assert_close(s.normals, torch.tensor([[0, 0, 1.0]], dtype=torch.float64).expand(n, 3))
    # uniform within the big face: the mean of its samples is its centroid (1, 1), 4 sigma of a uniform triangle
    big = s.points[s.face_ids == 1, :2]
    assert torch.all((big.mean(0) - 1.0).abs() < 4 * big.std(0) / np.sqrt(len(big)))
