"""The assembled avatar on a synthetic capture's samples: shapes, background outside the rendered rays, the
compositing identities, which parameters learn, and the ablation switches."""

import shutil

import pytest
import torch

import smplx
from handavatar.data import DataConfig, InterHandDataset, to_tensors
from handavatar.model import HandAvatar, SelF
from pairof import PairOF

OPTIONS = dict(center_id=4, scale=10.0, seal=True, distal=True)


@pytest.fixture(scope="module")
def parts(synthetic_capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("avatar") / "capture"
    shutil.copytree(synthetic_capture, root)
    config = DataConfig(root=str(root), mode="patch", n_patches=2, patch_size=8, sample_subject_ratio=1.0,
                        background="black")
    torch.manual_seed(0)
    sample = to_tensors(InterHandDataset(config)[0])
    hand = smplx.subdivide(smplx.create("open_hand", **OPTIONS), 1)
    return hand, sample


def _avatar(hand, **options):
    torch.manual_seed(0)
    field = PairOF.from_layer(hand, part_samples=32, anchors=256)
    return HandAvatar(hand, field, code_dim=16, samples=8, **options)


def test_render_a_sample(parts):
    hand, sample = parts
    avatar = _avatar(hand)
    out = avatar.render(sample, chunk=40)
    mask = sample["ray_mask"]
    assert out["rgb"].shape == (2, 8, 8, 3) and out["alpha"].shape == (2, 8, 8) and out["shading"].shape == (2, 8, 8, 1)
    assert mask.any() and torch.all(out["alpha"][~mask] == 0) and torch.all(out["rgb"][~mask] == 0)
    assert torch.all((out["rgb"] >= 0) & (out["rgb"] <= 1)) and out["alpha"][mask].max() > 0
    # colour = albedo x shading integrated along the ray; with a black background rgb <= albedo
    assert torch.all(out["rgb"] <= out["albedo"] + 1e-6)
    whole = avatar.render(sample, chunk=10 ** 6)
    torch.testing.assert_close(whole["rgb"], out["rgb"])  # chunking does not change the picture


def test_which_parameters_learn(parts):
    hand, sample = parts
    avatar = _avatar(hand)
    out = avatar.render(sample, stratified=True, generator=torch.Generator().manual_seed(0))
    (out["rgb"].sum() + out["alpha"].sum()).backward()
    learns = {name: p.grad is not None and p.grad.abs().sum().item() > 0 for name, p in avatar.named_parameters()}
    assert all(v for k, v in learns.items() if k.startswith(("albedo.", "shading.", "deformer.", "field.decoder.")))
    assert not any(p.requires_grad for p in avatar.field.part_encoder.parameters())
    assert not any(p.requires_grad for p in avatar.field.local_encoder.parameters())
    assert not any(p.requires_grad for p in avatar.hand.parameters())


def test_ablation_switches(parts):
    hand, sample = parts
    plain = _avatar(hand, deformer=False, shading=False)
    out = plain.render(sample)
    torch.testing.assert_close(out["rgb"], out["albedo"])  # shading 1: colour is the albedo
    assert plain.deformer is None and plain.shading is None
    posed = plain.pose(sample["global_orient"][None], sample["hand_pose"][None])
    direct = hand(global_orient=sample["global_orient"][None], hand_pose=sample["hand_pose"][None])
    torch.testing.assert_close(posed.vertices, direct.vertices)


def test_rendering_only_nonzero_opacity_samples_changes_nothing(parts):
    """Albedo and shading are evaluated only where the opacity is not zero; evaluating them everywhere (the published
    way) composites to the same picture."""
    hand, sample = parts
    avatar = _avatar(hand)
    mask = sample["ray_mask"]
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    origin, directions = sample["rays_o"], sample["rays_d"][mask]
    near, far = sample["near"][mask], sample["far"][mask]
    with torch.no_grad():
        ours = avatar.render_rays(origin, directions, near, far, posed, encoding, sample["bgcolor"])
        points = ours["points"]
        full = avatar.field.query(points.reshape(1, -1, 3), encoding, intermediate=True)
        albedo = avatar.albedo(full.anchor_dists[0], full.anchor_ids[0]).view(*points.shape[:2], 3)
        weights = full.anchor_dists[0].reciprocal()
        weights = weights / weights.sum(-1, keepdim=True)
        embedding = (weights[..., None] * avatar.anchor_embedding[full.anchor_ids[0]]).sum(-2)
        soft = full.soft_part_occupancy[0].transpose(0, 1).reshape(*points.shape[:2], -1)
        shading = avatar.shading(SelF.occlusion(soft), embedding.view(*points.shape[:2], -1), posed.full_pose[0])
        alpha = full.occupancy.view(points.shape[:2])
        w = alpha * torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1] + 1e-10], 1), 1)
        rgb = (w[..., None] * albedo * shading).sum(1) + (1 - w.sum(1))[:, None] * sample["bgcolor"]
    assert (alpha == 0).float().mean() > 0.2  # the shortcut skips a good share of the samples
    torch.testing.assert_close(ours["rgb"], rgb)


def test_sampling_inside_the_part_boxes(parts):
    """sampling='parts' puts every sample of a ray that meets the boxes inside some part box (occupancy can only be
    non-zero there), and renders the same kind of picture."""
    hand, sample = parts
    avatar = _avatar(hand, sampling="parts")
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    mask = sample["ray_mask"]
    with torch.no_grad():
        out = avatar.render_rays(sample["rays_o"], sample["rays_d"][mask], sample["near"][mask], sample["far"][mask],
                                 posed, encoding, sample["bgcolor"])
        _, inside = avatar.field.part_boxes(out["points"].reshape(1, -1, 3), encoding)
    inside = inside.any(1).view(out["points"].shape[:2])
    reached = inside.any(1)
    assert reached.float().mean() > 0.5 and torch.all(inside[reached])
    assert torch.all(out["alpha"][~reached] == 0)
    with pytest.raises(ValueError, match="sampling 'grid'"):
        _avatar(hand, sampling="grid")
