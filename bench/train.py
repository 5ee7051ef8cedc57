"""Training speed and quality of two avatar configurations in one run: iterations/s, and the training time each
needs to reach a validation PSNR.

    python -m bench.train [--config configs/synthetic/demo.yaml] [--at 100,200,300,400]
                          [--baseline-at 1100] [--baseline-overrides KEY=VALUE ...] [--out out/bench/train]
                          [--threads 1] [--sequential] [--render-frames 10] [key.sub=value ...]

Two arms train on the same capture: 'new' (the config with the overrides) and 'baseline' (the same config with
--baseline-overrides; by default the demo configuration at the time the speed issue measured 1.59 iterations/s:
16 samples, the albedo and SelF at every sample with the surface normal, SelF at its published learning rate, 1,100
iterations). Each arm trains to each iteration count of its list in turn (`python -m handavatar.train`, resuming its
own checkpoint), and after each one validates (`phase=val`: the paper protocol on the held-out frames) and keeps
that summary as val_<iterations>.json beside the checkpoint. Training seconds are the trainer's own clock (kept in
latest.tar), without validation or start-up. The arms run side by side, one process each with --threads threads,
so that both see the same machine load (--sequential: one after the other).

Prints per arm and checkpoint the iterations, training seconds, iterations/s and the validation metrics, then the
ratios: new/baseline iterations/s at their last checkpoints, and the baseline's training time to its final PSNR
divided by the new arm's time to its first checkpoint at or above that PSNR. Resumable: a rerun reuses every
checkpoint and validation already done (delete --out to measure again). Results also go to <out>/results.json.

--render-frames N then renders the first N validation frames with each arm's last checkpoint, the arms taking turns
frame by frame in this process (OMP_NUM_THREADS threads), and prints the seconds per frame of each and their ratio.
Each frame is a new pose, so each render includes what validation pays for it (posing, the fast renderer's band
measured for the pose; `handavatar.render.band`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from smplx.utils.cli import InputError, cli_main
from smplx.utils.config import load_config
from smplx.utils.fileio import write_json
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.data import to_tensors
from handavatar.validate import evaluation_dataset

# The demo configuration of commit f8eafd3 (2026-11-26), whose 1.59 iterations/s the speed issue (23) started from,
# written as overrides of configs/synthetic/demo.yaml.
BASELINE_OVERRIDES = ("N_samples=16", "network.albedo_at=samples", "network.shading_at=samples", "network.lights=0",
                      "network.shading_normal=true", "train.lr_shading=5e-4", "train.maxiter=1100")
METRICS = ("psnr", "psnr_masked", "ssim", "lpips")


@dataclass
class Checkpoint:
    iterations: int
    seconds: float  # training time to here (the trainer's clock)
    metrics: dict[str, float] = field(default_factory=dict)


def time_to_reach(points: list[Checkpoint], psnr: float) -> Checkpoint | None:
    """The first checkpoint (in training order) whose validation PSNR is at least `psnr`; None when none is."""
    for point in sorted(points, key=lambda p: p.iterations):
        if point.metrics["psnr"] >= psnr:
            return point
    return None


def compare(new: list[Checkpoint], baseline: list[Checkpoint]) -> dict[str, float | int | None]:
    """Ratios of two arms' checkpoints: 'speed' = new/baseline iterations/s at each arm's last checkpoint; 'target'
    the baseline's final PSNR; 'reached_at' the new arm's iterations at its first checkpoint with at least that PSNR
    (None: never) and 'time_ratio' = baseline seconds to its final checkpoint / new seconds to that one."""
    last_new, last_base = max(new, key=lambda p: p.iterations), max(baseline, key=lambda p: p.iterations)
    speed = (last_new.iterations / last_new.seconds) / (last_base.iterations / last_base.seconds)
    reached = time_to_reach(new, last_base.metrics["psnr"])
    return {"speed": speed, "target": last_base.metrics["psnr"],
            "reached_at": None if reached is None else reached.iterations,
            "time_ratio": None if reached is None else last_base.seconds / reached.seconds}


class Arm:
    """One configuration trained to each of `at` iterations in turn, validated at each."""

    def __init__(self, name: str, config: str, overrides: list[str], at: list[int], out: Path, threads: int):
        self.name, self.at, self.config = name, sorted(at), config
        self.overrides = [*overrides, f"experiment={name}", f"out_root={out}", "train.max_seconds=0",
                          "train.progress_every=0"]
        self.settings = ["--config", config, *self.overrides]
        self.folder = out / name
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.log = out / f"{name}.log"
        self.points: list[Checkpoint] = []
        self.error: BaseException | None = None

    def _call(self, *extra: str) -> None:
        with open(self.log, "a") as log:
            command = [sys.executable, "-m", "handavatar.train", *self.settings, *extra]
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        if done.returncode:
            raise InputError(f"{' '.join(command)} failed (exit {done.returncode}): see {self.log}")

    def run(self) -> None:
        try:
            for iterations in self.at:
                summary_path = self.folder / f"val_{iterations}.json"
                if not summary_path.is_file():
                    self._call(f"train.maxiter={iterations}")
                    self._call(f"train.maxiter={iterations}", "phase=val")
                    state = torch.load(self.folder / "latest.tar", map_location="cpu", weights_only=False)
                    if int(state["iter"]) != iterations:
                        raise InputError(f"{self.folder / 'latest.tar'} is at iteration {state['iter']}, not "
                                         f"{iterations}: delete {self.folder} and run again")
                    summary = json.loads((self.folder / "val" / "summary.json").read_text())
                    summary["train_seconds"] = float(state["seconds"])
                    write_json(summary_path, summary)
                summary = json.loads(summary_path.read_text())
                self.points.append(Checkpoint(iterations, summary["train_seconds"],
                                              {k: float(summary[k]) for k in METRICS}))
                print(f"{self.name}: {iterations} iterations, {summary['train_seconds']:.0f} s, PSNR "
                      f"{summary['psnr']:.2f} dB", flush=True)
        except Exception as error:  # raised again by the main thread: a user error as one line, a bug in full
            self.error = error


def render_times(arms: list[Arm], frames: int) -> dict[str, list[float]]:
    """Seconds to render each of the first `frames` validation frames with each arm's last checkpoint, the arms
    taking turns frame by frame."""
    loaded = []
    for arm in arms:
        config = load_config(AvatarConfig, [DEFAULTS, arm.config], arm.overrides)
        avatar = load_avatar(config, torch.device("cpu"))[0]
        dataset = evaluation_dataset(config)
        loaded.append((avatar, [to_tensors(dataset[i]) for i in range(min(frames, len(dataset)))]))
    times: dict[str, list[float]] = {arm.name: [] for arm in arms}
    with torch.no_grad():
        for i in range(min(len(samples) for _, samples in loaded)):
            for arm, (avatar, samples) in zip(arms, loaded):
                start = time.perf_counter()
                avatar.render(samples[i])
                times[arm.name].append(time.perf_counter() - start)
    return times


def table(arms: list[Arm]) -> str:
    rows = ["| arm | iterations | training s | it/s | PSNR | hand PSNR | SSIM | LPIPS |", "|---" * 8 + "|"]
    for arm in arms:
        for p in arm.points:
            m = p.metrics
            rows.append(f"| {arm.name} | {p.iterations} | {p.seconds:.0f} | {p.iterations / p.seconds:.3f} | "
                        f"{m['psnr']:.2f} | {m['psnr_masked']:.2f} | {m['ssim']:.4f} | {m['lpips']:.4f} |")
    return "\n".join(rows)


def counts(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of iteration counts >= 1")
    return values


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synthetic/demo.yaml")
    parser.add_argument("--at", type=counts, default=[100, 200, 300, 400], help="the new arm's checkpoints")
    parser.add_argument("--baseline-at", type=counts, default=[1100], help="the baseline's checkpoints")
    parser.add_argument("--baseline-overrides", nargs="*", default=list(BASELINE_OVERRIDES),
                        help="key.sub=value of the baseline arm (default: the demo config of f8eafd3)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/train"))
    parser.add_argument("--threads", type=int, default=1, help="threads per arm")
    parser.add_argument("--sequential", action="store_true", help="train the arms one after the other")
    parser.add_argument("--render-frames", type=int, default=0,
                        help="then time the rendering of this many validation frames with each arm")
    parser.add_argument("overrides", nargs="*", help="key.sub=value of both arms")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():
        raise InputError(f"{args.config} does not exist: give --config an avatar config (configs/synthetic/demo.yaml)")
    args.out.mkdir(parents=True, exist_ok=True)
    arms = [Arm("new", args.config, args.overrides, args.at, args.out, args.threads),
            Arm("baseline", args.config, [*args.baseline_overrides, *args.overrides], args.baseline_at, args.out,
                args.threads)]
    print(f"{args.out}: arms 'new' ({args.config} {' '.join(args.overrides)}) at {args.at} iterations and "
          f"'baseline' (+ {' '.join(args.baseline_overrides)}) at {args.baseline_at}, "
          f"{'one after the other' if args.sequential else 'side by side'}, {args.threads} thread(s) each; logs in "
          f"{args.out}/<arm>.log", flush=True)
    if args.sequential:
        for arm in arms:
            arm.run()
    else:
        threads = [threading.Thread(target=arm.run) for arm in arms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for arm in arms:
        if arm.error is not None:
            raise arm.error
    result = compare(arms[0].points, arms[1].points)
    print(table(arms))
    print(f"iterations/s new / baseline: x{result['speed']:.2f}")
    if result["reached_at"] is None:
        print(f"the new arm did not reach the baseline's final {result['target']:.2f} dB at any checkpoint")
    else:
        print(f"the baseline's final {result['target']:.2f} dB: reached by the new arm at iteration "
              f"{result['reached_at']}, in 1/{result['time_ratio']:.2f} of the baseline's training time")
    record = {"arms": {arm.name: [vars(p) for p in arm.points] for arm in arms}, "compare": result,
              "cpu": _cpu_name(), "threads": args.threads, "side_by_side": not args.sequential}
    if args.render_frames > 0:
        times = render_times(arms, args.render_frames)
        mean = {name: sum(values) / len(values) for name, values in times.items()}
        print(f"render, {len(times['new'])} validation frames, {torch.get_num_threads()} threads: new "
              f"{mean['new']:.2f} s per frame, baseline {mean['baseline']:.2f} s: "
              f"new x{mean['baseline'] / mean['new']:.2f}")
        record["render_seconds"] = times
    write_json(args.out / "results.json", record)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
