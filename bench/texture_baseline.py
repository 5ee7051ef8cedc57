"""The textured-mesh baseline ("MANO + texture") on any capture, scored on the avatar's validation frames.

    python -m bench.texture_baseline [--config configs/synthetic/demo.yaml] [--supersample 2] [--out DIR]
                                     [--strip PNG [--strip-frames 4]] [key.sub=value ...]

Poses MANO-HD (smpl_cfg.model_path, smpl_cfg.levels, smpl_cfg.lbs_weights) with the annotated pose and shape of
every frame, averages one colour per vertex over the training subject's crops (data.subject: where the vertex is
front-facing, visible and inside the mask), renders the evaluation frames (data.eval_subject every
data.eval_skip-th frame, whole crop on black) and prints PSNR, SSIM and LPIPS under the paper protocol, as
`phase: val` does for the avatar. Outputs (summary.json, colours.npz, frames.png) go to --out (default:
<out_root>/<experiment>/texture_baseline/, where validation also looks); a second run with the same inputs reads
them back. With --strip, it also writes truth | baseline | avatar rows of a few evaluation frames to PNG (the avatar:
<out_root>/<experiment>/latest.tar, or run.ckpt; `handavatar.baseline.strip`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smplx.utils.config import ConfigError, load_config, resolve_device
from handavatar.baseline import texture_baseline
from handavatar.baseline.strip import comparison_strip
from handavatar.checkpoint import load_avatar
from handavatar.lpips import load_lpips
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.validate import evaluation_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.texture_baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/synthetic/demo.yaml"))
    parser.add_argument("--supersample", type=int, default=2, help="s x s rays per pixel (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: <out_root>/<experiment>/texture_baseline)")
    parser.add_argument("--strip", type=Path, help="also write truth | baseline | avatar rows to this PNG")
    parser.add_argument("--strip-frames", type=int, default=4, help="rows of the strip (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    try:
        if args.supersample < 1:
            raise ValueError(f"--supersample {args.supersample} must be >= 1")
        config = load_config(AvatarConfig, [DEFAULTS, args.config], args.overrides)
        device = resolve_device(config.device)
        out = args.out or Path(config.out_root) / config.experiment / "texture_baseline"
        summary = texture_baseline(config, evaluation_dataset(config), load_lpips(config.lpips.vgg, config.lpips.heads,
                                                                                  device=device),
                                   out, supersample=args.supersample)
        if args.strip:
            if args.strip_frames < 1:
                raise ValueError(f"--strip-frames {args.strip_frames} must be >= 1")
            avatar, checkpoint, _ = load_avatar(config, device)
            comparison_strip(config, avatar, evaluation_dataset(config), out / "colours.npz", args.strip,
                             frames=args.strip_frames, supersample=args.supersample, device=device)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"texture baseline on {summary['frames']} frames of {summary['subject']} (colours from "
          f"{summary['train_frames']} frames of {summary['train_subject']}, {100 * summary['vertices_seen']:.1f}% "
          f"of {summary['vertices']} vertices seen): PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f} "
          f"(paper protocol); hand pixels: PSNR {summary['psnr_masked']:.2f} dB, SSIM {summary['ssim_masked']:.4f}; "
          f"LPIPS {summary['lpips']:.4f} ({summary['lpips_name']}). Wrote {out}/")
    if args.strip:
        print(f"wrote {args.strip}: truth | baseline | avatar ({checkpoint}) on {args.strip_frames} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
