"""bench.train: the ratios it prints, against hand-computed cases, and its baseline arm as a valid config."""

import pytest

from smplx.utils.config import load_config
from handavatar.config import DEFAULTS, AvatarConfig
from bench.train import BASELINE_OVERRIDES, Checkpoint, compare, time_to_reach


def _points(*rows):
    return [Checkpoint(it, s, {"psnr": p}) for it, s, p in rows]


def test_time_to_reach_takes_the_first_checkpoint_in_training_order():
    points = _points((300, 330.0, 27.5), (100, 110.0, 26.0), (200, 220.0, 27.1))
    assert time_to_reach(points, 27.0).iterations == 200
    assert time_to_reach(points, 27.1).iterations == 200  # at least the target
    assert time_to_reach(points, 27.6) is None


def test_compare_against_hand_computed_ratios():
    new = _points((100, 100.0, 26.0), (200, 210.0, 27.2), (400, 400.0, 28.0))  # 1.0 it/s at its last checkpoint
    baseline = _points((550, 900.0, 26.5), (1100, 1650.0, 27.0))  # 1100 / 1650 = 0.667 it/s
    result = compare(new, baseline)
    assert result["speed"] == pytest.approx(1.0 / (1100 / 1650))
    assert result["target"] == 27.0 and result["reached_at"] == 200
    assert result["time_ratio"] == pytest.approx(1650 / 210)
    slower = compare(_points((100, 100.0, 26.0)), baseline)
    assert slower["reached_at"] is None and slower["time_ratio"] is None


def test_the_baseline_overrides_make_the_issue_23_demo_config():
    config = load_config(AvatarConfig, [DEFAULTS, "configs/synthetic/demo.yaml"], list(BASELINE_OVERRIDES))
    assert (config.N_samples, config.network.albedo_at, config.network.shading_at, config.network.lights,
            config.network.shading_normal, config.train.lr_shading, config.train.maxiter) == (
        16, "samples", "samples", 0, True, 5e-4, 1100)
