"""Ray-traced visibility on the posed surface (`handavatar.render.shadows`, network.shading_at: surface) against
closed forms and a Moller-Trumbore loop over every triangle."""

import torch

import smplx
from smplx.mesh import vertex_normals
from handavatar.render.shadows import (camera_hemisphere, interpolated_visibility, mesh_points, sphere_directions,
                                      visibility)
from tests.test_avatar_network import _escapes_by_hand

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


def test_mesh_points_blend_the_vertices_and_turn_their_normals_towards_the_ray():
    """A point of the cube's top face and of a corner: barycentric points, Phong normals (the vertex normals blended
    and normalised), flipped where they face away from the ray's origin; `camera_hemisphere` lights face the
    camera (z < 0)."""
    ids = torch.tensor([[4, 5, 6], [0, 1, 2]])
    weights = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    points, normals = mesh_points(CUBE_VERTICES, CUBE_FACES, ids, weights)
    torch.testing.assert_close(points, torch.tensor([[0.8, 0.5, 1.0], [0.0, 0.0, 0.0]]))
    vertex = vertex_normals(CUBE_VERTICES, CUBE_FACES)
    blend = torch.nn.functional.normalize(0.2 * vertex[4] + 0.3 * vertex[5] + 0.5 * vertex[6], dim=0)
    torch.testing.assert_close(normals, torch.stack([blend, vertex[0] / vertex[0].norm()]))
    rays = torch.tensor([[0.0, 0.0, -1.0], [-1.0, -1.0, -1.0]])  # looking down at the top; from inside the corner
    _, turned = mesh_points(CUBE_VERTICES, CUBE_FACES, ids, weights, towards=rays)
    torch.testing.assert_close(turned, torch.stack([blend, -vertex[0] / vertex[0].norm()]))
    lifted, _ = mesh_points(CUBE_VERTICES, CUBE_FACES, ids, weights, lift=True)
    expected = points[0].clone()
    for w, v in zip(weights[0], ids[0]):  # onto each corner's tangent plane where below it, blended
        expected -= w * min(0.0, float((points[0] - CUBE_VERTICES[v]) @ vertex[v])) * vertex[v]
    torch.testing.assert_close(lifted[0], expected)
    assert lifted[0, 2] > 1.01  # the cube's top face lifted towards the round surface its vertex normals describe
    torch.testing.assert_close(lifted[1], points[1])  # a corner stays
    lights = camera_hemisphere(3)
    assert lights.shape == (3, 3) and (lights[:, 2] < 0).all()


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
    each = torch.stack([_escapes_by_hand(vertices[v] + 2e-3 * normals[v], directions, vertices, faces)
                        for v in corners])
    traced = visibility(vertices, faces, vertices[corners], normals[corners], directions)
    assert (traced == each).float().mean() > 0.995  # float32 Embree against float64: rays grazing an edge may differ
    assert 0.2 < each.mean() < 0.8 and (each.sum(1) < 8).any()  # some vertices lie in the fingers' shadow
    torch.testing.assert_close(blended, (weights[..., None] * traced.reshape(30, 3, 16)).sum(1))
    assert ((blended > 0) & (blended < 1)).any()  # points between vertices that see differently
