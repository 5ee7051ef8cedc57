"""Export a trained avatar as a rigged, textured, animated binary glTF (and optionally the web viewer next to it).

    python -m handavatar.export --checkpoint handavatar/out/handavatar/synthetic_demo/latest.tar --out avatar.glb
    python -m handavatar.export --checkpoint .../latest.tar --out avatar.glb --texture 2048 --motion poses.npz \
        --viewer out/viewer/

The avatar is rebuilt from the config it was trained with (config.yaml beside the checkpoint, or --config FILE),
then `key.sub=value` overrides. The clip is the run.joint_rot free-pose sweep over run.frames frames, or a motion
file (.npz or .json, as run.mode=movement reads it; handavatar/poses.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from smplx.utils.cli import InputError, cli_main, finite_float
from handavatar.export.avatar import clip_motion, export_avatar, load_export_avatar
from handavatar.export.viewer import write_viewer


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m handavatar.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="the avatar's latest.tar")
    parser.add_argument("--out", type=Path, required=True, help="the .glb to write")
    parser.add_argument("--config", type=Path, help="the experiment YAML it was trained with (default: config.yaml "
                        "beside the checkpoint)")
    parser.add_argument("--texture", type=int, default=1024, help="albedo texture side, px (default 1024)")
    parser.add_argument("--motion", default="freepose", help="freepose (default) or a motion file (.npz/.json)")
    parser.add_argument("--fps", type=finite_float, help="frames per second of the clip (default: run.fps)")
    parser.add_argument("--correctives", type=int, default=6, help="pose-corrective morph targets at this many "
                        "frames of the clip, spread from first to last, putting the skin on PairOF's 0.5 level set "
                        "(default 6; 0: a plain skin)")
    parser.add_argument("--viewer", type=Path, help="also write the web viewer with the asset into this folder")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    return parser.parse_args(argv)


def _writable(path: Path, what: str) -> None:
    """Raise InputError early (before minutes of work) if `path` cannot be written."""
    folder = path.parent if what == "--out" else path
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK):
        raise InputError(f"{what} {path}: {existing} is not writable; choose a folder you can write to")


def export(argv: list[str] | None = None) -> None:
    """The command (see the module docstring); raises on bad input."""
    args = _arguments(argv)
    if args.out.suffix != ".glb":
        raise InputError(f"--out {args.out} must end in .glb (binary glTF)")
    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; give a file name ending in .glb")
    _writable(args.out, "--out")
    if args.correctives < 0:
        raise InputError(f"--correctives {args.correctives}: give a number of keyframes >= 0 (0: a plain skin)")
    if args.viewer:
        _writable(args.viewer, "--viewer")
    avatar, config, path, iteration = load_export_avatar(args.checkpoint, args.config, args.overrides)
    poses = clip_motion(avatar, args.motion, config.run.joint_rot, config.run.frames)
    report = export_avatar(avatar, args.out, poses=poses, texture=args.texture, fps=args.fps or config.run.fps,
                           correctives=args.correctives)
    e = report.error
    print(f"exported {path} (iteration {iteration}) in {report.seconds:.1f} s: {report.path} "
          f"({report.size / 2 ** 20:.2f} MiB; {report.vertices} vertices, {report.faces} triangles, "
          f"{report.texture}x{report.texture} albedo, {report.frames}-frame clip '{poses.source}')\n"
          f"  4 strongest skinning weights vs all 16 over the clip: max {e.truncation_max:.3f} mm, mean "
          f"{e.truncation_mean:.4f} mm; vs the avatar's own posed surface: max {e.avatar_max:.3f} mm, mean "
          f"{e.avatar_mean:.4f} mm\n  {report.correctives.summary()}"
          + (f" ({report.corrective_seconds:.1f} s)" if len(report.correctives.keys) else ""))
    if args.viewer:
        page = write_viewer(args.viewer, args.out)
        print(f"  viewer: {page} (open it in a browser, or serve the folder: python -m http.server)")


main = cli_main(export)


if __name__ == "__main__":
    main()
