import numpy as np
import pytest
import torch

import smplx
from smplx import MANO
from smplx.joint_names import PARENTS
from smplx.model_file import save_model_file
from tests.hand_fixtures import mirror_pose
from tests.mano_pickle import write_official_style_pickle


def _subtree(k):
    out = {k}
    for j, p in enumerate(PARENTS):
        if p in out:
            out.add(j)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rest_pose_gives_centred_scaled_template(tube_data, dtype):
    model = MANO(tube_data, center_id=4, scale=10.0, dtype=dtype)
    out = model()
    template = torch.from_numpy(tube_data.v_template).to(dtype)
    joints = torch.from_numpy(tube_data.j_regressor @ tube_data.v_template).to(dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12  # dm-sized values with float rounding
    torch.testing.assert_close(out.vertices[0], (template - joints[4]) * 10, rtol=0, atol=tol)
    torch.testing.assert_close(out.joints[0], (joints - joints[4]) * 10, rtol=0, atol=tol)
    assert out.full_pose.shape == (1, 48) and out.vertices.dtype == dtype


@pytest.mark.parametrize("joint", [1, 4, 8, 13, 15])
def test_rotating_one_joint_moves_only_its_subtree(tube_data, joint):
    model = MANO(tube_data, dtype=torch.float64)
    pose = torch.zeros(1, 45, dtype=torch.float64)
    pose[0, 3 * (joint - 1):3 * joint] = torch.tensor([0.3, -0.7, 0.5])
    subtree = sorted(_subtree(joint))
    weight_in_subtree = tube_data.lbs_weights[:, subtree].sum(1)
    model.posedirs.zero_()  # pose blend shapes move every vertex a little; test the skinning alone
    rest, moved = model(), model(hand_pose=pose)
    delta_v = (moved.vertices - rest.vertices)[0].norm(dim=-1).numpy()
    delta_j = (moved.joints - rest.joints)[0].norm(dim=-1).numpy()
    assert np.all(delta_v[weight_in_subtree == 0] < 1e-15)
    rigid = weight_in_subtree == 1
    assert rigid.any() and np.all(delta_v[rigid] > 1e-6)
    for j in range(16):
        moves = delta_j[j] > 1e-12
        assert moves == (j in subtree and j != joint), f"joint {j}"


def test_options_pca_mean_transl_distal_seal(tube_data):
    base = MANO(tube_data, dtype=torch.float64)
    model = MANO(tube_data, dtype=torch.float64, use_pca=True, num_pca_comps=6, flat_hand_mean=False,
                 distal=True, seal=True)
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(3, 6, generator=g, dtype=torch.float64)
    transl = torch.randn(3, 3, generator=g, dtype=torch.float64)
    out = model(hand_pose=coeffs, transl=transl)
    axis_angle = coeffs @ torch.from_numpy(tube_data.hands_components[:6]) + torch.from_numpy(tube_data.hands_mean)
    ref = base(hand_pose=axis_angle, transl=transl)
    torch.testing.assert_close(out.vertices[:, :-1], ref.vertices, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.full_pose[:, 3:], axis_angle, rtol=0, atol=1e-12)
    assert out.joints.shape == (3, 21, 3) and out.vertices.shape == (3, tube_data.num_vertices + 1, 3)
    tips = torch.from_numpy(tube_data.fingertip_vertex_ids)
    torch.testing.assert_close(out.joints[:, 16:], ref.vertices[:, tips], rtol=0, atol=1e-12)
    rim = model.seal_loop
    torch.testing.assert_close(out.vertices[:, -1], ref.vertices[:, rim].mean(1), rtol=0, atol=1e-12)
    assert model.output_faces.shape[0] == tube_data.faces.shape[0] + len(rim)


def test_shaped_verts_and_custom_weights(tube_data):
    model = MANO(tube_data, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(2, 10, generator=g, dtype=torch.float64)
    pose = 0.3 * torch.randn(2, 45, generator=g, dtype=torch.float64)
    shaped = model.v_template + torch.einsum("bl,vkl->bvk", betas, model.shapedirs)
    torch.testing.assert_close(model(hand_pose=pose, shaped_verts=shaped).vertices,
                               model(betas=betas, hand_pose=pose).vertices, rtol=0, atol=1e-12)
    uniform = torch.full_like(model.lbs_weights, 1 / 16)
    torch.testing.assert_close(model(hand_pose=pose, custom_lbs_weights=uniform).vertices,
                               MANO(_with_weights(tube_data, uniform.numpy()), dtype=torch.float64)(
                                   hand_pose=pose).vertices, rtol=0, atol=0)
    per_pose = model.lbs_weights.expand(2, -1, -1)  # (B, V, 16) weights take the batched path
    torch.testing.assert_close(model(hand_pose=pose, custom_lbs_weights=per_pose).vertices,
                               model(hand_pose=pose).vertices, rtol=0, atol=1e-12)


def _with_weights(data, weights):
    import dataclasses
    return dataclasses.replace(data, lbs_weights=weights)


def test_left_is_mirror_of_right(tube_data, tube_data_left):
    right = MANO(tube_data, dtype=torch.float64, seal=True)
    left = MANO(tube_data_left, is_rhand=False, dtype=torch.float64, seal=True)
    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.4, size=(4, 48))
    betas = torch.from_numpy(rng.normal(size=(4, 10)))
    out_r = right(betas, torch.from_numpy(pose[:, :3]), torch.from_numpy(pose[:, 3:]))
    mirrored = mirror_pose(pose)
    out_l = left(betas, torch.from_numpy(mirrored[:, :3]), torch.from_numpy(mirrored[:, 3:]))
    flip = torch.tensor([-1.0, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(out_l.vertices, out_r.vertices * flip, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_l.joints, out_r.joints * flip, rtol=0, atol=1e-12)


def test_official_left_file_gets_shapedirs_fix(tube_data, tube_data_left, tmp_path):
    """The official MANO_LEFT.pkl carries the right hand's shapedirs x sign; create() fixes it and says so."""
    import dataclasses
    buggy = dataclasses.replace(tube_data_left, shapedirs=tube_data_left.shapedirs * np.array([-1, 1, 1])[:, None])
    write_official_style_pickle(buggy, tmp_path / "MANO_LEFT.pkl")
    with pytest.warns(UserWarning, match="shapedirs fix"):
        fixed = smplx.create(tmp_path, is_rhand=False, dtype=torch.float64)
    np.testing.assert_allclose(fixed.shapedirs.numpy(), tube_data_left.shapedirs, rtol=0, atol=0)
    save_model_file(tube_data_left, tmp_path / "ours" / "MANO_LEFT.npz")
    ours = smplx.create(tmp_path / "ours", is_rhand=False, dtype=torch.float64)  # our files need no fix
    np.testing.assert_allclose(ours.shapedirs.numpy(), tube_data_left.shapedirs, rtol=0, atol=0)


def test_create_finds_files_and_explains_missing_ones(tube_data, tmp_path):
    save_model_file(tube_data, tmp_path / "mano" / "MANO_RIGHT.pkl")
    found = smplx.create(tmp_path)
    assert found.v_template.shape == (tube_data.num_vertices, 3)
    assert found.source == str(tmp_path / "mano" / "MANO_RIGHT.pkl")
    assert smplx.create(tmp_path / "mano" / "MANO_RIGHT.pkl").num_vertices == tube_data.num_vertices
    fallback = smplx.create(tmp_path, is_rhand=False)
    assert fallback.v_template[:, 0].mean() < 0  # the mirrored open hand
    assert fallback.source == smplx.body_models.OPEN_HAND == "open_hand"
    assert torch.equal(smplx.create("open_hand", is_rhand=False).v_template, fallback.v_template)
    with pytest.raises(FileNotFoundError, match=r"no MANO_LEFT model found \(looked at .*MANO_LEFT\.pkl.*mano"):
        smplx.find_model_file(tmp_path, is_rhand=False)
    with pytest.raises(ValueError, match=r"model_type='smplh' is not one of \['mano'\]"):
        smplx.create(tmp_path, model_type="smplh")


def test_bad_inputs_are_named(tube_data):
    model = MANO(tube_data)
    with pytest.raises(ValueError, match=r"hand_pose has shape \(2, 44\), expected \(2, 45\)"):
        model(hand_pose=torch.zeros(2, 44))
    with pytest.raises(ValueError, match=r"betas is torch.float64 .* the model is torch.float32"):
        model(betas=torch.zeros(1, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="center_id=16"):
        MANO(tube_data, center_id=16)


def test_gradients_flow_to_pose_and_shape(tube_data):
    model = MANO(tube_data, dtype=torch.float64, center_id=4, scale=10.0, seal=True)
    pose = torch.zeros(1, 45, dtype=torch.float64, requires_grad=True)
    betas = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, b: model(betas=b, hand_pose=p).vertices[:, ::25], (pose, betas))
