"""What each switch of docs/fidelity.md changes, measured without training an avatar (the table's last column).

    python -m bench.fidelity_effects [--capture data/synthetic] [--levels 2] [--poses 16]

On a copy of a capture (default: the demo's): the masks of `segment.masks --fill coverage` and `--fill published`
against each other and against the capture's own ray-traced masks (its ground truth); the targets of
`data.target: masked` and `composite` on the evaluation subject's crops; the frames `data.eval_order` picks. On the
hand model: how many poses of the published draw (`poses.mix: published`) leave our joint limits; and the LBS surface
distance with the 4 nearest candidates against all faces (`candidates: all`) on held-out poses, with its time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import smplx
from smplx.hand_pose import JOINT_LIMITS, pose_to_angles, prior_poses, sample_prior, slerp_prior
from smplx.manohd.skinning import PoseSampler, SkinningObjective, load_lbs_weights
from segment.annotations import Subject
from segment.interhand import MASK_TREE, read_rgb, tree_path
from segment.masks import make_masks
from handavatar.config import DEFAULTS, AvatarConfig, data_config
from handavatar.data.dataset import InterHandDataset
from smplx.utils.config import load_config

SUBJECTS = ("test/Capture0/ROM04_RT_Occlusion", "test/Capture0/ROM03_RT_No_Occlusion")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def masks(root: Path) -> None:
    subjects = [Subject.parse(s) for s in SUBJECTS]
    for fill in ("coverage", "published"):
        make_masks(root, subjects, tree=f"masks_{fill}", progress=False, fill=fill)
    rows = []
    for mask_file in sorted(tree_path(root, MASK_TREE, "test", "").rglob("*.png")):
        name = str(mask_file.relative_to(tree_path(root, MASK_TREE, "test", "")))
        truth = read_rgb(mask_file, what="mask")[..., 0] > 127
        ours, theirs = (read_rgb(tree_path(root, f"masks_{f}", "test", name), what="mask")[..., 0] > 127
                        for f in ("coverage", "published"))
        rows.append(((theirs & ~ours).sum(), (ours & ~theirs).sum(), ours.sum(), _iou(ours, theirs),
                     _iou(ours, truth), _iou(theirs, truth)))
    r = np.array(rows, dtype=float)
    print(f"masks, {len(r)} frames of {', '.join(SUBJECTS)} (filtered, as the pipeline):")
    print(f"  published vs coverage: {r[:, 0].mean():.0f} pixels gained, {r[:, 1].mean():.1f} lost per frame "
          f"(coverage mask {r[:, 2].mean():.0f} px); IoU mean {r[:, 3].mean():.4f}, min {r[:, 3].min():.4f}")
    print(f"  IoU with the capture's ray-traced masks: coverage {r[:, 4].mean():.4f}, published {r[:, 5].mean():.4f}")


def targets(root: Path) -> None:
    config = load_config(AvatarConfig, [DEFAULTS], [f"data.root={root}", "data.eval_skip=1"])
    sets = {t: InterHandDataset(data_config(config, "eval", target=t)) for t in ("masked", "composite")}
    changed, amounts, pixels = [], [], 0
    for i in range(len(sets["masked"])):
        a, b = (sets[t][i]["target_rgb"][0] for t in ("masked", "composite"))
        differ = np.abs(a - b).max(-1) > 0
        changed.append(differ.sum())
        amounts.append(np.abs(a - b).max(-1)[differ])
        pixels = differ.size
    amounts = np.concatenate(amounts)
    print(f"targets, {len(changed)} evaluation crops of {config.data.eval_subject} ({pixels} px each, black):")
    print(f"  composite vs masked: {np.mean(changed):.0f} pixels differ per crop ({np.mean(changed) / pixels:.2%}), "
          f"by {amounts.mean():.3f} on average (max {amounts.max():.3f}, 0..1 RGB)")


def eval_order(root: Path) -> None:
    for skip in (6, 1):
        config = load_config(AvatarConfig, [DEFAULTS], [f"data.root={root}", f"data.eval_skip={skip}"])
        keys = {o: [str(k) for k in InterHandDataset(data_config(config, "eval", order=o)).cache.keys]
                for o in ("published", "sorted")}
        same = keys["published"] == keys["sorted"]
        print(f"eval_order, eval_skip {skip}: {len(keys['published'])} frames; published and sorted "
              f"{'pick the same frames in the same order' if same else 'differ'}")


def poses(model: str, count: int = 20000) -> None:
    base = smplx.create(model, is_rhand=True, scale=10.0)
    data, frames = base.to_model_data(), base.pose_frames()
    prior = prior_poses(data.hands_mean, data.hands_coeffs, data.hands_components)
    print(f"poses.mix, {count} poses from the prior of {model} ({len(prior)} rows):")
    for mix, draw in (("anatomical", lambda rng: sample_prior(prior, frames, count, rng)),
                      ("published", lambda rng: slerp_prior(prior, count, rng))):
        angles = pose_to_angles(draw(np.random.default_rng(0)), frames)  # (N, 15, 3) degrees
        excess = np.maximum(JOINT_LIMITS[..., 0] - angles, angles - JOINT_LIMITS[..., 1]).clip(min=0)  # degrees
        worst = excess.reshape(count, -1).max(1)
        print(f"  {mix:10s}: {np.mean(worst > 1):.1%} of poses pass a joint limit by more than 1 deg "
              f"(mean excess of those {worst[worst > 1].mean() if (worst > 1).any() else 0:.1f} deg, "
              f"max {worst.max():.1f})")


def candidates(model: str, levels: int, weights: str, n_poses: int) -> None:
    base = smplx.create(model, is_rhand=True, scale=10.0)
    hd = smplx.subdivide(base, levels)
    w = load_lbs_weights(weights, hd, levels=levels) if weights else hd.lbs_weights
    betas, orient, hand_pose = PoseSampler(base, pool=4000, shape_std=1.0, global_rotation=True,
                                           seed=12345).batch(0, n_poses)
    with torch.no_grad():
        base_vertices = base(betas, orient, hand_pose).vertices
    print(f"candidates, {n_poses} held-out poses, MANO-HD level {levels} ({hd.v_template.shape[0]} vertices, base "
          f"{len(base.faces)} faces), weights {weights or 'averaged'}:")
    values = {}
    for k in (4, None):
        objective = SkinningObjective(base, hd, candidates=k, sparsity_sharpness=100.0)
        raw = torch.nn.Parameter(w.clone())
        start, cpu = time.perf_counter(), time.process_time()
        hd_vertices = hd(betas, orient, hand_pose, custom_lbs_weights=raw).vertices
        surface = objective(hd_vertices, base_vertices, raw).surface
        surface.backward()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        values[k] = (surface.item(), raw.grad.clone())
        print(f"  candidates {k or 'all'}: surface term {surface.item():.6g} dm^2, forward + backward of the "
              f"objective {seconds:.2f} s wall, {cpu:.2f} s CPU")
    (v4, g4), (va, ga) = values[4], values[None]
    cos = torch.nn.functional.cosine_similarity(g4.flatten(), ga.flatten(), dim=0).item()
    print(f"  all faces / 4 candidates: surface term x{va / v4:.4f}; gradient wrt the weights: cosine {cos:.4f}, "
          f"relative difference {(g4 - ga).norm() / ga.norm():.4f}")


def capture(source: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "capture"
        shutil.copytree(source, root)
        shutil.rmtree(root / "InterHand2.6M_5fps_batch1" / "preprocess", ignore_errors=True)
        masks(root)
        targets(root)
        eval_order(root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--model", default="open_hand")
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--weights", default="smplx/out/demo_lbs/lbs_weights.pth", help="'' : the averaged weights")
    parser.add_argument("--poses", type=int, default=16)
    parser.add_argument("--only", choices=("capture", "model"), help="only the capture's measurements, or only the "
                        "hand model's (poses.mix, candidates)")
    args = parser.parse_args(argv)
    if args.only != "model":
        capture(args.capture)
    if args.only != "capture":
        poses(args.model)
        candidates(args.model, args.levels, args.weights, args.poses)


if __name__ == "__main__":
    main()
