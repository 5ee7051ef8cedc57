"""Time posing a batch of MANO-HD hands on this machine.

    python -m bench.pose_hd [--model PATH] [--batch 64] [--levels 2] [--repeats 20]

Without --model it times two models: a MANO-sized test model (778 vertices; 12,307 at level 2, like MANO's 12,337)
and the built-in open hand (1,085 vertices; 17,153 at level 2). --model takes MANO_RIGHT.pkl or any MANO-format
file. Prints the median and the fastest time of a batched forward pass, and of forward + backward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import smplx
from smplx.open_hand import build_open_hand
from smplx.tube import make_tube_model

OPTIONS = smplx.PAPER_FRAME


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, base: smplx.MANO, *, batch: int, levels: int, repeats: int) -> None:
    model = smplx.subdivide(base, levels)
    g = torch.Generator().manual_seed(0)
    betas = torch.randn(batch, 10, generator=g)
    orient = torch.randn(batch, 3, generator=g)
    pose = 0.5 * torch.randn(batch, 45, generator=g)

    def forward():
        with torch.no_grad():
            model(betas, orient, pose)

    def forward_backward():
        p = pose.clone().requires_grad_()
        model(betas, orient, p).vertices.square().sum().backward()

    print(f"{name}: {base.v_template.shape[0]} vertices -> level {levels}: {model.num_vertices} vertices (sealed), "
          f"{model.output_faces.shape[0]} faces; batch {batch}")
    for label, fn in (("forward (no grad)", forward), ("forward + backward", forward_backward)):
        times = _time(fn, repeats)
        print(f"  {label:20s} median {1000 * statistics.median(times):7.1f} ms   fastest {1000 * min(times):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a MANO-format file or folder (default: the two built-in models)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if args.model:
        models = {args.model: smplx.create(args.model, **OPTIONS)}
    else:
        models = {"MANO-sized test model": smplx.MANO(make_tube_model(21, 37), **OPTIONS),
                  "open hand": smplx.MANO(build_open_hand(), **OPTIONS)}
    for name, base in models.items():
        bench(name, base, batch=args.batch, levels=args.levels, repeats=args.repeats)


if __name__ == "__main__":
    main()
