"""`make demo`: the whole paper in miniature on the embedded default, run as the commands a user would type.

    python -m handavatar.demo                  # run what is not up to date (a second run takes seconds)
    python -m handavatar.demo --list           # the stages, their status and commands; runs nothing
    python -m handavatar.demo --dry-run        # what would run now, and what would be removed first
    python -m handavatar.demo --from lbs       # start at a stage (earlier ones are not checked)
    python -m handavatar.demo --only val       # one stage
    python -m handavatar.demo --force pairof   # rerun a stage and every stage after it, from scratch

Stages: the open hand model files (without MANO), the synthetic capture, masks, the annotation cache, LBS-weight
pretraining, PairOF pretraining, avatar training, validation, free-pose animation and a free-view orbit. Each is a
subprocess running the real entry point (scripts/*.sh or python -m ...), with its paths read from the configs below.
A stage runs when an output is missing or an input changed (handavatar.stages: the rules); a killed demo resumes at
the stage it was in. Logs, stamps and the summary (summary.md, summary.json) go to out/demo/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from smplx.body_models import OPEN_HAND, find_model_file
from smplx.utils.cli import InputError, cli_main
from smplx.utils.config import load_config
from smplx.manohd.train_lbs import PUBLISHED as LBS_PUBLISHED, LBSConfig
from pairof.train import PUBLISHED as PAIROF_PUBLISHED, PairOFTrainConfig
from segment.annotations import Subject
from segment.interhand import DATA_FOLDER, MASK_TREE, tree_path
from segment.preprocess import cache_path
from handavatar.stages import Stage, StageFailed, StageRunner, format_plan
from handavatar.config import AvatarConfig

__all__ = ["demo_stages", "main", "ROOT"]

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = "out/demo"
AVATAR_DEFAULTS, AVATAR_CONFIG = "configs/default.yaml", "configs/synthetic/demo.yaml"
LBS_DEFAULTS, LBS_CONFIG = "configs/lbs/default.yaml", "configs/lbs/demo.yaml"
PAIROF_DEFAULTS, PAIROF_CONFIG = "configs/pairof/default.yaml", "configs/pairof/demo.yaml"
VIDEO_MODES = ("freepose", "freeview")


def _hand_model(root: Path, model_path: str, hand: str) -> tuple[str, str]:
    """(the file that defines the configured hand, the folder for the open hand files, or '' when MANO is used)."""
    if model_path != OPEN_HAND:
        try:
            found = find_model_file(root / model_path, is_rhand=hand == "right")
            return (found.relative_to(root) if root in found.parents else found).as_posix(), ""
        except FileNotFoundError:
            if Path(model_path).suffix in (".pkl", ".npz"):
                raise
    folder = "mano" if model_path == OPEN_HAND else model_path
    return f"{folder}/OPEN_HAND_{hand.upper()}.pkl", folder


def _read_json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def _existing(root: Path, paths: dict[str, str]) -> dict[str, str]:
    return {name: path for name, path in paths.items() if (root / path).exists()}


def _trained(root: Path, checkpoint: str) -> dict:
    """Iterations and seconds of training a checkpoint holds (train.max_seconds may stop before train.maxiter)."""
    if not (root / checkpoint).is_file():
        return {}
    state = torch.load(root / checkpoint, map_location="cpu", weights_only=True)
    return {"iterations": int(state["iter"]), "training seconds": round(float(state.get("seconds", 0.0)))}


def _lbs_figures(eval_json: str):
    def figures(root: Path) -> dict:
        report = _read_json(root, eval_json)
        learned, averaged = report["learned"], report["averaged"]
        return {"held-out mean distance (mm) learned": learned["mean_mm"], "averaged": averaged["mean_mm"],
                "p99 learned": learned["p99_mm"], "flipped faces/pose learned": learned["flipped_faces"]}
    return figures


def _pairof_figures(eval_json: str):
    def figures(root: Path) -> dict:
        report = _read_json(root, eval_json)
        return {"held-out IoU box points": report["box"]["iou"], "near-surface": report["surface"]["iou"],
                "LBS weights": report.get("lbs_weights", "n/a")}
    return figures


def _validation_figures(summary_json: str):
    def figures(root: Path) -> dict:
        summary = _read_json(root, summary_json)
        lpips = summary.get("lpips")
        if isinstance(lpips, (int, float)):
            lpips = f"{lpips:.4f} ({summary.get('lpips_name', 'variant not named')})"
        else:
            lpips = "n/a"
        found = {"frames": summary.get("frames"), "PSNR (paper)": summary.get("psnr"),
                 "SSIM (paper)": summary.get("ssim"), "PSNR (hand)": summary.get("psnr_masked"),
                 "SSIM (hand)": summary.get("ssim_masked"), "LPIPS": lpips}
        for key in ("albedo_error", "shading_error"):
            if key in summary:
                found[key.replace("_", " ")] = summary[key]
        return found
    return figures


def _count_files(root: Path, folders: dict[str, str], pattern: str) -> dict[str, int]:
    return {name: sum(1 for _ in (root / folder).rglob(pattern)) for name, folder in folders.items()
            if (root / folder).is_dir()}


def _cache_figures(caches: dict[str, str]):
    def figures(root: Path) -> dict:
        found = {}
        for name, path in caches.items():
            if (root / path).is_file():
                with np.load(root / path, allow_pickle=False) as data:
                    found[f"{name} frames"] = len(data["keys"])
        return found
    return figures


def _capture_figures(capture: str, preview: str):
    def figures(root: Path) -> dict:
        manifest = _read_json(root, capture)
        frames = sum(len(s["frames"]) for s in manifest["sequences"].values())
        return {"images": frames * len(manifest["cameras"]), "hand model": manifest["model"]["source"],
                "complete": manifest["complete"], "preview": preview}
    return figures


def demo_stages(root: Path = ROOT) -> list[Stage]:
    """The demo's stages, in order, with paths and settings read from the demo configs under `root`."""
    avatar = load_config(AvatarConfig, [root / AVATAR_DEFAULTS, root / AVATAR_CONFIG])
    lbs = load_config(LBSConfig, [root / LBS_DEFAULTS, root / LBS_CONFIG])
    pairof = load_config(PairOFTrainConfig, [root / PAIROF_DEFAULTS, root / PAIROF_CONFIG])
    d, model_path = avatar.data, avatar.smpl_cfg.model_path
    for where, other in ((f"{LBS_CONFIG} model.path", lbs.model.path), (f"{PAIROF_CONFIG} model.path",
                                                                         pairof.model.path)):
        if other != model_path:
            raise InputError(f"{where}={other!r} but {AVATAR_CONFIG} smpl_cfg.model_path={model_path!r}: the demo "
                             "needs one hand model; make them agree")
    hand_file, open_hand_folder = _hand_model(root, model_path, d.hand)
    open_hand, folder = bool(open_hand_folder), open_hand_folder or "mano"
    picture = f"{folder}/open_hand_poses.png"
    subjects = {"train": Subject.parse(d.subject), "eval": Subject.parse(d.eval_subject)}
    if len({(s.split, s.capture) for s in subjects.values()}) != 1:
        raise InputError(f"data.subject={d.subject!r} and data.eval_subject={d.eval_subject!r} are in different "
                         "splits or captures; the demo makes masks for one capture")
    split, capture_id = subjects["train"].split, subjects["train"].capture
    data = d.root
    capture, preview = f"{data}/capture.json", f"{data}/preview.png"
    masks = {name: tree_path(data, MASK_TREE, split, f"Capture{capture_id}/{s.seq_name}").as_posix()
             for name, s in subjects.items()}
    caches = {name: cache_path(data, s, d.hand).as_posix() for name, s in subjects.items()}
    lbs_run, pairof_run = f"{lbs.out_root}/{lbs.name}", f"{pairof.out_root}/{pairof.name}"
    experiment = f"{avatar.out_root}/{avatar.experiment}"
    avatar_configs = (AVATAR_DEFAULTS, AVATAR_CONFIG)
    is_real = (root / data).is_dir() and not (root / capture).is_file() and any((root / data).iterdir())

    stages = [
        Stage("open_hand", ("python", "-m", "smplx.open_hand", "--out", folder),
              "write the built-in open hand in the MANO format, and a picture of it",
              inputs=tuple(sorted(p.relative_to(root).as_posix() for p in (root / "smplx/open_hand").glob("*.py"))),
              outputs=(f"{folder}/OPEN_HAND_RIGHT.pkl", f"{folder}/OPEN_HAND_LEFT.pkl", picture),
              skip="" if open_hand else f"MANO present ({hand_file})",
              figures=lambda r: {"hand model": hand_file} | _existing(r, {"picture": picture})),
        Stage("synthetic", ("python", "-m", "segment.synthetic", "--out", data, "--model", model_path),
              "render the synthetic capture (InterHand2.6M layout, with ground-truth albedo and shading)",
              inputs=(hand_file,), outputs=(capture, preview),
              fresh=tuple(f"{data}/{name}" for name in ("annotations", DATA_FOLDER, "capture.json", "preview.png")),
              skip=f"{data} is not a synthetic capture (no capture.json): used as it is" if is_real else "",
              figures=_capture_figures(capture, preview)),
        Stage("masks", ("scripts/make_masks.sh", "--root", data, "--split", split, "--capture", str(capture_id),
                        *[a for s in subjects.values() for a in ("--seq", s.seq_name)], "--hand", d.hand,
                        "--model", model_path),
              "hand masks from the projected hand model (existing ones are kept)",
              inputs=(hand_file, capture), outputs=tuple(masks.values()),
              figures=lambda r: {f"{k} masks": v for k, v in _count_files(r, masks, "*.png").items()}),
        Stage("cache", ("python", "-m", "segment.preprocess", "--root", data,
                        *[a for s in subjects.values() for a in ("--subject", str(s))], "--hand", d.hand,
                        "--model", model_path, "--bbox-offset", str(d.bbox_offset)),
              "the annotation cache of the training and evaluation subjects",
              inputs=(hand_file, capture, *masks.values()), outputs=tuple(caches.values()),
              figures=_cache_figures(caches)),
        Stage("lbs", ("scripts/train_lbs.sh", LBS_CONFIG), "pretrain the MANO-HD skinning weights",
              inputs=(LBS_DEFAULTS, LBS_CONFIG, hand_file),
              outputs=(f"{lbs_run}/lbs_weights.pth", f"{lbs_run}/eval.json")
              + ((LBS_PUBLISHED.as_posix(),) if lbs.publish else ()),
              fresh=(lbs_run,), figures=_lbs_figures(f"{lbs_run}/eval.json")),
        Stage("pairof", ("scripts/train_pairof.sh", PAIROF_CONFIG), "pretrain PairOF for those skinning weights",
              inputs=(PAIROF_DEFAULTS, PAIROF_CONFIG, hand_file)
              + ((pairof.model.lbs_weights,) if pairof.model.lbs_weights else ()),
              outputs=(f"{pairof_run}/pairof.ckpt", f"{pairof_run}/eval.json")
              + ((PAIROF_PUBLISHED.as_posix(),) if pairof.publish else ()),
              fresh=(pairof_run,), figures=_pairof_figures(f"{pairof_run}/eval.json")),
        Stage("avatar", ("scripts/train_hand.sh", AVATAR_CONFIG), "train the avatar on the training sequence",
              inputs=(*avatar_configs, hand_file, avatar.smpl_cfg.pairof, capture, masks["train"], caches["train"])
              + ((avatar.smpl_cfg.lbs_weights,) if avatar.smpl_cfg.lbs_weights else ()),
              outputs=(f"{experiment}/latest.tar",), fresh=(experiment,),
              figures=lambda r: {**_existing(r, {"checkpoint": f"{experiment}/latest.tar",
                                                 "TensorBoard": f"{experiment}/board"}),
                                 **_trained(r, f"{experiment}/latest.tar")}),
        Stage("val", ("scripts/train_hand.sh", AVATAR_CONFIG, "phase=val"),
              "validate on the held-out sequence: PSNR, SSIM, LPIPS",
              inputs=(*avatar_configs, f"{experiment}/latest.tar", capture, masks["eval"], caches["eval"]),
              outputs=(f"{experiment}/val/summary.json",), fresh=(f"{experiment}/val",),
              figures=_validation_figures(f"{experiment}/val/summary.json")),
    ]
    for mode, what in zip(VIDEO_MODES, ("animate the avatar in new poses", "orbit the camera around the avatar")):
        folder = f"{experiment}/{mode}"
        videos = {"video": f"{folder}/{mode}.mp4", "gif": f"{folder}/{mode}.gif"}
        stages.append(Stage(mode, ("scripts/run_hand.sh", AVATAR_CONFIG, f"run.mode={mode}"), what,
                            inputs=(*avatar_configs, f"{experiment}/latest.tar", capture, caches["train"]),
                            outputs=tuple(videos.values()),
                            fresh=(folder,), figures=lambda r, videos=videos: _existing(r, videos)))
    return stages


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handavatar.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="show the stages, their status and commands; run nothing")
    parser.add_argument("--dry-run", action="store_true", help="show what would run and be removed; run nothing")
    parser.add_argument("--from", dest="start", metavar="STAGE", help="start at this stage")
    parser.add_argument("--only", metavar="STAGE", help="only this stage")
    parser.add_argument("--force", metavar="STAGE", help="rerun this stage and every later one, from scratch")
    args = parser.parse_args(argv)
    try:
        runner = StageRunner(demo_stages(ROOT), root=ROOT, state_dir=STATE_DIR)
        if args.list or args.dry_run:
            plan = runner.plan(start=args.start, only=args.only, force=args.force)
            print(format_plan(plan, dry_run=args.dry_run))
            return 0
        runner.run(start=args.start, only=args.only, force=args.force)
    except StageFailed as error:
        if error.status == 2:  # the stage's own one-line user error is above: say where, keep the contract
            print(f"error: stage {error.stage!r} stopped on the error above (log: {STATE_DIR}/logs/{error.stage}.log); "
                  "fix it and run again: stages before it are kept, and this one resumes", file=sys.stderr)
            return 2
        print(f"\ndemo stopped: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        print(f"\n{error or 'interrupted'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
