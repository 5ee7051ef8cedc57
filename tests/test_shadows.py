"""Ray-traced visibility on the posed surface (`handavatar.render.shadows`, network.shading_at: surface) against
closed forms and a Moller-Trumbore loop over every triangle."""

import torch

import smplx
from smplx.mesh import vertex_normals
from handavatar.render.shadows import interpolated_visibility, sphere_directions, visibility
from tests.test_avatar_network import _first_hit_by_hand

CUBE_VERTICES = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                              [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=torch.float32)
CUBE_FACES = torch.tensor([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                           [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])  # wound outward


def test_sphere_directions_are_unit_spread_and_balanced():
    directions = sphere_directions(64)
    assert directions.shape == (64, 3) and directions.dtype == torch.float32
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(64))
    assert (torch.cdist(directions, directions) + 9 * torch.eye(64)).min() > 0.2  # well spread
    assert directions.mean(0).abs().max() < 0.02
    assert (directions[:, 2] != 0).all()  # none grazes a plane of constant z


def test_a_point_on_a_convex_cube_sees_the_half_space_outside_its_face():
    """On a face of the cube, a shadow ray leaves the cube exactly when it points out of the face's plane (the cube
    is convex); vertex normals are the area-weighted sums of the faces' normals."""
    directions = sphere_directions(64)
    points = torch.tensor([[0.5, 0.5, 1.0], [0.3, 0.0, 0.6]])
    normals = torch.tensor([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    visible = visibility(CUBE_VERTICES, CUBE_FACES, points, normals, directions)
    assert visible.shape == (2, 64) and visible.dtype == torch.float32
    torch.testing.assert_close(visible[0], (directions[:, 2] > 0).float())
    torch.testing.assert_close(visible[1], (directions[:, 1] < 0).float())
    # vertex 0: two triangles of the bottom and front faces, one of the left face, each of area 1/2
    torch.testing.assert_close(vertex_normals(CUBE_VERTICES, CUBE_FACES)[0], torch.tensor([-1.0, -2.0, -2.0]) / 3)


def test_visibility_on_a_posed_hand_matches_a_loop_over_every_triangle():
    """Shadow rays from the vertices of a hand whose fingers curl over the palm (cast shadows) against a float64
    Moller-Trumbore loop, and their barycentric blend at points between them."""
    layer = smplx.create("open_hand", **smplx.PAPER_FRAME)
    pose = torch.zeros(1, 45)
    pose[0, 2::3] = 0.6  # every finger joint bent
    vertices = layer(global_orient=torch.zeros(1, 3), hand_pose=pose).vertices[0].detach()
    faces = layer.output_faces
    generator = torch.Generator().manual_seed(0)
    face = torch.randint(0, faces.shape[0], (30,), generator=generator)
    weights = torch.rand(30, 3, generator=generator) + 0.05
    weights = weights / weights.sum(1, keepdim=True)
    directions = sphere_directions(16)
    blended = interpolated_visibility(vertices, faces, faces[face], weights, directions)
    normals = vertex_normals(vertices, faces)
    corners = faces[face].reshape(-1)
    each = torch.tensor([[float(_first_hit_by_hand(vertices[v] + 2e-3 * normals[v], d, vertices, faces) is None)
                          for d in directions] for v in corners])
    traced = visibility(vertices, faces, vertices[corners], normals[corners], directions)
    assert (traced == each).float().mean() > 0.995  # float32 Embree against float64: rays grazing an edge may differ
    assert 0.2 < each.mean() < 0.8 and (each.sum(1) < 8).any()  # some vertices lie in the fingers' shadow
    torch.testing.assert_close(blended, (weights[..., None] * traced.reshape(30, 3, 16)).sum(1))
    assert ((blended > 0) & (blended < 1)).any()  # points between vertices that see differently
