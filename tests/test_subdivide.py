import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from smplx import MANO, subdivide
from smplx.manohd import laplacian_smooth, subdivide_data
from smplx.topology import boundary_loops, unique_edges
from tests.hand_fixtures import make_tube_model, mirror_model


def _split_faces(data, face_ids):
    """Insert a vertex at the centroid of each listed face (1-to-3 split): +1 vertex, +2 faces, same boundary."""
    faces, attrs = [f for f in data.faces], {}
    for name in ("v_template", "shapedirs", "posedirs", "lbs_weights"):
        attrs[name] = [getattr(data, name)]
    new_id = data.num_vertices
    for f in face_ids:
        a, b, c = data.faces[f]
        for name in attrs:
            attrs[name].append(getattr(data, name)[[a, b, c]].mean(0, keepdims=True))
        faces[f] = np.array([a, b, new_id])
        faces += [np.array([b, c, new_id]), np.array([c, a, new_id])]
        new_id += 1
    extra = new_id - data.num_vertices
    return dataclasses.replace(data, faces=np.stack(faces), **{k: np.concatenate(v) for k, v in attrs.items()},
                               j_regressor=np.pad(data.j_regressor, ((0, 0), (0, extra))))


def test_mano_counts():
    """A disk with MANO's counts (778 vertices, 1538 faces, a 16-edge wrist) gives MANO-HD's 3093 and 12337."""
    tube = make_tube_model(n_around=16, n_rows=48)
    mano_like = _split_faces(tube, range(len(tube.faces) - 9, len(tube.faces)))
    assert (mano_like.num_vertices, len(mano_like.faces), len(boundary_loops(mano_like.faces)[0])) == (778, 1538, 16)
    level1 = subdivide_data(mano_like, 1)
    level2 = subdivide_data(mano_like, 2)
    assert (level1.num_vertices, len(level1.faces)) == (3093, 6152)
    assert (level2.num_vertices, len(level2.faces)) == (12337, 24608)
    assert [len(lp) for lp in boundary_loops(level2.faces)] == [64]


def test_attributes_are_edge_averages(tube_data):
    sub = subdivide_data(tube_data, 1, smooth=False)
    edges, _ = unique_edges(tube_data.faces)
    nv = tube_data.num_vertices
    assert sub.num_vertices == nv + len(edges) and len(sub.faces) == 4 * len(tube_data.faces)
    for name in ("v_template", "shapedirs", "posedirs", "lbs_weights"):
        old, new = getattr(tube_data, name), getattr(sub, name)
        np.testing.assert_array_equal(new[:nv], old, err_msg=name)
        np.testing.assert_allclose(new[nv:], (old[edges[:, 0]] + old[edges[:, 1]]) / 2, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sub.j_regressor[:, :nv], tube_data.j_regressor)
    assert not sub.j_regressor[:, nv:].any()
    np.testing.assert_allclose(sub.lbs_weights.sum(1), 1.0, rtol=0, atol=1e-12)
    # each old face became four faces over its corners and edge midpoints, in the published order
    a, b, c = tube_data.faces[0]
    ab, bc, ca = (nv + e for e in unique_edges(tube_data.faces)[1][0])
    np.testing.assert_array_equal(sub.faces[:4], [[a, ab, ca], [ab, b, bc], [ca, ab, bc], [ca, bc, c]])


def test_laplacian_smooth_matches_loop(tube_data):
    verts, faces = tube_data.v_template, tube_data.faces
    ring = [set() for _ in verts]
    for f in faces.tolist():
        for i in range(3):
            ring[f[i]] |= {f[(i + 1) % 3], f[(i + 2) % 3]}
    slow = np.stack([(verts[v] + verts[sorted(r)].sum(0)) / (1 + len(r)) for v, r in enumerate(ring)])
    np.testing.assert_allclose(laplacian_smooth(verts, faces), slow, rtol=0, atol=1e-15)
    smoothed = subdivide_data(tube_data, 2)
    raw = subdivide_data(tube_data, 2, smooth=False)
    np.testing.assert_allclose(smoothed.v_template, laplacian_smooth(raw.v_template, raw.faces), rtol=0, atol=0)
    np.testing.assert_array_equal(smoothed.shapedirs, raw.shapedirs)


@pytest.mark.parametrize("hand", ["right", "left"])
@pytest.mark.parametrize("levels", [0, 1, 2])
def test_seal_is_watertight_and_outward(tube_data, hand, levels):
    data = tube_data if hand == "right" else mirror_model(tube_data)
    model = subdivide(MANO(data, is_rhand=hand == "right", seal=True, dtype=torch.float64), levels)
    pose = torch.from_numpy(np.random.default_rng(levels).normal(scale=0.2, size=(1, 45)))
    for out in (model(), model(hand_pose=pose)):
        mesh = trimesh.Trimesh(out.vertices[0].numpy(), model.output_faces.numpy(), process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume > 0  # outward-facing
    assert len(model.seal_loop) == 8 * 2 ** levels


def test_subdivide_keeps_options_and_tips(tube_data):
    model = MANO(tube_data, center_id=4, scale=10.0, distal=True, seal=True)
    hd = subdivide(model, 2)
    assert hd.options == model.options and hd.v_template.dtype == torch.float32
    rest, rest_hd = model(), hd()
    # joints come from the original vertices, which the final smoothing moves slightly
    torch.testing.assert_close(rest_hd.joints[:, :16], rest.joints[:, :16], rtol=0, atol=0.05)  # dm, < 5 mm
    torch.testing.assert_close(rest_hd.vertices[:, hd.fingertip_ids], rest_hd.joints[:, 16:])
