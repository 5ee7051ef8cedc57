import numpy as np
import pytest
import torch

from smplx.hand_pose import (JOINT_LIMITS, NAMED_POSES, angles_to_pose, joint_frames, mix_poses, named_poses,
                             pose_to_angles)
from smplx.lbs import batch_rodrigues
from smplx.open_hand import build_open_hand
from tests.hand_fixtures import mirror_pose


@pytest.fixture(scope="module")
def frames():
    data = build_open_hand()
    return joint_frames(data.j_regressor @ data.v_template)


def test_frames_are_right_handed_rotations(frames):
    np.testing.assert_allclose(np.swapaxes(frames, 1, 2) @ frames, np.broadcast_to(np.eye(3), frames.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0, atol=1e-12)


def test_angles_compose_flexion_abduction_twist(frames):
    """R = exp(flex * f) exp(abd * a) exp(twist * t), built here with batch_rodrigues about each frame axis."""
    rng = np.random.default_rng(0)
    angles = rng.uniform(-60, 60, size=(4, 15, 3))
    pose = angles_to_pose(angles, frames)
    axes = torch.from_numpy(np.swapaxes(frames, 1, 2))  # (15, 3 axes, 3)
    rad = torch.from_numpy(np.deg2rad(angles))
    rots = [batch_rodrigues(axes[:, i] * rad[..., i:i + 1]) for i in range(3)]
    expected = rots[0] @ rots[1] @ rots[2]
    got = batch_rodrigues(torch.from_numpy(pose).reshape(4, 15, 3))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)  # float64
    np.testing.assert_allclose(pose_to_angles(pose, frames), angles, atol=1e-9)  # |angles| < 90: unique


def test_flexion_curls_towards_the_palm(frames):
    data = build_open_hand()
    joints = data.j_regressor @ data.v_template
    palmar = -np.array([0.0, 1.0, 0.0])  # the open hand's palm faces -y
    for j, child in ((1, 2), (4, 5), (7, 8), (10, 11)):
        bone = joints[child] - joints[j]
        angles = np.zeros((15, 3))
        angles[j - 1, 0] = 45
        rot = batch_rodrigues(torch.from_numpy(angles_to_pose(angles, frames).reshape(15, 3)))[j - 1].numpy()
        assert (rot @ bone - bone) @ palmar > 0.5 * np.linalg.norm(bone) * np.sin(np.deg2rad(45)) * 0.9


def test_named_poses_within_limits_and_mirrored_for_left(frames):
    for name, angles in NAMED_POSES.items():
        assert np.all(angles >= JOINT_LIMITS[..., 0]) and np.all(angles <= JOINT_LIMITS[..., 1]), name
    left = build_open_hand(is_rhand=False)
    left_frames = joint_frames(left.j_regressor @ left.v_template, is_rhand=False)
    names = list(NAMED_POSES)
    np.testing.assert_allclose(named_poses(names, left_frames), mirror_pose(named_poses(names, frames)),
                               atol=1e-12)
    with pytest.raises(KeyError, match="unknown poses \\['wave'\\]"):
        named_poses(["fist", "wave"], frames)


def test_mixed_poses_stay_within_limits():
    keys = np.stack(list(NAMED_POSES.values()))
    mixed = mix_poses(keys, 300, np.random.default_rng(0), jitter_deg=10.0)
    assert np.all(mixed >= JOINT_LIMITS[..., 0]) and np.all(mixed <= JOINT_LIMITS[..., 1])
    assert mixed.std(0).max() > 10  # they do vary


def test_pose_frames_need_a_palm(tube_data):
    with pytest.raises(ValueError, match="collinear"):
        joint_frames(tube_data.j_regressor @ tube_data.v_template)


def test_published_prior_mixing_slerps_each_digit_between_two_prior_rows():
    """slerp_prior: every joint of a drawn pose lies on the shorter geodesic between that joint in two rows of the
    prior (the digit's two draws), at the same fraction alpha for every joint of the pose (1 - alpha from the other
    end where a digit drew the rows the other way round); no joint limits."""
    from scipy.spatial.transform import Rotation
    from smplx.hand_pose import slerp_prior
    rng = np.random.default_rng(0)
    prior = Rotation.random(2 * 15, random_state=1).as_rotvec().reshape(2, 45) * 0.8  # two rows, far past the limits
    poses = slerp_prior(prior, 200, rng)
    rows = [Rotation.from_rotvec(r.reshape(15, 3)) for r in prior]
    seen_outside = False
    for pose in poses:
        joints = Rotation.from_rotvec(pose.reshape(15, 3))
        alphas = []
        for digit in range(5):
            for j in range(3 * digit, 3 * digit + 3):
                ends = [rows[k][j] for k in (0, 1)]
                to = [(joints[j] * e.inv()).magnitude() for e in ends]
                between = (ends[0] * ends[1].inv()).magnitude()
                if min(to) < 1e-9:  # at an end: this digit drew the same row twice, or alpha is 0 or 1
                    continue
                assert to[0] + to[1] == pytest.approx(between, abs=1e-7)  # on the geodesic
                alphas.append(to[0] / between)
        folded = np.minimum(alphas, 1 - np.asarray(alphas)) if alphas else np.zeros(1)
        assert np.ptp(folded) < 1e-6  # one alpha for the pose
        seen_outside |= bool(alphas)
    assert seen_outside
    angles = pose_to_angles(poses, np.tile(np.eye(3), (15, 1, 1)))
    assert (angles < JOINT_LIMITS[..., 0] - 1).any() or (angles > JOINT_LIMITS[..., 1] + 1).any()  # unclipped
