"""Write the open hand in the MANO format, and a picture of it in named poses.

    python -m smplx.open_hand --out mano/ [--format pkl|npz]

Writes OPEN_HAND_RIGHT.<fmt>, OPEN_HAND_LEFT.<fmt> and open_hand_poses.png (rows: rest, fist, pinch, point, spread;
columns: from above and from the thumb side). Deterministic: the same files on every run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from smplx.body_models import MANO
from smplx.utils.cli import cli_main
from smplx.utils.fileio import make_folder, write_png
from smplx.hand_pose import named_poses
from smplx.model_file import save_model_file
from smplx.open_hand.build import OPEN_HAND_LICENSE, build_open_hand
from smplx.utils.preview import render_sheet

PICTURE_POSES = ("flat", "fist", "pinch", "point", "spread")
PICTURE_VIEWS = ("top", "back")  # from above, and from the thumb side of a right hand


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("mano"), help="output folder (default: mano/)")
    parser.add_argument("--format", choices=("pkl", "npz"), default="pkl")
    parser.add_argument("--no-picture", action="store_true", help="skip open_hand_poses.png")
    args = parser.parse_args(argv)
    make_folder(args.out, "--out")

    start = time.perf_counter()
    extra = {"license": OPEN_HAND_LICENSE, "generator": "python -m smplx.open_hand"}
    for side, is_rhand in (("RIGHT", True), ("LEFT", False)):
        data = build_open_hand(is_rhand)
        path = save_model_file(data, args.out / f"OPEN_HAND_{side}.{args.format}", extra=extra)
        print(f"wrote {path}: {data.num_vertices} vertices, {len(data.faces)} faces")
        if is_rhand and not args.no_picture:
            model = MANO(data, seal=True, dtype=torch.float64)
            hand_pose = torch.from_numpy(named_poses(PICTURE_POSES, model.pose_frames()))
            with torch.no_grad():
                vertices = model(hand_pose=hand_pose).vertices.numpy()
            picture = args.out / "open_hand_poses.png"
            write_png(picture, render_sheet(list(vertices), model.output_faces.numpy(), views=PICTURE_VIEWS))
            print(f"wrote {picture} (rows: {', '.join(PICTURE_POSES)}; columns: from above, from the thumb side)")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
