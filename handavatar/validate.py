"""Validation (`phase: val`, reference §7.3): render the evaluation subject with the trained avatar and report
PSNR and SSIM as the paper measures them (the whole square crop, black background, only box rays rendered) and on
the hand's pixels only.

Writes, next to latest.tar: val/metrics.csv (one row per frame), val/summary.json (means, with the protocol named)
and val/frames.png (up to 8 frames: target | rgb | albedo | shading). LPIPS is not computed yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from smplx.fileio import atomic_write
from handavatar.data import DataConfig, InterHandDataset, to_tensors
from handavatar.metrics import psnr, ssim

__all__ = ["validate"]


def validate(config, avatar, out_dir: Path, device: torch.device, *, progress: bool = True) -> dict:
    """Render every `data.eval_skip`-th frame of `data.eval_subject` and write the reports (see the module docstring).

    Args:
        config: the AvatarConfig of the run.
        avatar: the trained HandAvatar.

    Returns:
        The summary dict.
    """
    d = config.data
    dataset = InterHandDataset(DataConfig(root=d.root, subject=d.eval_subject, hand=d.hand,
                                          model=config.smpl_cfg.model_path, mode="image", resolution=d.resolution,
                                          crop_scale=d.crop_scale, bbox_offset=d.bbox_offset,
                                          box_padding=d.box_padding, background="black", skip=d.eval_skip,
                                          max_frames=d.max_frames))
    rows, tiles = [], []
    avatar.eval()
    with torch.no_grad():
        for index in tqdm(range(len(dataset)), desc="validating", unit="frame", disable=not progress):
            sample = to_tensors(dataset[index], device)
            out = avatar.render(sample, chunk=config.chunk)
            pred = out["rgb"][0].clamp(0, 1).float().cpu()
            target = sample["target_rgb"][0].float().cpu()
            # the published protocol quantises both images to 8 bits before measuring
            pred, target = (torch.round(x * 255) / 255 for x in (pred, target))
            hand = sample["target_alpha"][0].cpu() > 0
            rows.append({"key": sample["key"], "psnr": psnr(pred, target).item(), "ssim": ssim(pred, target).item(),
                         "psnr_masked": psnr(pred, target, hand).item(),
                         "ssim_masked": ssim(pred, target, hand).item()})
            if len(tiles) < 8:
                shading = out["shading"][0].expand(-1, -1, 3).float().cpu()
                tiles.append(torch.cat([target, pred, out["albedo"][0].float().cpu(), shading], 1))
    avatar.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["key", "psnr", "ssim", "psnr_masked", "ssim_masked"]
    text = "\n".join([",".join(names)] + [",".join(str(r[n]) for n in names) for r in rows]) + "\n"
    atomic_write(out_dir / "metrics.csv", lambda f: f.write(text.encode()))
    summary = {"subject": d.eval_subject, "frames": len(rows), "eval_skip": d.eval_skip,
               "protocol": "paper: whole 256x256 crop, black background, 8-bit; masked: hand pixels only",
               "lpips": "not computed yet",
               **{name: float(np.mean([r[name] for r in rows])) for name in names[1:]}}
    atomic_write(out_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    picture = Image.fromarray((torch.cat(tiles, 0).numpy() * 255 + 0.5).astype(np.uint8))
    atomic_write(out_dir / "frames.png", lambda f: picture.save(f, format="PNG"))
    return summary
