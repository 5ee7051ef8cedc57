"""Validation (`phase: val`, reference §7.3): render the evaluation subject with the trained avatar and report
PSNR, SSIM and LPIPS as the paper measures them (the whole square crop, black background, 8-bit, only box rays
rendered), PSNR and SSIM on the hand's pixels only, and, on a synthetic capture, the albedo and shading errors
against their ground truth. The LPIPS used (LPIPS-VGG or ST-LPIPS, handavatar.lpips) is named in the summary.
Beside them, the textured-mesh baseline's figures on the same frames (handavatar.baseline; computed once into
texture_baseline/ next to val/, then read back while its inputs stay the same).

With `val.refine_steps` > 0 (not in the paper: test-time pose optimisation, a protocol change), each held-out frame's
pose is also refined against its image with the avatar frozen (`refine_heldout_pose`) and the frame measured again:
metrics.csv gets the refined metrics as `refined_*` columns (and the correction's size), summary.json a 'refined'
section, val/frames_refined.png the refined renders; the unrefined metrics stay the summary's own.

Writes, next to latest.tar: val/metrics.csv (one row per frame), val/summary.json (means, with the protocols named)
and val/frames.png (up to 8 frames: rgb | albedo | shading | target | mask). `Progress` does the same for a few
frames during training, into TensorBoard.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from smplx.utils.fileio import to_uint8, write_csv, write_json, write_png
from handavatar.baseline import BASELINE_METRICS, texture_baseline
from handavatar.config import data_config
from handavatar.data import InterHandDataset, to_tensors
from handavatar.lpips import LPIPS, load_lpips
from handavatar.metrics import frame_metrics
from handavatar.model.pose_refine import CORRECTION, corrected_sample, refine_pose
from handavatar.model.shading import SelF

__all__ = ["validate", "evaluation_dataset", "refine_heldout_pose", "frame_metrics", "layer_errors",
           "saturated_shading", "Progress", "append_row"]


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


def refine_heldout_pose(config, avatar, patches: InterHandDataset, index: int, loss_of: Callable, lpips: LPIPS,
                        device: torch.device) -> torch.Tensor:
    """`val.refine_steps` Adam steps of one held-out frame's pose correction (`refine_pose`) with the avatar frozen:
    at each step other patches of the frame (`patches`: the evaluation frames drawn as the training draws them,
    seeded by frame and step) rendered in training mode and `loss_of(avatar, sample, lpips)`, plus the L2 prior.
    Returns the (6,) or (51,) correction (`CORRECTION`)."""
    v = config.val
    trainable = [p.requires_grad for p in avatar.parameters()]
    avatar.requires_grad_(False)
    avatar.train()

    def sample_of(step: int) -> dict:
        torch.manual_seed(config.seed * 1_000_003 + 7_919 * index + step)
        return to_tensors(patches[index], device)

    try:
        return refine_pose(sample_of, lambda sample: loss_of(avatar, sample, lpips), steps=v.refine_steps,
                           lr=v.refine_lr, prior=v.refine_prior, fingers=v.refine_fingers, device=device)
    finally:
        for parameter, flag in zip(avatar.parameters(), trainable):
            parameter.requires_grad_(flag)
        avatar.eval()


def _correction_size(correction: torch.Tensor) -> dict[str, float]:
    """The size of a correction: its rotation's angle (degrees), translation (mm) and largest finger change
    (degrees)."""
    sizes = {"refine_rotation_deg": math.degrees(correction[CORRECTION["rotation"]].norm().item()),
             "refine_translation_mm": 100 * correction[CORRECTION["translation"]].norm().item()}
    if correction.shape[0] > 6:
        sizes["refine_fingers_deg"] = math.degrees(correction[CORRECTION["fingers"]].view(15, 3).norm(dim=1).max())
    return sizes


def validate(config, avatar, out_dir: Path, device: torch.device, *, progress: bool = True,
             refine_loss: Callable | None = None) -> dict:
    """Render every `data.eval_skip`-th frame of `data.eval_subject` and write the reports (see the module docstring).

    Args:
        config: the AvatarConfig of the run.
        avatar: the trained HandAvatar.
        refine_loss: with `val.refine_steps` > 0, (avatar, sample, lpips) -> () loss that the held-out poses are
            refined with (handavatar.train.refinement_loss); None: no refinement.

    Returns:
        The summary dict.
    """
    d = config.data
    dataset = evaluation_dataset(config)
    dataset.config.layers = synthetic = (Path(d.root) / "capture.json").is_file()
    lpips = load_lpips(config.lpips.vgg, config.lpips.heads, device=device)
    refine = bool(config.val.refine_steps) and refine_loss is not None
    if refine:  # the same frames, drawn as patches on random backgrounds as in training
        patches = InterHandDataset(data_config(config, "train", subject=d.eval_subject, skip=d.eval_skip,
                                               order=d.eval_order))
        if list(patches.cache.keys) != list(dataset.cache.keys):
            raise AssertionError("the refinement's frames are not the evaluation frames")
    rows, tiles, refined_tiles = [], [], []
    avatar.eval()
    for index in tqdm(range(len(dataset)), desc="validating", unit="frame", disable=not progress):
        sample = to_tensors(dataset[index], device)
        with torch.no_grad():
            out = avatar.render(sample, chunk=config.chunk)
            rows.append({"key": sample["key"], **frame_metrics(out["rgb"], sample, lpips),
                         **(layer_errors(out, sample) if synthetic else {})})
        if len(tiles) < 8:
            tiles.append(_tile(out, sample))
        if refine:
            correction = refine_heldout_pose(config, avatar, patches, int(sample["index"]), refine_loss, lpips, device)
            with torch.no_grad():
                moved = corrected_sample(sample, correction)
                out = avatar.render(moved, chunk=config.chunk)
                measured = {**frame_metrics(out["rgb"], moved, lpips),
                            **(layer_errors(out, moved) if synthetic else {})}
            rows[-1].update({f"refined_{name}": value for name, value in measured.items()})
            rows[-1].update(_correction_size(correction))
            if len(refined_tiles) < 8:
                refined_tiles.append(_tile(out, moved))
    avatar.train()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(rows[0])
    write_csv(out_dir / "metrics.csv", names, [[r[n] for n in names] for r in rows])
    means = {name: float(np.mean([r[name] for r in rows])) for name in names[1:]}
    summary = {"subject": d.eval_subject, "frames": len(rows), "eval_skip": d.eval_skip,
               "protocol": f"paper: whole {d.resolution}x{d.resolution} crop, black background, 8-bit; masked: hand "
                           "pixels only (PSNR, SSIM)",
               "lpips_name": lpips.name, "renderer": avatar.options.renderer,
               **{name: mean for name, mean in means.items() if not name.startswith("refine")}}
    if refine:
        v = config.val
        summary["refined"] = {
            "protocol": f"test-time pose optimisation (not in the paper): {v.refine_steps} Adam steps (lr "
                        f"{v.refine_lr}, L2 prior {v.refine_prior}) of each held-out frame's global rotation and "
                        f"translation{' and finger joints' if v.refine_fingers else ''} against its image, the avatar "
                        "frozen; then the paper protocol",
            **{name[len("refined_"):]: mean for name, mean in means.items() if name.startswith("refined_")},
            **{f"mean_{name}": mean for name, mean in means.items() if name.startswith("refine_")}}
    if synthetic:
        summary["layer_protocol"] = ("albedo_error, shading_error: mean absolute error on hand pixels in [0, 1] after "
                                     "a least-squares scale per channel")
    baseline_dir = out_dir.parent / "texture_baseline"
    baseline = texture_baseline(config, dataset, lpips, baseline_dir, progress=progress)
    summary["texture_baseline"] = {**{name: baseline[name] for name in BASELINE_METRICS}, "outputs": str(baseline_dir)}
    write_json(out_dir / "summary.json", summary, indent=2)
    write_png(out_dir / "frames.png", to_uint8(torch.cat(tiles, 0).numpy()))  # clipped: the lights' shading exceeds 1
    if refined_tiles:
        write_png(out_dir / "frames_refined.png", to_uint8(torch.cat(refined_tiles, 0).numpy()))
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
    write_csv(path, columns, [[r.get(c, "") for c in columns] for r in rows])
