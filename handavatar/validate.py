"""Validation (`phase: val`, reference §7.3): render the evaluation subject with the trained avatar and report
PSNR, SSIM and LPIPS as the paper measures them (the whole square crop, black background, 8-bit, only box rays
rendered), PSNR and SSIM on the hand's pixels only, and, on a synthetic capture, the albedo and shading errors
against their ground truth. The LPIPS used (LPIPS-VGG or ST-LPIPS, handavatar.lpips) is named in the summary.
Beside them, the textured-mesh baseline's figures on the same frames (handavatar.baseline; computed once into
texture_baseline/ next to val/, then read back while its inputs stay the same).

Writes, next to latest.tar: val/metrics.csv (one row per frame), val/summary.json (means, with the protocols named)
and val/frames.png (up to 8 frames: rgb | albedo | shading | target | mask). `Progress` does the same for a few
frames during training, into TensorBoard.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from smplx.utils.fileio import atomic_write
from handavatar.baseline import BASELINE_METRICS, texture_baseline
from handavatar.config import data_config
from handavatar.data import InterHandDataset, to_tensors
from handavatar.lpips import LPIPS, load_lpips
from handavatar.metrics import frame_metrics
from handavatar.model.shading import SelF

__all__ = ["validate", "evaluation_dataset", "frame_metrics", "layer_errors", "saturated_shading", "Progress",
           "append_row"]


def evaluation_dataset(config) -> InterHandDataset:
    """Every `data.eval_skip`-th frame of `data.eval_subject` (in `data.eval_order`) as whole crops on black (the
    paper protocol)."""
    return InterHandDataset(data_config(config, "eval"))


def layer_errors(out: dict, sample: dict) -> dict[str, float]:
    """Mean absolute error on the hand's pixels of the rendered albedo and shading against a synthetic capture's
    ground truth, after the usual per-channel scale alignment (albedo x shading is only known up to a scale per
    channel: each rendered channel is multiplied by the least-squares scale onto the truth first)."""
    hand = sample["target_alpha"][0].cpu() > 0
    errors = {}
    for name in ("albedo", "shading"):
        pred = out[name][0].float().cpu()[hand]  # (N, C)
        truth = sample[f"target_{name}"][0].float().cpu()[hand]
        scale = (pred * truth).sum(0) / (pred * pred).sum(0).clamp_min(1e-12)
        errors[f"{name}_error"] = (scale * pred - truth).abs().mean().item()
    return errors


def saturated_shading(out: dict) -> float:
    """Fraction of a render's opaque pixels (alpha > 0.5) whose shading is 1 or 0 to within 5e-4 (of their alpha,
    since the shading map is composited): where SelF's sigmoid is saturated it passes no gradient, so a SelF that is
    saturated everywhere no longer learns."""
    alpha = out["alpha"].float()
    opaque = alpha > 0.5
    if not opaque.any():
        return 0.0
    shading, alpha = out["shading"][..., 0].float()[opaque], alpha[opaque]
    return ((shading >= alpha - 5e-4) | (shading <= 5e-4)).float().mean().item()


def _tile(out: dict, sample: dict) -> torch.Tensor:
    """(H, 5W, 3) rgb | albedo | shading | target | mask of a rendered frame (P = 1)."""
    panels = [out["rgb"][0].clamp(0, 1), out["albedo"][0].clamp(0, 1), out["shading"][0].expand(-1, -1, 3),
              sample["target_rgb"][0], sample["target_alpha"][0][..., None].expand(-1, -1, 3)]
    return torch.cat([p.float().cpu() for p in panels], 1)


def validate(config, avatar, out_dir: Path, device: torch.device, *, progress: bool = True) -> dict:
    """Render every `data.eval_skip`-th frame of `data.eval_subject` and write the reports (see the module docstring).

    Args:
        config: the AvatarConfig of the run.
        avatar: the trained HandAvatar.

    Returns:
        The summary dict.
    """
    d = config.data
    dataset = evaluation_dataset(config)
    dataset.config.layers = synthetic = (Path(d.root) / "capture.json").is_file()
    lpips = load_lpips(config.lpips.vgg, config.lpips.heads, device=device)
    rows, tiles = [], []
    avatar.eval()
    with torch.no_grad():
        for index in tqdm(range(len(dataset)), desc="validating", unit="frame", disable=not progress):
            sample = to_tensors(dataset[index], device)
            out = avatar.render(sample, chunk=config.chunk)
            rows.append({"key": sample["key"], **frame_metrics(out["rgb"], sample, lpips),
                         **(layer_errors(out, sample) if synthetic else {})})
            if len(tiles) < 8:
                tiles.append(_tile(out, sample))
    avatar.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(rows[0])
    text = "\n".join([",".join(names)] + [",".join(str(r[n]) for n in names) for r in rows]) + "\n"
    atomic_write(out_dir / "metrics.csv", lambda f: f.write(text.encode()))
    summary = {"subject": d.eval_subject, "frames": len(rows), "eval_skip": d.eval_skip,
               "protocol": f"paper: whole {d.resolution}x{d.resolution} crop, black background, 8-bit; masked: hand "
                           "pixels only (PSNR, SSIM)",
               "lpips_name": lpips.name, "renderer": avatar.options.renderer,
               **{name: float(np.mean([r[name] for r in rows])) for name in names[1:]}}
    if synthetic:
        summary["layer_protocol"] = ("albedo_error, shading_error: mean absolute error on hand pixels in [0, 1] after "
                                     "a least-squares scale per channel")
    baseline_dir = out_dir.parent / "texture_baseline"
    baseline = texture_baseline(config, dataset, lpips, baseline_dir, progress=progress)
    summary["texture_baseline"] = {**{name: baseline[name] for name in BASELINE_METRICS}, "outputs": str(baseline_dir)}
    atomic_write(out_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    picture = Image.fromarray((torch.cat(tiles, 0).numpy() * 255 + 0.5).astype(np.uint8))
    atomic_write(out_dir / "frames.png", lambda f: picture.save(f, format="PNG"))
    return summary


class Progress:
    """Progress during training (rank 0): renders the first `train.progress_frames` evaluation frames, writes the
    tile rgb | albedo | shading | target | mask and the mean PSNR/SSIM/LPIPS to TensorBoard ('progress/...') and
    appends a row (iteration, training seconds, metrics) to progress.csv. Warns when SelF's shading is saturated at 1
    on nearly every opaque pixel (`saturated_shading`)."""

    def __init__(self, config, dataset: InterHandDataset, lpips: LPIPS, csv: Path, device: torch.device):
        self.samples = [to_tensors(dataset[i], device) for i in range(min(config.train.progress_frames,
                                                                          len(dataset)))]
        self.lpips, self.csv, self.chunk = lpips, csv, config.chunk

    def log(self, avatar, board, iteration: int, seconds: float) -> dict[str, float]:
        avatar.eval()
        rows, tiles = [], []
        with torch.no_grad():
            for sample in self.samples:
                out = avatar.render(sample, chunk=self.chunk)
                rows.append({**frame_metrics(out["rgb"], sample, self.lpips),
                             "shading_saturated": saturated_shading(out)})
                tiles.append(_tile(out, sample))
        avatar.train()
        means = {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}
        if isinstance(avatar.shading, SelF) and means["shading_saturated"] > 0.99:  # LightShading has no sigmoid
            tqdm.write(f"warning: at iteration {iteration} SelF's shading is saturated (0 or 1) on "
                       f"{100 * means['shading_saturated']:.1f}% of the hand: its sigmoid passes no gradient there, so "
                       "SelF no longer learns; lower train.lr_shading (published 5e-4) and train again",
                       file=sys.stderr)
        board.add_image("progress", torch.cat(tiles, 0).numpy(), iteration, dataformats="HWC")
        for name, value in means.items():
            board.add_scalar(f"progress/{name}", value, iteration)
        append_row(self.csv, {"iteration": str(iteration), "seconds": f"{seconds:.1f}",
                              **{name: f"{value:.6f}" for name, value in means.items()}})
        return means


def append_row(path: Path, row: dict[str, str]) -> None:
    """Append a row to a CSV file, writing the header first for a new file. When the file's header has other columns
    (a run resumed by code that reports other metrics), the file is first rewritten under the new header, with its
    old rows kept and their missing values left empty."""
    columns = list(row)
    lines = path.read_text().splitlines() if path.is_file() else []
    if lines and lines[0].split(",") == columns:
        with open(path, "a") as f:
            f.write(",".join(row.values()) + "\n")
        return
    old = lines[0].split(",") if lines else columns
    rows = [dict(zip(old, line.split(","))) for line in lines[1:]] + [row]
    text = "\n".join([",".join(columns)] + [",".join(r.get(c, "") for c in columns) for r in rows]) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
