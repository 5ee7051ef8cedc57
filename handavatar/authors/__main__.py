"""Convert the authors' released files into ours, or ours into theirs (docs/fidelity.md).

    python -m handavatar.authors --lbs-weights lbs_weights.pth --pairof pairof.ckpt --avatar latest.tar \\
        --out handavatar/out/authors --config configs/interhand/test_cap0.yaml
    scripts/run_hand.sh handavatar/out/authors/config.yaml run.mode=test       # renders with the authors' avatar

    python -m handavatar.authors --to-authors --lbs-weights ... --pairof ... --avatar .../latest.tar --out DIR

The config names the hand model (smpl_cfg.model_path, smpl_cfg.levels, data.hand) and the networks (network.*) the
files were made for; key.sub=value overrides follow it. `--field key=value` sets what their pairof.ckpt does not hold
(default: the published settings of configs/pairof/default.yaml): part_samples, neighbours, box_padding,
extended_dist, seed (of our fixed part clouds) and input_scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from smplx.utils.cli import InputError, cli_main
from smplx.utils.config import load_config
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.authors.files import FIELD_SETTINGS, export_authors, import_authors


def _field_settings(pairs: list[str]) -> dict:
    settings = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or key not in FIELD_SETTINGS:
            raise InputError(f"--field {text!r} is not key=value with a key of {list(FIELD_SETTINGS)}")
        settings[key] = int(value) if key in ("part_samples", "neighbours", "seed") else float(value)
    return settings


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m handavatar.authors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lbs-weights", type=Path, required=True, help="lbs_weights.pth")
    parser.add_argument("--pairof", type=Path, required=True, help="pairof.ckpt")
    parser.add_argument("--avatar", type=Path, help="latest.tar (optional)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the converted files")
    parser.add_argument("--config", type=Path, help=f"experiment YAML applied over {DEFAULTS}")
    parser.add_argument("--to-authors", action="store_true", help="convert our files into the authors' layout")
    parser.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                        help=f"import: one of {', '.join(FIELD_SETTINGS)}")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    config = load_config(AvatarConfig, [DEFAULTS] + ([args.config] if args.config else []), args.overrides)
    files = dict(lbs_weights=args.lbs_weights, pairof=args.pairof, avatar=args.avatar)
    if args.to_authors:
        if args.field:
            raise InputError("--field applies to an import only (our pairof.ckpt holds its settings)")
        written = export_authors(config, args.out, **files)
    else:
        written = import_authors(config, args.out, field=_field_settings(args.field), **files)
    print("wrote " + ", ".join(str(p) for p in written.values()))
    if "config" in written:
        print(f"render with: scripts/run_hand.sh {written['config']} [run.mode=test ...]")


if __name__ == "__main__":
    main()
