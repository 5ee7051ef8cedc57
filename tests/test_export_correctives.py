"""Pose correctives' building blocks (handavatar/export/correctives.py) against closed forms: the keyframes and
their morph weights (np.interp of one-hot rows), the level-set root find on a sphere (the ray-sphere intersection),
and the inverse skinning (a displaced bind vertex skins to the displaced posed vertex). The file-level test, the
morphed and skinned vertices of a .glb against a slow root find (`level_set_along`) of an analytic occupancy
(`capsule_field`), is in tests/test_export.py (and the viewer's in tests/test_viewer.py)."""

import contextlib

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from smplx.joint_names import PARENTS
from pairof.model import PairOF, PairOFOutput
from handavatar.export.correctives import corrective_keys, level_set_distances, morph_weights, unskin, unskin_normals

CAPSULE_RADIUS = 0.09  # dm: the tiny hand's vertices lie a median 0.098 dm from its bones, so most are within reach
CAPSULE_WIDTH = 0.01  # dm: the occupancy's transition width


def capsule_occupancy(points: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(P, 3) points, (16, 3) posed joints (dm) -> (P,) occupancy sigmoid((r - d) / w) of capsules of radius r around
    the 15 bones (d: distance to the nearest bone segment); its 0.5 level set lies exactly r from the bones."""
    start, end = joints[list(PARENTS[1:])], joints[1:]
    bone = end - start
    along = np.clip(np.einsum("psc,sc->ps", points[:, None] - start, bone) / (bone ** 2).sum(1), 0.0, 1.0)
    distance = np.linalg.norm(points[:, None] - (start + along[..., None] * bone), axis=-1).min(1)
    return 1.0 / (1.0 + np.exp(-(CAPSULE_RADIUS - distance) / CAPSULE_WIDTH))


@contextlib.contextmanager
def capsule_field():
    """PairOF's occupancy replaced by `capsule_occupancy` of the encoded pose's joints (the export's correctives
    query nothing else of it)."""
    def query(self, points, encoding, **options):
        assert not options, options
        joints = encoding.joints[0].double().cpu().numpy()
        values = capsule_occupancy(points[0].double().cpu().numpy(), joints)
        return PairOFOutput(occupancy=torch.as_tensor(values, dtype=points.dtype)[None])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PairOF, "query", query)
        yield


def level_set_along(occupancy, points: np.ndarray, normals: np.ndarray, *, reach: float = 0.008,
                     step: float = 5e-5) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference of the correctives' root find: (P,) signed distance along each normal to the first crossing
    of the 0.5 level on the side the point must move to (outwards from inside), by a scan in `step`s up to `reach`
    and 40 bisections, NaN where none (metres); and (P,) how many times the scan crosses the level."""
    result, crossings = np.full(len(points), np.nan), np.zeros(len(points), dtype=int)
    ts = np.arange(1, round(reach / step) + 1) * step
    for part in np.array_split(np.arange(len(points)), max(1, len(points) // 256)):
        p, n = points[part], normals[part]
        start = occupancy(p) - 0.5
        sign = np.where(start > 0, 1.0, -1.0)
        rays = p[:, None] + (sign[:, None] * ts)[..., None] * n[:, None]
        values = occupancy(rays.reshape(-1, 3)).reshape(len(p), -1) - 0.5
        crossed = values * start[:, None] <= 0
        signs = np.concatenate([start[:, None], values], 1) > 0
        crossings[part] = (signs[:, 1:] != signs[:, :-1]).sum(1)
        first = crossed.argmax(1)
        low, high = np.where(first > 0, ts[first - 1], 0.0), ts[first]
        for _ in range(40):
            middle = (low + high) / 2
            same = (occupancy(p + (sign * middle)[:, None] * n) - 0.5) * start > 0
            low, high = np.where(same, middle, low), np.where(same, high, middle)
        result[part] = np.where(crossed.any(1), sign * (low + high) / 2, np.nan)
    return result, crossings


@pytest.mark.parametrize("frames,count,keys", [(24, 6, [0, 5, 9, 14, 18, 23]), (5, 3, [0, 2, 4]), (3, 6, [0, 1, 2]),
                                               (10, 0, []), (7, 1, [0]), (9, 2, [0, 8])])
def test_keys_and_weights(frames, count, keys):
    found = corrective_keys(frames, count)
    np.testing.assert_array_equal(found, keys)
    weights = morph_weights(frames, found)
    assert weights.shape == (frames, len(keys))
    for k in range(len(keys)):  # a hat over the neighbouring keys; the ends hold (np.interp clamps)
        expected = np.interp(np.arange(frames), keys, np.eye(len(keys))[k]) if len(keys) > 1 else np.ones(frames)
        np.testing.assert_allclose(weights[:, k], expected, atol=1e-12)


def _sphere_hit(points, directions, radius):
    """Signed t of the intersection of p + t d with the sphere |x| = radius nearest to t = 0 on the side where
    the point must move (+d from inside, -d from outside); NaN where the line misses that side."""
    b = np.einsum("pc,pc->p", points, directions)
    c = np.einsum("pc,pc->p", points, points) - radius ** 2
    root = np.sqrt(np.maximum(b ** 2 - c, 0.0))
    t = -b + root  # inside: the positive root; outside: of two roots behind the point, the nearer
    return np.where((c < 0) | ((b ** 2 - c >= 0) & (t <= 0)), t, np.nan)


def test_level_set_distances_find_the_sphere():
    rng = np.random.default_rng(0)
    radius, width, reach = 1.0, 0.02, 0.2
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    normals = rng.normal(size=(4000, 3))
    normals = directions + 0.3 * normals / np.linalg.norm(normals, axis=1, keepdims=True)  # oblique, roughly out
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = directions * rng.uniform(radius - 0.25, radius + 0.25, (4000, 1))
    def occupancy(p):
        return 1.0 / (1.0 + np.exp(-(radius - np.linalg.norm(p, axis=1)) / width))

    found = level_set_distances(occupancy, points, normals, reach=reach, first_step=0.01)
    expected = _sphere_hit(points, normals, radius)
    expected[np.abs(expected) > reach] = np.nan
    near = np.abs(np.abs(expected) - reach) > 0.01  # not at the edge of the reach
    np.testing.assert_array_equal(np.isnan(found[near]), np.isnan(expected[near]))
    hit = ~np.isnan(found) & ~np.isnan(expected)
    assert hit.mean() > 0.5 and np.isnan(found).any()
    # the 0.5 level of the sigmoid is the sphere exactly; after 3 refinements, a linear fit in a bracket of < 1 step
    # (0.01) of a curve of width 0.02: measured max 2.0e-5
    np.testing.assert_allclose(found[hit], expected[hit], atol=1e-4)


def test_unskin_moves_the_skinned_vertex_by_the_posed_displacement():
    rng = np.random.default_rng(1)
    transforms = np.concatenate([Rotation.random(16, random_state=2).as_matrix(), rng.normal(size=(16, 3, 1))], -1)
    weights = rng.dirichlet(np.ones(4), 50)
    ids = np.stack([rng.choice(16, 4, replace=False) for _ in range(50)])
    dense = np.zeros((50, 16))
    np.put_along_axis(dense, ids, weights, 1)
    rest, posed_offsets = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) * 0.01

    def skin(points):  # linear blend skinning, written out per vertex
        return np.stack([sum(dense[v, j] * (transforms[j, :, :3] @ points[v] + transforms[j, :, 3])
                             for j in range(16)) for v in range(50)])

    moved = skin(rest + unskin(dense, transforms, posed_offsets))
    np.testing.assert_allclose(moved - skin(rest), posed_offsets, atol=1e-10)
    assert np.abs(skin(rest + posed_offsets) - skin(rest) - posed_offsets).max() > 1e-3  # unskinning matters


def test_unskin_normals_give_the_bind_normal_of_a_skinned_surface():
    """A small bind-pose triangle skinned by a blended (not rigid) matrix: its posed face normal, taken back by
    `unskin_normals`, is the bind face normal; A^-1 n (right only for a rotation) is not."""
    rng = np.random.default_rng(3)
    transforms = np.concatenate([Rotation.random(16, random_state=4).as_matrix(), rng.normal(size=(16, 3, 1))], -1)
    dense = np.zeros((1, 16))
    dense[0, [2, 7, 11]] = [0.5, 0.3, 0.2]  # one vertex's weights: a blend of three rotations
    blended = sum(dense[0, j] * transforms[j, :, :3] for j in range(16))
    corners = rng.normal(size=(3, 3))
    bind = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    posed = np.cross(blended @ (corners[1] - corners[0]), blended @ (corners[2] - corners[0]))
    back = unskin_normals(dense, transforms, (posed / np.linalg.norm(posed))[None])[0]
    np.testing.assert_allclose(back, bind / np.linalg.norm(bind), atol=1e-10)
    inverse = unskin(dense, transforms, (posed / np.linalg.norm(posed))[None])[0]
    assert np.abs(inverse / np.linalg.norm(inverse) - bind / np.linalg.norm(bind)).max() > 1e-3
