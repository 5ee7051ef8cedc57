"""Per-frame pose corrections (handavatar.model.pose_refine): the rotation composition against scipy, a corrected
sample against its definition, and a frame given a known wrong pose refined back to the right one."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handavatar.data.rays import ray_box_intersection
from handavatar.losses import point_silhouette
from handavatar.model.pose_refine import PoseCorrections, compose_rotations, corrected_sample, refine_pose


def test_compose_rotations_is_scipys_product():
    g = torch.Generator().manual_seed(0)
    delta = 0.3 * torch.randn(64, 3, generator=g, dtype=torch.float64)
    orient = 2.5 * torch.randn(64, 3, generator=g, dtype=torch.float64)
    composed = compose_rotations(delta, orient)
    expected = Rotation.from_rotvec(delta.numpy()) * Rotation.from_rotvec(orient.numpy())
    # float64; the axis-angles may differ by a full turn, so compare the matrices
    np.testing.assert_allclose(Rotation.from_rotvec(composed.numpy()).as_matrix(), expected.as_matrix(), atol=1e-9)
    assert (composed.norm(dim=-1) <= np.pi + 1e-9).all()
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fixed = torch.tensor([0.4, -1.0, 2.0], dtype=torch.float64)
    out = compose_rotations(zero, fixed)
    torch.testing.assert_close(out, fixed, rtol=0, atol=1e-12)  # a zero correction keeps the fitted rotation
    # the derivative at zero: a small rotation about each camera axis, by finite differences of scipy's product
    jacobian = torch.autograd.functional.jacobian(lambda d: compose_rotations(d, fixed), zero)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1e-6
        moved = (Rotation.from_rotvec(step) * Rotation.from_rotvec(fixed.numpy())).as_rotvec()
        np.testing.assert_allclose(jacobian[:, axis].numpy(), (moved - fixed.numpy()) / 1e-6, atol=1e-5)


def _sample(generator: torch.Generator) -> dict:
    """A made-up sample with the entries a correction changes (a 2 x 3 pixel grid, a box around the origin)."""
    directions = torch.randn(2, 3, 3, generator=generator) * 0.02 + torch.tensor([0.0, 0.0, 1.0])
    return {"global_orient": torch.tensor([0.3, -0.2, 1.1]), "hand_pose": torch.randn(45, generator=generator) * 0.2,
            "Th": torch.tensor([0.1, -0.2, 8.0]), "rays_o": torch.tensor([-0.1, 0.2, -8.0]), "rays_d": directions,
            "near": torch.zeros(2, 3), "far": torch.zeros(2, 3), "box_min": torch.full((3,), -1.0),
            "box_max": torch.full((3,), 1.0), "ray_mask": torch.ones(2, 3, dtype=torch.bool), "index": torch.tensor(1)}


def test_a_corrected_sample_moves_the_hand_and_the_rays_origin():
    g = torch.Generator().manual_seed(1)
    sample = _sample(g)
    correction = torch.randn(51, generator=g) * 0.1
    out = corrected_sample(sample, correction)
    torch.testing.assert_close(out["Th"], sample["Th"] + correction[3:6])
    torch.testing.assert_close(out["rays_o"], -(sample["Th"] + correction[3:6]))
    near, far, _ = ray_box_intersection(out["rays_o"].double().numpy(), sample["rays_d"].double().numpy(),
                                        sample["box_min"].numpy(), sample["box_max"].numpy())
    np.testing.assert_allclose(out["near"].numpy(), near, rtol=1e-6)
    np.testing.assert_allclose(out["far"].numpy(), far, rtol=1e-6)
    expected = Rotation.from_rotvec(correction[:3].double().numpy()) * Rotation.from_rotvec([0.3, -0.2, 1.1])
    np.testing.assert_allclose(Rotation.from_rotvec(out["global_orient"].double().numpy()).as_matrix(),
                               expected.as_matrix(), atol=1e-6)
    torch.testing.assert_close(out["hand_pose"], sample["hand_pose"] + correction[6:])
    rigid = corrected_sample(sample, correction[:6])
    assert rigid["hand_pose"] is sample["hand_pose"] and torch.equal(rigid["global_orient"], out["global_orient"])
    assert sample["Th"].tolist() == pytest.approx([0.1, -0.2, 8.0])  # the input is left as it was
    with pytest.raises(ValueError, match=r"\(6,\) or \(51,\), not \(7,\)"):
        corrected_sample(sample, torch.zeros(7))


def test_pose_corrections_per_frame_prior_and_index_check():
    corrections = PoseCorrections(3, fingers=False)
    sample = _sample(torch.Generator().manual_seed(2))
    with torch.no_grad():
        corrections.corrections[1].copy_(torch.tensor([0.0, 0.0, 0.0, 0.5, 0.0, -1.0]))
    out = corrections(sample)
    torch.testing.assert_close(out["Th"], sample["Th"] + torch.tensor([0.5, 0.0, -1.0]))
    assert corrections.prior(sample).item() == pytest.approx(1.25)
    assert corrections.table().shape == (3, 6) and corrections.table()[[0, 2]].abs().sum() == 0
    with pytest.raises(IndexError, match="frame index 3 is outside the 3 frames"):
        corrections({**sample, "index": torch.tensor(3)})


def test_refinement_recovers_a_known_wrong_pose():
    """A hand (the open hand, its 778 vertices) seen by a 64 px camera; the frame's pose is given a known wrong
    rotation (about 7 degrees) and translation (5 mm across, 1 cm in depth); refining the correction against the point
    silhouette of the true pose finds the inverse of that error: the sign, the composition order and the rays' origin
    all matter."""
    from smplx import create
    layer = create("open_hand", center_id=4, scale=10.0)
    K = torch.tensor([[120.0, 0.0, 31.5], [0.0, 120.0, 31.5], [0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(3)
    truth = {**_sample(g), "K": K, "Th": torch.tensor([0.05, -0.05, 8.0]),
             "global_orient": torch.tensor([0.2, 2.8, 0.1])}
    truth["hand_pose"] = truth["hand_pose"] * 0.5

    def silhouette(sample: dict) -> torch.Tensor:
        posed = layer(global_orient=sample["global_orient"][None], hand_pose=sample["hand_pose"][None])
        return point_silhouette(posed.vertices + sample["Th"], sample["K"], 64, radius=4.0)

    target = silhouette(truth).detach()
    assert target.sum() > 50  # the hand is in view
    error = torch.tensor([0.08, -0.05, 0.1, 0.05, -0.05, 0.1])
    turned = Rotation.from_rotvec(error[:3].double().numpy()) * Rotation.from_rotvec(truth["global_orient"].numpy())
    wrong = {**truth, "Th": truth["Th"] + error[3:6],  # made without corrected_sample, from the definition
             "global_orient": torch.tensor(turned.as_rotvec(), dtype=torch.float32)}
    loss = lambda sample: ((silhouette(sample) - target) ** 2).mean()  # noqa: E731
    found = refine_pose(lambda step: wrong, loss, steps=80, lr=1e-2, prior=0.0, fingers=False)
    # the inverse of the error (exp(-r) exp(r) R = R): within 0.005 rad, 0.2 mm across and 0.5 mm in depth, which a
    # 64 px silhouette at 0.8 m sees least (seen: 0.0021 rad, 0.023 mm, 0.094 mm; the loss down to 1.2e-4 of its start)
    torch.testing.assert_close(found[:3], -error[:3], rtol=0, atol=0.005)
    torch.testing.assert_close(found[3:5], -error[3:5], rtol=0, atol=0.002)
    assert abs(found[5] + error[5]) < 0.005
    assert loss(corrected_sample(wrong, found)) < 0.01 * loss(wrong)
