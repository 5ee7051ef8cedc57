"""Pose the hand model at MANO-HD resolution and write what came out: OBJ meshes and a PNG sheet.

    python -m smplx.demo [--model mano] [--levels 2] [--out out/demo]

Uses MANO_RIGHT.pkl from --model when it is there, the built-in open hand otherwise. Poses: rest, fist, pinch,
point, spread (smplx.hand_pose.NAMED_POSES), posed in the paper's model frame (centred on the middle-finger MCP, dm).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import trimesh

import smplx
from smplx.utils.cli import InputError, cli_main
from smplx.utils.fileio import make_folder, write_png
from smplx.hand_pose import named_poses
from smplx.utils.preview import render_sheet

POSES = ("flat", "fist", "pinch", "point", "spread")


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mano", help="MANO-format file, or folder holding MANO_RIGHT.pkl")
    parser.add_argument("--levels", type=int, default=2, help="MANO-HD subdivision levels")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    if args.levels < 0:
        raise InputError(f"--levels {args.levels} must be 0 or more (2 gives MANO-HD)")
    make_folder(args.out, "--out")

    start = time.perf_counter()
    base = smplx.create(args.model, **smplx.PAPER_FRAME)
    model = smplx.subdivide(base, args.levels)
    hand_pose = torch.as_tensor(named_poses(POSES, base.pose_frames()), dtype=model.v_template.dtype)
    with torch.no_grad():
        vertices = model(hand_pose=hand_pose).vertices.numpy()
    faces = model.output_faces.numpy()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, verts in zip(POSES, vertices):
        trimesh.Trimesh(verts / 10, faces, process=False).export(args.out / f"{name}.obj")  # metres
    write_png(args.out / "poses.png", render_sheet(list(vertices), faces))
    print(f"hand model: {base.v_template.shape[0]} vertices -> MANO-HD level {args.levels}: {model.num_vertices} "
          f"vertices, {len(faces)} faces (sealed)")
    print(f"wrote {args.out}/{{{','.join(POSES)}}}.obj and {args.out}/poses.png (rows: those poses; columns: from "
          f"above, from the thumb side) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
