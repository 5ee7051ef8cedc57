"""Image metrics of the avatar's evaluation (reference §7.3): PSNR and SSIM as the paper computes them (on the whole
square crop, background included), and masked variants over the hand's pixels.

Images are (H, W, 3) or (B, H, W, 3) tensors with values in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from handavatar.lpips import LPIPS

__all__ = ["psnr", "ssim", "ssim_map", "frame_metrics"]


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """20 log10(1 / sqrt(MSE)) over all pixels and channels, or over the pixels where `mask` (H, W) is true.
    Returns one value per image: () or (B,)."""
    err = (pred - target) ** 2
    if mask is None:
        mse = err.mean(dim=(-3, -2, -1))
    else:
        m = mask.to(err.dtype)[..., None]
        mse = (err * m).sum(dim=(-3, -2, -1)) / (3 * m.sum(dim=(-3, -2, -1))).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


def ssim_map(pred: Tensor, target: Tensor, *, window: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM at every window position that fits inside the image ('valid', no padding), per channel.

    Gaussian window (11 px, sigma 1.5), C1 = 0.01^2, C2 = 0.03^2 for a data range of 1.

    Returns:
        (B, 3, H - window + 1, W - window + 1) for (B, H, W, 3) inputs ((3, h, w) for one image).
    """
    single = pred.ndim == 3
    x = (pred[None] if single else pred).permute(0, 3, 1, 2)
    y = (target[None] if single else target).permute(0, 3, 1, 2)
    channels = x.shape[1]
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(channels, 1, window, window)

    def blur(t: Tensor) -> Tensor:
        return torch.nn.functional.conv2d(t, w, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return out[0] if single else out


def ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None, *, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM (see `ssim_map`) over channels and positions; with `mask` (H, W), over the positions whose window
    centre is a hand pixel. Returns () or (B,)."""
    values = ssim_map(pred, target, window=window, sigma=sigma)
    if mask is None:
        return values.mean(dim=(-3, -2, -1))
    half = window // 2
    m = mask[..., half:mask.shape[-2] - half, half:mask.shape[-1] - half].to(values.dtype)[..., None, :, :]
    return (values * m).sum(dim=(-3, -2, -1)) / (values.shape[-3] * m.sum(dim=(-3, -2, -1))).clamp_min(1)


def frame_metrics(rgb: Tensor, sample: dict, lpips: LPIPS | None = None) -> dict[str, float]:
    """PSNR, SSIM (and LPIPS) of one rendered frame (P = 1): the paper protocol (whole crop, both images quantised to
    8 bits) and PSNR/SSIM on the hand's pixels.

    Args:
        rgb: (1, H, W, 3) rendered colour; sample: the dataset sample it renders.
    """
    pred = torch.round(rgb[0].clamp(0, 1).float().cpu() * 255) / 255
    target = torch.round(sample["target_rgb"][0].float().cpu() * 255) / 255
    hand = sample["target_alpha"][0].cpu() > 0
    metrics = {"psnr": psnr(pred, target).item(), "ssim": ssim(pred, target).item(),
               "psnr_masked": psnr(pred, target, hand).item(), "ssim_masked": ssim(pred, target, hand).item()}
    if lpips is not None:
        device = next(lpips.parameters()).device
        metrics["lpips"] = lpips(pred.permute(2, 0, 1)[None].to(device), target.permute(2, 0, 1)[None].to(device)
                                 ).item()
    return metrics
