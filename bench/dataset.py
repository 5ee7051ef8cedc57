"""Samples per second of the avatar's training dataset (patch mode, 256x256 crops) through a DataLoader.

    python -m bench.dataset [--root data/synthetic] [--workers 2] [--samples 400]

Times the steady state (after every worker has delivered its first sample) with the given number of worker processes
and in the main process, in the same run, and prints both and their ratio. Without the capture at --root it renders
a small synthetic one (40 frames) into a temporary folder first. Also times building the annotation cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from handavatar.data import DataConfig, InterHandDataset
from segment.annotations import Subject
from segment.preprocess import build_cache
from segment.synthetic import CaptureSettings, make_capture


def _rate(dataset, workers: int, samples: int) -> float:
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
    warm = max(workers, 1) * 2
    count, start = 0, None
    while count < samples + warm:
        for _ in loader:
            count += 1
            if count == warm:
                start = time.perf_counter()
            if count == samples + warm:
                break
    return samples / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--subject", default="test/Capture0/ROM04_RT_Occlusion")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args(argv)

    root = args.root
    if not (root / "capture.json").is_file() and not (root / "annotations").is_dir():
        root = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
        print(f"no capture at {args.root}: rendering 40 frames into {root}")
        make_capture(CaptureSettings(train_frames=40, eval_frames=0), root, progress=False)
    start = time.perf_counter()
    build_cache(root, Subject.parse(args.subject), progress=False)
    print(f"annotation cache of {args.subject}: built in {time.perf_counter() - start:.2f} s")
    dataset = InterHandDataset(DataConfig(root=str(root), subject=args.subject))
    torch.set_num_threads(1)
    main_process = _rate(dataset, 0, args.samples)
    workers = _rate(dataset, args.workers, args.samples)
    print(f"patch mode, {len(dataset)} frames, 256x256: {main_process:.0f} samples/s in the main process, "
          f"{workers:.0f} samples/s with {args.workers} workers (x{workers / main_process:.2f})")


if __name__ == "__main__":
    main()
