"""Pose the hand model at MANO-HD resolution and write what came out: OBJ meshes and a PNG sheet.

    python -m smplx.demo [--model mano] [--levels 2] [--out out/demo]

Poses: the rest pose and the first poses of the model's pose prior (hands_mean + hands_coeffs @ hands_components).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import trimesh

import smplx
from smplx.preview import render_preview


def prior_poses(model: smplx.MANO, count: int) -> torch.Tensor:
    """(count + 1, 45) hand poses: rest, then the first `count` poses of the model's prior (if it has one)."""
    data = model.to_model_data()
    poses = [np.zeros(45)]
    if data.hands_coeffs is not None and data.hands_components is not None:
        mean = data.hands_mean if data.hands_mean is not None else 0.0
        poses += list(mean + data.hands_coeffs[:count] @ data.hands_components[:data.hands_coeffs.shape[1]])
    return torch.as_tensor(np.stack(poses), dtype=model.v_template.dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mano", help="MANO-format file, or folder holding MANO_RIGHT.pkl")
    parser.add_argument("--levels", type=int, default=2, help="MANO-HD subdivision levels")
    parser.add_argument("--poses", type=int, default=3, help="poses from the prior besides the rest pose")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    base = smplx.create(args.model, center_id=4, scale=10.0, seal=True, distal=True)
    model = smplx.subdivide(base, args.levels)
    poses = prior_poses(model, args.poses)
    with torch.no_grad():
        out = model(hand_pose=poses)
    faces = model.output_faces.numpy()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, verts in enumerate(out.vertices.numpy()):
        trimesh.Trimesh(verts / 10, faces, process=False).export(args.out / f"pose_{i:02d}.obj")  # metres
        rows.append(np.concatenate([render_preview(verts, faces, view=v) for v in ("front", "side")], axis=1))
    iio.imwrite(args.out / "poses.png", np.concatenate(rows, axis=0))
    print(f"hand model: {base.v_template.shape[0]} vertices -> MANO-HD level {args.levels}: {model.num_vertices} "
          f"vertices, {len(faces)} faces (sealed)")
    print(f"wrote {len(rows)} posed meshes {args.out}/pose_*.obj and the sheet {args.out}/poses.png "
          f"(rows: rest, prior poses; columns: front, side) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
