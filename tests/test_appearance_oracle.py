"""bench.appearance_oracle: a render re-composited from its own layers is the render; each row replaces exactly
one factor by the synthetic capture's truth."""

import shutil

import pytest
import torch

import smplx
from bench.appearance_oracle import ROWS, main, swapped_layers
from handavatar.data import DataConfig, InterHandDataset, to_tensors
from tests.test_avatar_network import _avatar


@pytest.fixture(scope="module")
def frame(synthetic_capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle") / "capture"
    shutil.copytree(synthetic_capture, root)
    config = DataConfig(root=str(root), mode="image", resolution=48, background="black", layers=True)
    sample = to_tensors(InterHandDataset(config)[0])
    hand = smplx.subdivide(smplx.create("open_hand", **smplx.PAPER_FRAME), 1)
    return hand, sample


def test_the_avatars_own_layers_give_back_its_render(frame):
    """With the albedo once per ray, rgb = alpha x albedo x shading + (1 - alpha) background exactly, so the
    'avatar' row is the render itself (shading not divided by alpha, or the background left in the albedo,
    would break it)."""
    hand, sample = frame
    avatar = _avatar(hand, albedo_at="surface", shading_at="surface", shadow_rays=8)
    sample = {**sample, "bgcolor": torch.tensor([0.2, 0.4, 0.6])}
    with torch.no_grad():
        out = avatar.render(sample)
    assert ((out["alpha"] > 0.01) & (out["alpha"] < 0.99)).any()  # partly covered pixels exercise the division
    frames = swapped_layers(out, sample)
    assert set(frames) == set(ROWS)
    torch.testing.assert_close(frames["avatar"], out["rgb"][0].clamp(0, 1), atol=1e-5, rtol=0)


def test_each_row_replaces_one_factor(frame):
    """A constant avatar (albedo 0.5, shading 0.8, alpha 0.9 everywhere, black background) against closed forms."""
    _, sample = frame
    h, w = sample["target_alpha"][0].shape
    out = {"alpha": torch.full((1, h, w), 0.9), "albedo": torch.full((1, h, w, 3), 0.45),
           "shading": torch.full((1, h, w, 1), 0.72)}
    frames = swapped_layers(out, sample)
    hand = sample["target_alpha"][0][..., None] > 0
    albedo, shading = sample["target_albedo"][0], sample["target_shading"][0]
    assert hand.any() and (~hand).any()
    torch.testing.assert_close(frames["avatar"], torch.full((h, w, 3), 0.9 * 0.5 * 0.8))
    torch.testing.assert_close(frames["true_albedo"], torch.where(hand, 0.9 * albedo * 0.8, 0.36))
    torch.testing.assert_close(frames["true_shading"], torch.where(hand, 0.9 * 0.5 * shading, 0.36).expand(h, w, 3))
    torch.testing.assert_close(frames["true_alpha"], torch.where(hand, 0.4, 0.0).expand(h, w, 3))
    torch.testing.assert_close(frames["true_albedo_and_shading"], torch.where(hand, 0.9 * albedo * shading, 0.36))


def test_a_capture_without_ground_truth_is_refused(tmp_path, capsys):
    assert main(["--config", "configs/synthetic/demo.yaml", f"data.root={tmp_path}"]) == 2
    assert "is not a synthetic capture" in capsys.readouterr().err
