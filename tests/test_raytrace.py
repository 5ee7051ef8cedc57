"""The Embree ray tracer against closed forms: camera rays, cast shadows, ambient occlusion, image formation."""

import numpy as np
import pytest

from segment.synthetic.raytrace import (Light, PinholeCamera, ShadingModel, hemisphere_directions, render,
                                        vertex_ambient_occlusion)
from smplx.utils.raycast import EmbreeMesh


def _square(half: float, z: float, offset=(0.0, 0.0), cells: int = 1):
    """A square in the plane z = const facing -z (towards a camera at the origin), as a grid of cells x cells."""
    t = np.linspace(-half, half, cells + 1)
    xs, ys = np.meshgrid(t + offset[0], t + offset[1])
    vertices = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], 1)
    faces = []
    for i in range(cells):
        for j in range(cells):
            a, b, c, d = i * (cells + 1) + j, i * (cells + 1) + j + 1, (i + 1) * (cells + 1) + j, (i + 1) * (
                cells + 1) + j + 1
            faces += [[a, c, b], [b, c, d]]  # counter-clockwise seen from -z
    return vertices, np.array(faces)


def _scene(*parts):
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


CAMERA = PinholeCamera(np.array([[100.0, 0, 49.5], [0, 100.0, 49.5], [0, 0, 1]]), np.eye(3), np.zeros(3), 100, 100)


def test_camera_rays_hit_where_the_camera_projects_and_t_is_depth():
    mesh = EmbreeMesh(*_square(50, 100.0))
    x, y = np.array([10.0, 49.5, 80.25]), np.array([20.0, 49.5, 3.5])
    origins, directions = CAMERA.rays(x, y)
    face, bary, t = mesh.intersect(origins, directions)
    assert np.all(face >= 0)
    np.testing.assert_allclose(t, 100.0, rtol=1e-6)
    points = origins + t[:, None] * directions
    uv = points @ CAMERA.K.T
    np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], np.stack([x, y], 1), atol=1e-4)
    np.testing.assert_allclose(bary.sum(1), 1.0, atol=1e-6)


def test_cast_shadow_of_a_square_matches_the_closed_form():
    """A 10 mm square 20 mm in front of a wall, lit from the front-right at 45 degrees: its shadow is the square moved
    20 mm left on the wall. In the shadow only ambient light remains; elsewhere ambient + diffuse cos 45."""
    wall, occluder = _square(50, 100.0), _square(5, 80.0)
    vertices, faces = _scene(wall, occluder)
    shading = ShadingModel(ambient=0.25, diffuse=0.75, ao_rays=0)
    buffers = render(vertices, faces, CAMERA, Light("directional", (1.0, 0.0, -1.0)), shading,
                     lambda f, b: np.full((len(f), 3), 0.5), supersample=1)
    x = np.arange(100) - 49.5  # wall x (mm) seen at each pixel column (depth 100, focal 100)
    in_shadow = (x > -24) & (x < -16)
    lit = ((x > 10) & (x < 40)) | ((x > -45) & (x < -28))
    rows = slice(46, 54)  # |y| < 4 mm
    assert np.all(buffers.lit[rows][:, in_shadow] == 0) and np.all(buffers.lit[rows][:, lit] == 1)
    gamma = 1 / 2.2
    np.testing.assert_allclose(buffers.shading[rows][:, in_shadow], 0.25 ** gamma, rtol=1e-6)
    np.testing.assert_allclose(buffers.shading[rows][:, lit], (0.25 + 0.75 / np.sqrt(2)) ** gamma, rtol=1e-5)
    np.testing.assert_allclose(buffers.image[rows][:, in_shadow], 0.5 * 0.25 ** gamma, rtol=1e-6)
    np.testing.assert_allclose(buffers.depth[rows][:, lit], 100.0, rtol=1e-6)
    np.testing.assert_allclose(buffers.depth[48, 48:52], 80.0, rtol=1e-6)  # the occluder itself

    no_shadows = render(vertices, faces, CAMERA, Light("directional", (1.0, 0.0, -1.0)),
                        ShadingModel(ambient=0.25, diffuse=0.75, ao_rays=0, shadows=False),
                        lambda f, b: np.full((len(f), 3), 0.5), supersample=1)
    assert np.all(no_shadows.lit[rows][:, in_shadow] == 1)


def test_point_light_shadow_is_the_central_projection():
    """A point light 100 mm in front of the wall throws the occluder's shadow magnified by 100 / (100 - 20)."""
    vertices, faces = _scene(_square(50, 100.0), _square(5, 80.0, offset=(20.0, 0.0)))
    light = Light("point", (20.0, 0.0, 0.0))
    buffers = render(vertices, faces, CAMERA, light, ShadingModel(ao_rays=0), lambda f, b: np.ones((len(f), 3)),
                     supersample=1)
    x = np.arange(100) - 49.5
    rows = slice(46, 54)
    half = 5 * 100 / 80  # the shadow spans x = 20 +- 6.25 mm on the wall; the occluder hides x = 25 +- 6.25 of it
    assert np.all(buffers.lit[rows][:, (x > 20 - half + 0.5) & (x < 25 - half - 0.5)] == 0)
    assert np.all(buffers.lit[rows][:, (x < 20 - half - 0.5) & (x > -40)] == 1)


def test_hemisphere_directions_are_cosine_weighted():
    d = hemisphere_directions(4096)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    assert np.all(d[:, 2] > 0)
    assert abs(d[:, 2].mean() - 2 / 3) < 2e-3  # E[cos theta] under p ~ cos theta
    assert np.abs(d[:, :2].mean(0)).max() < 2e-3


@pytest.mark.parametrize("gap, distance", [(10.0, 20.0), (10.0, 40.0), (30.0, 20.0)])
def test_ambient_occlusion_between_parallel_planes(gap, distance):
    """Under a parallel plane `gap` away, a ray escapes within `distance` iff cos(theta) < gap / distance, which has
    probability (gap / distance)^2 for cosine-weighted rays."""
    floor = _square(200, 100.0, cells=2)  # vertex 4 is the centre
    ceiling = _square(200, 100.0 - gap)
    vertices, faces = _scene(floor, ceiling)
    normals = np.tile([0.0, 0.0, -1.0], (len(vertices), 1))
    ao = vertex_ambient_occlusion(EmbreeMesh(vertices, faces), vertices[4:5], normals[4:5], rays=256,
                                  distance=distance)
    assert abs(ao[0] - min(gap / distance, 1.0) ** 2) < 0.02


def test_supersampled_edges_blend_with_the_background():
    vertices, faces = _square(10.5, 100.0)  # edges at pixel x = 49.5 +- 10.5: through the middle of pixels 39, 60
    buffers = render(vertices, faces, CAMERA, Light("directional", (0.0, 0.0, -1.0)), ShadingModel(ao_rays=0),
                     lambda f, b: np.ones((len(f), 3)), supersample=2, background=(0.0, 0.0, 1.0))
    assert buffers.coverage[49, 49] == 1 and buffers.coverage[49, 39] == 0.5 and buffers.coverage[49, 38] == 0
    np.testing.assert_allclose(buffers.image[49, 39], [0.5, 0.5, 1.0], atol=1e-6)  # half white, half blue
