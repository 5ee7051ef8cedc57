"""Which of a trained avatar's layers holds back each metric: its validation frames composited again with one
layer (albedo, shading or silhouette) replaced by the synthetic capture's truth.

    python -m bench.appearance_oracle [--config configs/synthetic/demo.yaml] [--out DIR] [--frames 3] [key=value ...]

The avatar (`<out_root>/<experiment>/latest.tar`, or `run.ckpt`) renders every validation frame (data.eval_subject,
every data.eval_skip-th frame, whole crops on black: the paper protocol). Its pixel is

    rgb = alpha x albedo x shading + (1 - alpha) background

with the ray's albedo = albedo image / alpha and shading = shading image / alpha. This identity is exact for an
albedo looked up once per ray (`network.albedo_at: surface`, `plane`, `mesh`), where the albedo is constant along
the ray; with the published per-sample albedo (`samples`) the product of the composited layers only approximates
the composited product, and the tool says so. Each row replaces one factor by the truth on the true hand's pixels
(`true_albedo`, `true_shading`), the silhouette by the true hand mask (`true_alpha`), or both layers at once, and
scores the frames with validation's `frame_metrics`. A row that moves a metric far says that layer is what holds it
back. Needs a synthetic capture (its albedo/ and shading/ trees). Prints a table, writes summary.json and
oracle.png (the first --frames frames: truth | avatar | true albedo x avatar's shading | avatar's albedo x true
shading) to --out (default <out_root>/<experiment>/appearance_oracle/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from smplx.utils.config import ConfigError
from smplx.utils.fileio import to_uint8, write_json, write_png
from handavatar.checkpoint import load_avatar
from handavatar.data import to_tensors
from handavatar.lpips import load_lpips
from handavatar.metrics import frame_metrics
from handavatar.validate import evaluation_dataset
from bench.appearance_ceiling import synthetic_config

__all__ = ["swapped_layers", "main"]

ROWS = ("avatar", "true_albedo", "true_shading", "true_alpha", "true_albedo_and_shading")


def swapped_layers(out: dict, sample: dict) -> dict[str, torch.Tensor]:
    """(H, W, 3) frames of one render (P = 1) with layers replaced by the truth.

    Args:
        out: the avatar's render: 'rgb', 'albedo' (1, H, W, 3), 'shading' (1, H, W, 1), 'alpha' (1, H, W).
        sample: its dataset sample with 'target_albedo', 'target_shading', 'target_alpha' and 'bgcolor'.

    Returns:
        One frame per name of ROWS: 'avatar' is alpha x albedo x shading + (1 - alpha) background from the
        avatar's own layers; the others replace the albedo, the shading (on the true hand's pixels), the alpha
        (by the true mask), or both layers.
    """
    alpha = out["alpha"][0][..., None].float()
    safe = alpha.clamp_min(1e-6)
    albedo, shading = out["albedo"][0].float(), out["shading"][0].float()
    background = sample["bgcolor"].float()
    albedo = torch.where(alpha > 0, (albedo - (1 - alpha) * background) / safe, 0.0)
    shading = torch.where(alpha > 0, shading / safe, 0.0)
    hand = sample["target_alpha"][0][..., None] > 0
    true_albedo = torch.where(hand, sample["target_albedo"][0].float(), albedo)
    true_shading = torch.where(hand, sample["target_shading"][0].float(), shading)

    def frame(a, s, coverage):
        return (coverage * a * s + (1 - coverage) * background).clamp(0, 1)

    return {"avatar": frame(albedo, shading, alpha), "true_albedo": frame(true_albedo, shading, alpha),
            "true_shading": frame(albedo, true_shading, alpha), "true_alpha": frame(albedo, shading, hand.float()),
            "true_albedo_and_shading": frame(true_albedo, true_shading, alpha)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.appearance_oracle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/synthetic/demo.yaml"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--frames", type=int, default=3, help="frames in oracle.png")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    try:
        config = synthetic_config(args.config, args.overrides, "the oracle needs its true albedo and shading")
        avatar, path, iteration = load_avatar(config, torch.device("cpu"))
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or Path(config.out_root) / config.experiment / "appearance_oracle"
    dataset = evaluation_dataset(config)
    dataset.config.layers = True
    lpips = load_lpips(config.lpips.vgg, config.lpips.heads, device=torch.device("cpu"))
    rows: dict[str, list[dict]] = {name: [] for name in ROWS}
    tiles, identity = [], 0.0
    with torch.no_grad():
        for index in tqdm(range(len(dataset)), desc="oracle", unit="frame"):
            sample = to_tensors(dataset[index])
            out = avatar.render(sample, chunk=config.chunk)
            frames = swapped_layers(out, sample)
            identity = max(identity, float((frames["avatar"] - out["rgb"][0].clamp(0, 1)).abs().max()))
            for name, frame in frames.items():
                rows[name].append(frame_metrics(frame[None], sample, lpips))
            if index < args.frames:
                tiles.append(torch.cat([sample["target_rgb"][0], out["rgb"][0].clamp(0, 1), frames["true_albedo"],
                                        frames["true_shading"]], 1))
    summary = {"checkpoint": str(path), "iteration": iteration, "frames": len(dataset), "lpips_name": lpips.name,
               "albedo_at": config.network.albedo_at, "identity_max_error": identity,
               **{name: {metric: float(np.mean([r[metric] for r in found])) for metric in found[0]}
                  for name, found in rows.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "summary.json", summary, indent=2)
    write_png(out_dir / "oracle.png", to_uint8(torch.cat(tiles, 0).numpy()))
    print(f"{path} (iteration {iteration}), {len(dataset)} frames; alpha x albedo x shading is the render to "
          f"{identity:.1e}" + (" (albedo_at samples: only approximately)" if config.network.albedo_at == "samples"
                               else ""))
    print(f"| layers | PSNR | hand PSNR | SSIM | hand SSIM | {lpips.name} |\n|---|---|---|---|---|---|")
    for name in ROWS:
        m = summary[name]
        print(f"| {name} | {m['psnr']:.2f} | {m['psnr_masked']:.2f} | {m['ssim']:.3f} | {m['ssim_masked']:.3f} | "
              f"{m['lpips']:.3f} |")
    print(f"wrote {out_dir}/summary.json and oracle.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
