"""`python -m segment.synthetic`: the command line of the synthetic capture (`segment.synthetic.capture`); every
field of `CaptureSettings` is a flag."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from smplx.utils.cli import cli_main, finite_float
from segment.interhand import DATA_FOLDER, IMAGE_TREE, MASK_TREE
from segment.synthetic.capture import CaptureSettings, make_capture
from segment.synthetic.manifest import GROUND_TRUTH_TREES
from segment.synthetic.capture import __doc__ as CAPTURE_DOC

__all__ = ["main"]


def _parse(argv: list[str] | None) -> tuple[CaptureSettings, argparse.Namespace]:
    defaults = CaptureSettings()
    parser = argparse.ArgumentParser(prog="python -m segment.synthetic", description=CAPTURE_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="dataset root (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="render processes (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a capture made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    helps = {"model": "MANO-format file or folder; without MANO, the built-in open hand",
             "light_direction": "three numbers: towards the light, world (x right, y down, z away from camera 0)"}
    for field in fields(CaptureSettings):
        value = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=value,
                                metavar="BOOL", help=f"default: {value}")
        elif isinstance(value, tuple):
            parser.add_argument(flag, type=finite_float, nargs=3, default=value, help=helps.get(field.name,
                                                                                           f"default: {value}"))
        else:
            parser.add_argument(flag, type=finite_float if isinstance(value, float) else type(value), default=value,
                                help=f"{helps.get(field.name, '')} (default: {value})".strip())
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(CaptureSettings)}
    values.update({k: tuple(v) for k, v in values.items() if isinstance(v, list)})
    return replace(defaults, **values), args


@cli_main
def main(argv: list[str] | None = None) -> int:
    settings, args = _parse(argv)
    summary = make_capture(settings, args.out, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    print(f"hand model: {summary['model']}; hand box {summary['box_px'][0]:.0f}-{summary['box_px'][1]:.0f} px")
    print(f"{summary['images']} images ({summary['rendered']} rendered, {summary['skipped']} already there) in "
          f"{summary['total_seconds']:.1f} s; {summary['seconds_per_image']:.2f} s per image per worker")
    print(f"wrote {summary['out']}/ (annotations/, {DATA_FOLDER}/{{{IMAGE_TREE},{MASK_TREE},"
          f"{','.join(GROUND_TRUTH_TREES)}}}/, capture.json) and {summary['preview']}")
    return 0

