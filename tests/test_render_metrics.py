"""Volume compositing against hand-computed cases, ray samples, and the metrics against scikit-image."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from handavatar.metrics import psnr, ssim, ssim_map
from handavatar.render import composite, part_box_intervals, sample_depths, sample_in_intervals


def test_compositing_by_hand():
    """Two rays of three samples: weights alpha_i prod_{j<i} (1 - alpha_j + 1e-10), background behind the rest."""
    alpha = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.2, 0.0]], dtype=torch.float64)
    red, green, blue = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
    rgb = torch.tensor([[red, green, blue], [red, green, blue]], dtype=torch.float64)
    depth = torch.tensor([[[1.0], [2.0], [3.0]]] * 2, dtype=torch.float64)
    background = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    out = composite(alpha, {"rgb": rgb, "albedo": rgb.flip(-1), "depth": depth, "shading": depth}, background)
    e = 1e-10
    w0 = [0.5, 0.5 * (0.5 + e), 1.0 * (0.5 + e) * (0.5 + e)]
    w1 = [0.0, 0.2 * (1 + e), 0.0]
    np.testing.assert_allclose(out["weights"].numpy(), [w0, w1], rtol=1e-12)
    np.testing.assert_allclose(out["alpha"].numpy(), [sum(w0), sum(w1)], rtol=1e-12)
    np.testing.assert_allclose(out["rgb"][0].numpy(), np.array(w0) + (1 - sum(w0)) * 0.5, atol=1e-9)
    np.testing.assert_allclose(out["rgb"][1].numpy(), np.array(w1) + (1 - sum(w1)) * 0.5, atol=1e-9)
    np.testing.assert_allclose(out["albedo"][1].numpy(), np.array(w1)[::-1] + (1 - sum(w1)) * 0.5, atol=1e-9)
    np.testing.assert_allclose(out["depth"][:, 0].numpy(), [w0[0] + 2 * w0[1] + 3 * w0[2], 2 * w1[1]], rtol=1e-9)
    np.testing.assert_allclose(out["shading"].numpy(), out["depth"].numpy())  # no background behind other maps
    np.testing.assert_allclose(out["transmittance"].numpy(), [(0.5 + e) ** 2 * e, (1 + e) * (0.8 + e) * (1 + e)],
                               rtol=1e-9)


def test_compositing_in_stretches():
    """A ray composited in consecutive stretches, each starting from the transmittance the previous one left, has
    the weights and sums of the ray composited at once."""
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(4, 9, dtype=torch.float64, generator=generator)
    values = {"rgb": torch.rand(4, 9, 3, dtype=torch.float64, generator=generator)}
    whole = composite(alpha, values)
    first = composite(alpha[:, :4], {"rgb": values["rgb"][:, :4]})
    second = composite(alpha[:, 4:], {"rgb": values["rgb"][:, 4:]}, transmittance=first["transmittance"])
    torch.testing.assert_close(torch.cat([first["weights"], second["weights"]], 1), whole["weights"])
    torch.testing.assert_close(first["rgb"] + second["rgb"], whole["rgb"])
    torch.testing.assert_close(second["transmittance"], whole["transmittance"])


def test_sample_depths():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 6.0])
    z = sample_depths(near, far, 5)
    np.testing.assert_allclose(z.numpy(), [[1, 1.25, 1.5, 1.75, 2], [2, 3, 4, 5, 6]])
    jitter = sample_depths(near, far, 5, stratified=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(jitter[:, 1:] >= jitter[:, :-1]) and torch.all(jitter >= near[:, None])
    assert torch.all(jitter <= far[:, None]) and not torch.allclose(jitter, z)
    mids = 0.5 * (z[:, 1:] + z[:, :-1])
    assert torch.all(jitter[:, 1:-1] >= mids[:, :-1]) and torch.all(jitter[:, 1:-1] <= mids[:, 1:])


@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_and_ssim_match_scikit_image(seed):
    rng = np.random.default_rng(seed)
    target = rng.random((40, 50, 3))
    pred = np.clip(target + rng.normal(scale=0.05 + 0.1 * seed, size=target.shape), 0, 1)
    p, t = torch.tensor(pred), torch.tensor(target)
    assert psnr(p, t).item() == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-9)
    reference = structural_similarity(target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=-1)
    assert ssim(p, t).item() == pytest.approx(reference, rel=1e-7)
    batched = ssim(torch.stack([p, t]), torch.stack([t, t]))
    assert batched[0].item() == pytest.approx(reference, rel=1e-7) and batched[1].item() == pytest.approx(1.0)


def test_masked_metrics_only_see_the_hand():
    target = torch.zeros(32, 32, 3)
    pred = target.clone()
    pred[:, 16:] = 0.5  # wrong only right of column 16
    left = torch.zeros(32, 32, dtype=torch.bool)
    left[:, :10] = True
    assert psnr(pred, target, left).item() == pytest.approx(120.0)  # the MSE floor: identical pixels
    assert psnr(pred, target).item() == pytest.approx(-10 * np.log10(0.125), rel=1e-6)
    assert ssim(pred, target, left).item() == pytest.approx(1.0)
    assert ssim(pred, target).item() < 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_metrics_match_a_hand_computation(seed):
    """On images that differ everywhere: masked PSNR is the PSNR of the masked pixels' values (every channel), and
    masked SSIM the mean of scikit-image's full SSIM map over the window centres on the mask."""
    rng = np.random.default_rng(seed)
    target = rng.random((30, 40, 3))
    pred = np.clip(target + rng.normal(scale=0.1, size=target.shape), 0, 1)
    pred[:, 20:] = np.clip(pred[:, 20:] + 0.3, 0, 1)  # the right half is much worse
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:25, 3:24] = rng.random((20, 21)) > 0.3  # mostly on the better half
    want = peak_signal_noise_ratio(target[mask], pred[mask], data_range=1.0)
    got = psnr(torch.tensor(pred), torch.tensor(target), torch.tensor(mask)).item()
    assert got == pytest.approx(want, rel=1e-9)
    assert abs(got - psnr(torch.tensor(pred), torch.tensor(target)).item()) > 0.5  # the mask matters here
    _, full = structural_similarity(target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0, channel_axis=-1, full=True)
    centres = np.zeros_like(mask)
    centres[5:-5, 5:-5] = mask[5:-5, 5:-5]  # windows of 11 px that fit inside the image
    want = full[centres].mean()
    got = ssim(torch.tensor(pred), torch.tensor(target), torch.tensor(mask)).item()
    assert got == pytest.approx(want, rel=1e-7)
    window_map = ssim_map(torch.tensor(pred), torch.tensor(target)).permute(1, 2, 0).numpy()  # its defaults
    np.testing.assert_allclose(window_map, full[5:-5, 5:-5], rtol=0, atol=1e-12)
    # a batch gives each image's own values (with its own mask)
    preds, targets = torch.tensor(np.stack([pred, target])), torch.tensor(np.stack([target, target]))
    masks = torch.tensor(np.stack([mask, ~mask]))
    batched = [psnr(preds, targets), psnr(preds, targets, masks), ssim(preds, targets, masks)]
    single = [[psnr(preds[i], targets[i]), psnr(preds[i], targets[i], masks[i]), ssim(preds[i], targets[i], masks[i])]
              for i in range(2)]
    for k, values in enumerate(batched):
        assert values.shape == (2,)
        torch.testing.assert_close(values, torch.stack([single[0][k], single[1][k]]), rtol=1e-12, atol=0)


def _random_boxes(k, seed):
    g = torch.Generator().manual_seed(seed)
    rotations = torch.linalg.qr(torch.randn(k, 3, 3, generator=g, dtype=torch.float64))[0]
    joints = torch.randn(k, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0, 0, 3.0])
    centre = torch.randn(k, 3, generator=g, dtype=torch.float64) * 0.1
    half = torch.rand(k, 3, generator=g, dtype=torch.float64) * 0.3 + 0.05
    return rotations, joints, centre, half


def _inside(points, rotations, joints, centre, half):
    local = torch.einsum("kji,...kj->...ki", rotations, points[..., None, :] - joints)
    return ((local - centre).abs() <= half + 1e-9).all(-1).any(-1)


@pytest.mark.parametrize("stratified", [False, True])
def test_samples_fill_the_union_of_part_boxes_evenly(stratified):
    """Against marching along each ray: every sample is inside some box, samples are sorted, each maximal stretch
    inside the boxes gets a share of samples proportional to its length, rays that miss every box get none."""
    boxes = _random_boxes(6, 0)
    g = torch.Generator().manual_seed(1)
    directions = torch.cat([torch.rand(120, 2, generator=g, dtype=torch.float64) * 0.4 - 0.2,
                            torch.ones(120, 1, dtype=torch.float64)], 1)
    origin = torch.zeros(3, dtype=torch.float64)
    enter, leave = part_box_intervals(origin, directions, *boxes)
    depths, hit = sample_in_intervals(enter, leave, 40, stratified=stratified, generator=g)
    t = torch.linspace(0, 6, 20001, dtype=torch.float64)
    inside = _inside(origin + t[None, :, None] * directions[:, None], *boxes)  # (R, T)
    assert torch.equal(hit, inside.any(1)) and hit.sum() > 20 and (~hit).sum() > 5
    assert torch.all(depths[~hit] == 0) and torch.all(depths[:, 1:] >= depths[:, :-1])
    points = origin + depths[hit][..., None] * directions[hit][:, None]
    assert torch.all(_inside(points, *boxes))
    step = t[1] - t[0]
    for r in torch.nonzero(hit)[:20, 0]:
        runs = torch.diff(torch.cat([torch.tensor([0]), inside[r].int(), torch.tensor([0])]))
        starts, ends = t[torch.nonzero(runs == 1)[:, 0]], t[torch.nonzero(runs == -1)[:, 0] - 1]
        total = (ends - starts).sum()
        for a, b in zip(starts, ends):
            share = ((depths[r] >= a - step) & (depths[r] <= b + step)).sum().item()
            assert abs(share - 40 * (b - a) / total) <= 1.5
