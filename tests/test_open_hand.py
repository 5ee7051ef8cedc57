import dataclasses

import numpy as np
import pytest
import torch
import trimesh

import smplx
from smplx import MANO
from smplx.hand_pose import JOINT_LIMITS, angles_to_pose, joint_frames, pose_to_angles, prior_poses, sample_prior
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from smplx.model_file import load_model_file, save_model_file
from smplx.open_hand import build_open_hand
from smplx.open_hand.__main__ import main as open_hand_main
from smplx.open_hand.subdivision import catmull_clark
from tests.hand_fixtures import make_tube_model, mirror_pose
from tests.mesh_checks import buried_fraction, edge_face_intersections

DIGITS = {"index": [1, 2, 3], "middle": [4, 5, 6], "pinky": [7, 8, 9], "ring": [10, 11, 12], "thumb": [13, 14, 15]}


@pytest.fixture(scope="module")
def right():
    return build_open_hand()


@pytest.fixture(scope="module")
def left():
    return build_open_hand(is_rhand=False)


def _sealed(data, hand_pose=None, is_rhand=True):
    model = MANO(data, is_rhand=is_rhand, seal=True, dtype=torch.float64)
    pose = None if hand_pose is None else torch.as_tensor(hand_pose, dtype=torch.float64).reshape(-1, 45)
    with torch.no_grad():
        out = model(hand_pose=pose)
    return out.vertices.numpy(), model.output_faces.numpy()


def test_catmull_clark_cube_closed_form():
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    weights = np.eye(8)  # an attribute carried along: rows must stay affine (sum 1)
    cc = catmull_clark(np.concatenate([cube, weights], 1), quads)
    assert cc.values.shape[0] == 8 + 12 + 6 and cc.quads.shape == (24, 4)
    # corner (valence 3): (F + 2R) / 3 with F = (1/3, 1/3, 1/3) and R = (2/3, 2/3, 2/3) -> 5/9
    np.testing.assert_allclose(np.abs(cc.values[:8, :3]), 5 / 9, atol=1e-15)
    # edge point of (1,1,-1)-(1,1,1): mean of the endpoints and the two face centres -> (3/4, 3/4, 0)
    np.testing.assert_allclose(cc.values[cc.edge_point(6, 7), :3], [0.75, 0.75, 0.0], atol=1e-15)
    np.testing.assert_allclose(cc.values[:, 3:].sum(1), 1.0, atol=1e-15)
    mesh = trimesh.Trimesh(cc.values[:, :3], np.concatenate([cc.quads[:, :3], cc.quads[:, [0, 2, 3]]]))
    assert mesh.is_watertight and mesh.volume > 0


def test_size_and_topology(right):
    assert 700 <= right.num_vertices <= 1200
    assert len(smplx.boundary_loops(right.faces)) == 1
    verts, faces = _sealed(right)
    mesh = trimesh.Trimesh(verts[0], faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    extent = right.v_template.max(0) - right.v_template.min(0)
    assert 0.16 < extent[0] < 0.22  # wrist to middle fingertip: an adult hand, metres


def test_rest_pose_has_no_self_intersection(right):
    verts, faces = _sealed(right)
    assert edge_face_intersections(verts[0], faces) == 0


def test_joints_lie_inside_the_mesh(right):
    verts, faces = _sealed(right)
    mesh = trimesh.Trimesh(verts[0], faces, process=False)
    joints = right.j_regressor @ right.v_template
    assert mesh.ray.contains_points(joints).all()
    np.testing.assert_allclose(right.j_regressor.sum(1), 1.0, atol=1e-12)


def test_skinning_weights_stay_on_their_own_digit(right):
    weights = right.lbs_weights
    assert weights.min() >= 0 and np.allclose(weights.sum(1), 1.0, atol=1e-12)
    part = weights.argmax(1)
    for name, chain in DIGITS.items():
        others = [j for d, c in DIGITS.items() if d != name for j in c]
        mine = np.isin(part, chain)
        assert mine.sum() > 50, name
        beyond_knuckle = np.isin(part, chain[1:])
        assert weights[beyond_knuckle][:, others].max() == 0, name  # no weight leaks to another digit's bones
        # at the knuckles a vertex may follow a neighbour a little (the thumb-index web), never much
        assert weights[mine][:, others].max() < 0.1, name
        assert weights[mine][:, chain].sum(1).mean() > 0.8, name


def _world_rotations(model, hand_pose):
    rest = (model.j_regressor @ model.v_template)[None]
    full = torch.cat([torch.zeros(1, 3, dtype=torch.float64), hand_pose], 1)
    _, rel = batch_rigid_transform(batch_rodrigues(full.reshape(1, 16, 3)), rest, model.parents)
    return rel[0, :, :, :3].numpy()


@pytest.mark.parametrize("joint", range(1, 16))
def test_flexing_a_joint_90_degrees_inverts_no_face(right, joint):
    """Each face's normal after posing must agree with its rest normal turned by its blended bone rotation.

    Finger joints flex by 90 degrees; the thumb's joints, whose flexion limits are lower (60, 70, 85), to their limit.
    """
    model = MANO(right, dtype=torch.float64)
    frames = joint_frames(right.j_regressor @ right.v_template)
    angles = np.zeros((15, 3))
    angles[joint - 1, 0] = min(90.0, JOINT_LIMITS[joint - 1, 0, 1])
    pose = torch.from_numpy(angles_to_pose(angles, frames))[None]
    with torch.no_grad():
        posed = model(hand_pose=pose).vertices[0].numpy()
    faces = right.faces
    rest_n = trimesh.Trimesh(right.v_template, faces, process=False).face_normals
    posed_n = trimesh.Trimesh(posed, faces, process=False).face_normals
    rots = _world_rotations(model, pose)
    face_w = right.lbs_weights[faces].mean(1)  # (F, 16)
    predicted = np.einsum("fj,jab,fb->fa", face_w, rots, rest_n)
    near = face_w[:, [joint, 0 if joint in (1, 4, 7, 10, 13) else joint - 1]].sum(1) > 0
    cos = np.sum(posed_n * predicted, 1) / np.linalg.norm(predicted, axis=1)
    assert near.sum() > 20 and cos[near].min() > 0.0, f"worst {cos[near].min():.2f}"
    # no collapse at the joint: linear blending of a 90-degree bend shrinks the cross-section at a half-and-half
    # ring to cos(45) = 0.71 of its radius; require 0.6 of the rest distance from the joint to the surface
    sealed_rest, sealed_faces = _sealed(right)
    sealed_posed, _ = _sealed(right, pose.numpy())
    joint_rest = (right.j_regressor @ right.v_template)[joint]
    with torch.no_grad():
        joint_posed = model(hand_pose=pose).joints[0, joint].numpy()
    rest_depth = trimesh.proximity.closest_point(trimesh.Trimesh(sealed_rest[0], sealed_faces), joint_rest[None])[1]
    posed_depth = trimesh.proximity.closest_point(trimesh.Trimesh(sealed_posed[0], sealed_faces),
                                                  joint_posed[None])[1]
    assert posed_depth[0] > 0.6 * rest_depth[0], f"{posed_depth[0] / rest_depth[0]:.2f} of the rest depth"


def test_left_is_the_mirror_of_the_right(right, left):
    flip = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(left.v_template, right.v_template * flip, atol=0)
    np.testing.assert_array_equal(left.faces, right.faces[:, [0, 2, 1]])
    np.testing.assert_array_equal(left.lbs_weights, right.lbs_weights)
    pose = prior_poses(right.hands_mean, right.hands_coeffs, right.hands_components)[:4]
    vr, faces = _sealed(right, pose)
    vl, faces_l = _sealed(left, mirror_pose(pose), is_rhand=False)
    np.testing.assert_allclose(vl, vr * flip, atol=1e-12)
    assert trimesh.Trimesh(vl[0], faces_l, process=False).volume > 0
    np.testing.assert_allclose(prior_poses(left.hands_mean, left.hands_coeffs, left.hands_components),
                               mirror_pose(prior_poses(right.hands_mean, right.hands_coeffs,
                                                       right.hands_components)), atol=1e-9)


def test_prior_samples_respect_limits_and_do_not_self_penetrate(right):
    frames = joint_frames(right.j_regressor @ right.v_template)
    prior = prior_poses(right.hands_mean, right.hands_coeffs, right.hands_components)
    limits = JOINT_LIMITS
    stored = pose_to_angles(prior, frames)
    assert np.all(stored >= limits[..., 0] - 1e-6) and np.all(stored <= limits[..., 1] + 1e-6)
    samples = sample_prior(prior, frames, 12, np.random.default_rng(0))
    angles = pose_to_angles(samples, frames)
    assert np.all(angles >= limits[..., 0] - 1e-6) and np.all(angles <= limits[..., 1] + 1e-6)
    verts, faces = _sealed(right, samples)
    buried = [buried_fraction(v, faces, offset=5e-4) for v in verts]
    # fingertips may press slightly into the palm in fist-like mixtures; 2 % of the vertices is a few fingertip
    # pads (one pad is about 1 % of the 1085 vertices)
    assert max(buried) < 0.02, f"buried fractions {np.round(buried, 4)}"


def test_shape_components_change_proportions(right):
    model = MANO(right, dtype=torch.float64, center_id=0)
    betas = torch.zeros(3, 10, dtype=torch.float64)
    betas[1, 0], betas[2, 2] = 2.0, 2.0  # bigger hand; longer fingers
    joints = model(betas=betas).joints.numpy()
    length = np.linalg.norm(joints[:, 6] - joints[:, 0], axis=1)  # wrist to middle DIP
    finger = np.linalg.norm(joints[:, 6] - joints[:, 4], axis=1)
    assert length[1] > 1.08 * length[0] and finger[2] > 1.06 * finger[0] and length[2] > length[0]


def test_command_writes_loadable_deterministic_files(right, tmp_path):
    open_hand_main(["--out", str(tmp_path), "--format", "npz"])
    loaded = load_model_file(tmp_path / "OPEN_HAND_RIGHT.npz")
    for key in ("v_template", "faces", "shapedirs", "lbs_weights", "j_regressor", "hands_coeffs"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(right, key), err_msg=key)
    assert (tmp_path / "OPEN_HAND_LEFT.npz").is_file() and (tmp_path / "open_hand_poses.png").stat().st_size > 1000
    assert "CC0" in str(np.load(tmp_path / "OPEN_HAND_RIGHT.npz")["license"])


def test_create_uses_open_hand_only_without_mano(tmp_path, caplog):
    model = smplx.create(tmp_path, model_type="mano")
    assert "no MANO_RIGHT.pkl in" in caplog.text and "using the built-in open hand" in caplog.text
    assert model.num_vertices == build_open_hand().num_vertices
    tube = make_tube_model()
    save_model_file(tube, tmp_path / "MANO_RIGHT.pkl")
    assert smplx.create(tmp_path).num_vertices == tube.num_vertices
    with pytest.raises(FileNotFoundError, match="MANO_LEFT.pkl does not exist"):
        smplx.create(tmp_path / "MANO_LEFT.pkl", is_rhand=False)


def test_open_hand_subdivides_and_seals(right):
    hd = smplx.subdivide(MANO(dataclasses.replace(right), seal=True, dtype=torch.float64), 2)
    with torch.no_grad():
        verts = hd().vertices[0].numpy()
    mesh = trimesh.Trimesh(verts, hd.output_faces.numpy(), process=False)
    assert mesh.is_watertight and mesh.volume > 0
