"""Points per second of PairOF's occupancy query, sparse (only the pairs whose boxes hold a point) vs dense (every
pair for every point), in float32 and bfloat16, on this machine.

    python -m bench.pairof_query [--points 50000] [--levels 2] [--repeats 3]

The points are spread through the part boxes of a posed open hand at MANO-HD level 2 (uniform in each of the 16
padded boxes, as PairOF's training points), queried without gradients in one call (chunked inside). Prints the best
of --repeats runs of each variant and the ratios to dense float32 measured in the same run; then the sparse query
with the decoders' clamped Softplus (pairof.networks.Softplus) against the exact `nn.Softplus` it replaced, whose
exponential underflows on most of a decoder's inputs (slow on some CPUs; issue 23), with and without gradients.
"""

from __future__ import annotations

import argparse
import time

import torch

import smplx
from smplx.hand_pose import named_poses
from pairof.model import PairOF
from pairof.networks import ImplicitNet, Softplus
from pairof.train import box_points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=50000)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    base = smplx.create("open_hand", **smplx.PAPER_FRAME)
    hd = smplx.subdivide(base, args.levels)
    field = PairOF.from_layer(hd)
    posed = hd(hand_pose=torch.as_tensor(named_poses(["grasp"], base.pose_frames()), dtype=torch.float32))
    with torch.no_grad():
        encoding = field.encode(posed.vertices, posed.joints, posed.full_pose)
        points = box_points(encoding, args.points // 16, torch.Generator().manual_seed(0))
        _, inside = field.part_boxes(points, encoding)
    print(f"{points.shape[1]} points in the part boxes of a posed hand ({hd.num_vertices} vertices); each lies in "
          f"{inside.float().sum(1).mean():.2f} part boxes on average; {torch.get_num_threads()} threads")

    rates = {}
    for precision, dense in (("float32", True), ("float32", False), ("bfloat16", False)):
        field.precision = precision
        times = []
        with torch.no_grad():
            field.query(points[:, :2000], encoding, dense=dense)  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                field.query(points, encoding, dense=dense)
                times.append(time.perf_counter() - start)
        name = f"{'dense' if dense else 'sparse'} {precision}"
        rates[name] = points.shape[1] / min(times)
        print(f"{name:16s} {rates[name]:10.0f} points/s  (x{rates[name] / rates['dense float32']:.1f} vs dense "
              f"float32)")

    print("clamped vs exact Softplus(beta=100) in the decoders (sparse, best of --repeats, interleaved):")
    clamped = [m for m in field.modules() if isinstance(m, ImplicitNet)]
    for precision in ("float32", "bfloat16"):
        for grad in (False, True):
            field.precision = precision
            times = {"exact": [], "clamped": []}
            for _ in range(args.repeats):
                for variant in times:
                    for net in clamped:
                        net.activation = torch.nn.Softplus(beta=100) if variant == "exact" else Softplus(beta=100)
                    start = time.perf_counter()
                    with torch.set_grad_enabled(grad):
                        out = field.query(points, encoding)
                        if grad:
                            out.occupancy.sum().backward()
                    times[variant].append(time.perf_counter() - start)
            print(f"  {precision:8s} {'forward+backward' if grad else 'forward':16s} exact {min(times['exact']):.3f} s,"
                  f" clamped {min(times['clamped']):.3f} s: x{min(times['exact']) / min(times['clamped']):.2f}")
            field.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
