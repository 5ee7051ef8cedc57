"""Time posing a batch of MANO-HD hands on this machine.

    python -m bench.pose_hd [--batch 64] [--levels 2] [--repeats 20]

Without a model file it uses a MANO-sized test model (778 vertices, 12,307 at level 2); with --model it loads
MANO_RIGHT.pkl or any MANO-format file. Prints the median time per batched forward pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import smplx
from tests.hand_fixtures import make_tube_model


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a MANO-format file or folder (default: a 778-vertex test model)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    options = dict(center_id=4, scale=10.0, seal=True, distal=True)
    base = smplx.create(args.model, **options) if args.model else smplx.MANO(make_tube_model(21, 37), **options)
    model = smplx.subdivide(base, args.levels)
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(args.batch, 10, generator=g)
    orient = torch.randn(args.batch, 3, generator=g)
    pose = 0.5 * torch.randn(args.batch, 45, generator=g)

    def forward():
        with torch.no_grad():
            model(betas, orient, pose)

    def forward_backward():
        p = pose.clone().requires_grad_()
        model(betas, orient, p).vertices.square().sum().backward()

    print(f"model: {base.v_template.shape[0]} vertices -> level {args.levels}: {model.num_vertices} vertices "
          f"(sealed), {model.output_faces.shape[0]} faces; batch {args.batch}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for name, fn in (("forward (no grad)", forward), ("forward + backward", forward_backward)):
        times = _time(fn, args.repeats)
        print(f"{name:20s} median {1000 * statistics.median(times):7.1f} ms   min {1000 * min(times):7.1f} ms")


if __name__ == "__main__":
    main()
