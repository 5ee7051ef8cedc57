"""The MANO layer against MANO written out from the paper's equations (tests/mano_reference.py), on a model with
non-zero shape and pose blend shapes read from an official-style pickle."""

import dataclasses

import numpy as np
import pytest
import torch

import smplx
from tests.hand_fixtures import mirror_model, mirror_pose
from tests.mano_pickle import write_official_style_pickle
from tests.mano_reference import mano_reference, pose_corrective_features


def test_pose_features_are_the_rows_of_r_minus_i():
    """Feature 9 (k - 1) + 3 r + c is entry (r, c) of joint k's R - I; the layer's features are the same."""
    from smplx.lbs import batch_rodrigues, pose_features
    rng = np.random.default_rng(0)
    rotations = batch_rodrigues(torch.from_numpy(rng.normal(size=(1, 16, 3))))
    ours = pose_features(rotations)[0].numpy()
    np.testing.assert_allclose(ours, pose_corrective_features(rotations[0].numpy()), rtol=0, atol=1e-15)
    assert not np.allclose(rotations[0, 3].numpy(), rotations[0, 3].numpy().T)  # transposing R would change them


@pytest.mark.parametrize("hand", ["right", "left"])
@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_layer_matches_the_paper_equations(tube_data, hand, flat_hand_mean, tmp_path):
    data = tube_data if hand == "right" else mirror_model(tube_data)
    assert np.abs(data.posedirs).max() > 0 and np.abs(data.shapedirs).max() > 0  # every term of the model counts
    path = tmp_path / f"MANO_{hand.upper()}.pkl"
    if hand == "right":
        write_official_style_pickle(data, path)
        layer = smplx.create(path, flat_hand_mean=flat_hand_mean, dtype=torch.float64)
    else:  # as the released MANO_LEFT.pkl: shapedirs with the right hand's x sign, which create() fixes
        write_official_style_pickle(dataclasses.replace(data, shapedirs=data.shapedirs * [[[-1], [1], [1]]]), path)
        with pytest.warns(UserWarning, match="shapedirs fix"):
            layer = smplx.create(path, is_rhand=False, flat_hand_mean=flat_hand_mean, dtype=torch.float64)
    rng = np.random.default_rng(1)
    betas = rng.normal(size=(3, 10))
    pose = rng.normal(scale=0.6, size=(3, 48))
    if hand == "left":
        pose = mirror_pose(pose)
    out = layer(torch.from_numpy(betas), torch.from_numpy(pose[:, :3]), torch.from_numpy(pose[:, 3:]))
    for b in range(3):
        full = pose[b] + (0 if flat_hand_mean else np.concatenate([np.zeros(3), data.hands_mean]))
        vertices, joints = mano_reference(data, betas[b], full)
        np.testing.assert_allclose(out.vertices[b].numpy(), vertices, rtol=0, atol=1e-12)  # float64, metres
        np.testing.assert_allclose(out.joints[b].numpy(), joints, rtol=0, atol=1e-12)
    # the pose blend shapes matter at these poses: leaving them out moves vertices by far more than the tolerance
    no_pose_blend = mano_reference(dataclasses.replace(data, posedirs=0 * data.posedirs), betas[0], pose[0])
    assert np.abs(no_pose_blend[0] - out.vertices[0].numpy()).max() > 1e-4
