import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from smplx.joint_names import PARENTS
from smplx.lbs import batch_rigid_transform, batch_rodrigues, lbs
from tests.mano_reference import pose_corrective_features


def test_rodrigues_matches_scipy():
    rng = np.random.default_rng(0)
    vecs = np.concatenate([rng.normal(size=(50, 3)) * 2, rng.normal(size=(5, 3)) * 1e-9, np.zeros((1, 3))])
    ours = batch_rodrigues(torch.from_numpy(vecs)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(vecs).as_matrix(), rtol=0, atol=1e-14)  # float64 rounding


def test_rodrigues_small_angles_stay_orthonormal_in_float32():
    vecs = torch.tensor([[1e-4, 0, 0], [3e-4, -2e-4, 1e-4], [1e-7, 0, 0]], dtype=torch.float32)
    rot = batch_rodrigues(vecs)
    eye = torch.eye(3).expand_as(rot)
    # 1 - cos(t) suffers cancellation in float32 near t = 1e-4; the sinc form keeps R^T R = I to float eps.
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, rtol=0, atol=2e-7)


def test_rodrigues_gradient_at_zero_is_the_generator():
    vec = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    rot = batch_rodrigues(vec)
    (grad,) = torch.autograd.grad(rot[0, 2, 1], vec)  # dR/dv at 0 is the cross-product matrix: R[2,1] = +x
    torch.testing.assert_close(grad, torch.tensor([[1.0, 0, 0]], dtype=torch.float64))


def _naive_forward_kinematics(rot_mats, joints, parents):
    """Recursive world transforms, one joint at a time (4x4 matrices)."""
    batch, n = joints.shape[:2]
    world = [None] * n
    for j in range(n):
        local = torch.eye(4, dtype=joints.dtype).repeat(batch, 1, 1)
        local[:, :3, :3] = rot_mats[:, j]
        local[:, :3, 3] = joints[:, j] - (joints[:, parents[j]] if parents[j] >= 0 else 0)
        world[j] = local if parents[j] < 0 else world[parents[j]] @ local
    return torch.stack(world, 1)


def test_rigid_transform_matches_recursive_reference():
    g = torch.Generator().manual_seed(0)
    rot = batch_rodrigues(torch.randn(3, 16, 3, generator=g, dtype=torch.float64))
    joints = torch.randn(3, 16, 3, generator=g, dtype=torch.float64)
    posed, rel = batch_rigid_transform(rot, joints, PARENTS)
    world = _naive_forward_kinematics(rot, joints, PARENTS)
    torch.testing.assert_close(posed, world[:, :, :3, 3], rtol=0, atol=1e-12)  # float64, few products
    # rel maps a rest point attached to joint j to its posed location: world_j @ (x - joint_j)
    x = torch.randn(3, 16, 3, generator=g, dtype=torch.float64)
    want = (world[:, :, :3, :3] @ (x - joints)[..., None])[..., 0] + world[:, :, :3, 3]
    torch.testing.assert_close((rel[..., :3] @ x[..., None])[..., 0] + rel[..., 3], want, rtol=0, atol=1e-12)


def test_rigid_transform_rejects_unordered_parents_and_wrong_shapes():
    with pytest.raises(ValueError, match="parent must come before"):
        batch_rigid_transform(torch.eye(3).repeat(1, 3, 1, 1), torch.zeros(1, 3, 3), (-1, 2, 0))
    for rotations, joints in ((3, 2), (2, 3)):
        with pytest.raises(ValueError, match=rf"rot_mats \(1, {rotations}, 3, 3\) and joints \(1, {joints}, 3\) "
                                             "must have J=3 joints on dim 1"):
            batch_rigid_transform(torch.eye(3).repeat(1, rotations, 1, 1), torch.zeros(1, joints, 3), (-1, 0, 1))


def _slow_lbs(betas, pose, v_template, shapedirs, posedirs, j_regressor, parents, weights):
    """Per-vertex loop, one pose at a time: the textbook definition."""
    out_v, out_j = [], []
    for b in range(betas.shape[0]):
        shaped = v_template + (shapedirs * betas[b]).sum(-1)
        joints = j_regressor @ shaped
        rot = batch_rodrigues(pose[b].reshape(-1, 3))
        feats = torch.from_numpy(pose_corrective_features(rot.numpy()))  # written from the paper, not ours
        posed_rest = shaped + (feats @ posedirs).reshape(-1, 3)
        world = _naive_forward_kinematics(rot[None], joints[None], parents)[0]
        verts = []
        for v in range(len(v_template)):
            point = torch.zeros(3, dtype=v_template.dtype)
            for j in range(len(parents)):
                if weights[v, j] != 0:
                    point = point + weights[v, j] * (world[j, :3, :3] @ (posed_rest[v] - joints[j]) + world[j, :3, 3])
            verts.append(point)
        out_v.append(torch.stack(verts))
        out_j.append(world[:, :3, 3])
    return torch.stack(out_v), torch.stack(out_j)


def test_lbs_matches_per_vertex_reference(tube_data):
    d = {k: torch.from_numpy(getattr(tube_data, k)) for k in
         ("v_template", "shapedirs", "j_regressor", "lbs_weights")}
    posedirs = torch.from_numpy(tube_data.posedirs.reshape(-1, 135).T.copy())
    g = torch.Generator().manual_seed(1)
    betas = torch.randn(2, 10, generator=g, dtype=torch.float64)
    pose = 0.5 * torch.randn(2, 48, generator=g, dtype=torch.float64)
    fast_v, fast_j = lbs(betas, pose, d["v_template"], d["shapedirs"], posedirs, d["j_regressor"], PARENTS,
                         d["lbs_weights"])
    slow_v, slow_j = _slow_lbs(betas, pose, d["v_template"], d["shapedirs"], posedirs, d["j_regressor"], PARENTS,
                               d["lbs_weights"])
    torch.testing.assert_close(fast_v, slow_v, rtol=0, atol=1e-12)  # float64; only summation order differs
    torch.testing.assert_close(fast_j, slow_j, rtol=0, atol=1e-12)
