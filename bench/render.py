"""Frames per second of the fast renderer vs the reference renderer, on the same frames of a trained avatar, in one
run; and how far apart their pictures are.

    python -m bench.render [--config configs/synthetic/demo.yaml] [--frames 2] [--bands 0,0.1,auto]
                           [--tolerances 0.001] [--profile] [key.sub=value ...]

Loads <out_root>/<experiment>/latest.tar of the config (or run.ckpt; train it first: scripts/train_hand.sh), renders
the first --frames evaluation frames (data.eval_subject every data.eval_skip-th frame, whole crop at
data.resolution, black background, as validation) with renderer=reference and with renderer=fast for each surface
band of --bands (0: the exact fast renderer; auto: measured on the avatar's field first, once, not part of the
frame times) and each render.tolerance of --tolerances (each variant the config's RenderOptions with those three
changed, passed to avatar.render), and prints per renderer the seconds per frame, frames/s and
the validation metrics (PSNR/SSIM, paper protocol), then per fast variant the speed-up and the PSNR of its render
against the reference render. The reference renderer is the naive published one
(every sample of every box ray, every part pair, every anchor): expect minutes per 256x256 frame on a CPU.
--profile then profiles one more render of the first frame with the last fast variant (torch.profiler): operator
calls, kernel launches and synchronisations (CUDA), CPU and GPU time, and the top operators.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from smplx.utils.config import load_config, resolve_device
from handavatar.data import to_tensors
from handavatar.metrics import psnr
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.render.options import RenderOptions
from handavatar.validate import evaluation_dataset, frame_metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic/demo.yaml")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--bands", type=lambda text: [b if b == "auto" else float(b) for b in text.split(",")],
                        default=[0.0, 0.1, "auto"],
                        help="comma-separated render.band values of the fast renderer, e.g. 0,0.05,0.1,auto")
    parser.add_argument("--tolerances", type=lambda text: [float(t) for t in text.split(",")], default=None,
                        help="comma-separated render.tolerance values of the fast renderer (default: the config's)")
    parser.add_argument("--profile", action="store_true", help="profile one frame of the last fast variant")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    config = load_config(AvatarConfig, [DEFAULTS, args.config], args.overrides)
    device = resolve_device(config.device)
    avatar, checkpoint, iteration = load_avatar(config, device)
    dataset = evaluation_dataset(config)
    samples = [to_tensors(dataset[i], device) for i in range(min(args.frames, len(dataset)))]
    print(f"{checkpoint} (iteration {iteration}), {len(samples)} frames of {config.data.eval_subject} at "
          f"{config.data.resolution}x{config.data.resolution}, {config.N_samples} samples per ray ({config.sampling} "
          f"sampling), {config.precision}, {device}, {torch.get_num_threads()} threads, chunk {config.chunk} rays; "
          f"fast: group {config.render.group}, tolerance {config.render.tolerance}")

    renders, seconds, measured = {}, {}, None
    tolerances = args.tolerances or [config.render.tolerance]
    variants = [("reference", 0.0, 0.0)] + [(f"fast band {band}" + (f" tol {tol:g}" if args.tolerances else ""),
                                             band, tol) for band in args.bands for tol in tolerances]
    for name, band, tolerance in variants:
        options = replace(avatar.options, renderer=name.split()[0], band=band, tolerance=tolerance)
        renders[name], seconds[name] = [], []
        with torch.no_grad():
            if band == "auto" and measured is None:  # on the frames' poses first (see HandAvatar.surface_band)
                start = time.perf_counter()
                for sample in samples:
                    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
                    measured = avatar.surface_band(posed, avatar.field.encode(posed.vertices, posed.joints,
                                                                              posed.full_pose), options)
                quantiles = torch.quantile(measured.float().cpu(), torch.tensor([0.0, 0.5, 0.9, 1.0])).tolist()
                print(f"band auto: measured on {avatar.band_poses} of the {len(samples)} frames' poses in "
                      f"{time.perf_counter() - start:.1f} s; per anchor (dm) min {quantiles[0]:.3f}, median "
                      f"{quantiles[1]:.3f}, 90% {quantiles[2]:.3f}, max {quantiles[3]:.3f}", flush=True)
            if device.type == "cuda":  # CUDA's start-up work (kernels, cuBLAS handles) is not a frame's time
                avatar.render(samples[0], chunk=config.chunk, options=options)
            for sample in samples:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                rgb = avatar.render(sample, chunk=config.chunk, options=options)["rgb"]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[name].append(time.perf_counter() - start)
                renders[name].append(rgb)
        metrics = [frame_metrics(rgb, sample) for rgb, sample in zip(renders[name], samples)]
        mean = {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0]}
        per_frame = float(np.mean(seconds[name]))
        line = (f"{name:24s} {per_frame:8.2f} s/frame  {1 / per_frame:7.3f} frames/s   vs ground truth: PSNR "
                f"{mean['psnr']:.3f} dB, SSIM {mean['ssim']:.4f} (hand pixels: {mean['psnr_masked']:.3f} dB)")
        if name != "reference":
            agreement = min(psnr(a[0].clamp(0, 1).float(), b[0].clamp(0, 1).float()).item()
                            for a, b in zip(renders[name], renders["reference"]))
            largest = max((a - b).abs().max().item() for a, b in zip(renders[name], renders["reference"]))
            line += (f"; x{np.mean(seconds['reference']) / per_frame:.1f} vs reference, render PSNR vs reference "
                     f"{agreement:.1f} dB (worst frame), largest pixel difference {largest:.2e}")
        print(line, flush=True)
    if args.profile:
        profile_frame(avatar, samples[0], config.chunk, options, f"{name}, frame 0")


def profile_frame(avatar, sample: dict, chunk, options: RenderOptions, name: str) -> None:
    """Print where one render's time goes: operator calls, kernel launches, synchronisations, CPU and GPU time."""
    cuda = sample["rays_d"].device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.no_grad(), profile(activities=activities) as prof:
        avatar.render(sample, chunk=chunk, options=options)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()

    def calls(*names: str) -> int:
        return sum(e.count for e in events if e.key in names)

    operators = sum(e.count for e in events if e.key.startswith("aten::"))
    cpu = sum(e.self_cpu_time_total for e in events) / 1000
    line = f"profile of {name}: {operators} operator calls, {calls('aten::nonzero')} nonzero, CPU time {cpu:.1f} ms"
    if cuda:
        gpu = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1000
        line += (f", {calls('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel', 'cuLaunchKernelEx')} kernel "
                 f"launches, {calls('cudaStreamSynchronize', 'cudaDeviceSynchronize')} synchronisations, GPU kernel "
                 f"time {gpu:.1f} ms")
    print(line)
    print(events.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=15,
                       max_name_column_width=50))


if __name__ == "__main__":
    main()
