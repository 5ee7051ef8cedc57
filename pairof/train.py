"""Pretrain PairOF on random poses of the hand model (the published code lacks this script; reference §3.10), and
evaluate it against the exact inside test.

    python -m pairof.train --config configs/pairof/demo.yaml [key.sub=value ...]
    python -m pairof.train --config configs/pairof/demo.yaml --eval      # evaluation and meshes only

Each step poses `batch` hands (poses from the model's prior, random global rotations and shapes), draws points
uniformly in every part's padded box and near the surface (Gaussian jitter), labels them with the winding number of
the sealed posed MANO-HD mesh (Embree; overlapping fingers count as inside), and fits the field's occupancy to the
labels (MSE as COAP, or binary cross-entropy). Writes, under <out_root>/<name>/: pairof.ckpt (a dict with
`state_dict`, as the published file, plus what it was trained for), checkpoint.pt (resumable), board/
(TensorBoard), eval.json, and meshes of a held-out fist (fist.obj, fist.ply coloured by part, fist.png); with
publish: true also pairof/out/pretrained_pairof/pairof.ckpt, the path the avatar reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

import smplx
from smplx import MANO, PAPER_FRAME
from smplx.utils.cli import cli_main
from smplx.utils.config import (Count, NonNegInt, NonNegative, Positive, Range, Umbrella,
                                config_to_dict, parse_config_command, resolve_device)
from smplx.utils.fileio import atomic_write
from smplx.utils.training import RunFolder, optimisation_step
from smplx.hand_pose import named_poses
from smplx.manohd.skinning import PoseSampler, load_lbs_weights
from smplx.manohd.train_lbs import PoseConfig
from smplx.mesh import sample_surface
from smplx.utils.preview import render_preview, render_sheet
from pairof.checkpoint import load_pairof, weights_fingerprint
from smplx.utils.inside import winding_numbers
from pairof.mesh import extract_mesh
from pairof.model import PairOF, PairOFEncoding

DEFAULTS = Path(__file__).resolve().parents[1] / "configs" / "pairof" / "default.yaml"
PUBLISHED = Path("pairof/out/pretrained_pairof/pairof.ckpt")
# fidelity: published (docs/fidelity.md): the published pose draw, the published networks' dm inputs, COAP's loss
PUBLISHED_PAIROF: dict[str, object] = {"poses.mix": "published", "field.input_scale": 1.0, "loss": "mse",
                                       "points.surface_std": 0.01, "precision": "float32"}


@dataclass
class ModelConfig:
    path: str  # MANO file or folder (a folder without MANO gives the open hand), or open_hand
    is_rhand: bool  # right hand
    levels: NonNegInt  # MANO-HD subdivision levels
    lbs_weights: str  # pretrained MANO-HD skinning weights; '' or a missing file: the averaged weights


@dataclass
class FieldConfig:
    part_samples: Annotated[int, Range(ge=2)]  # surface points per part cloud (half tight, half extended)
    anchors: Count  # surface anchors for the appearance lookup
    neighbours: Count  # nearest anchors per query point
    box_padding: Positive  # part boxes are this many times their vertices' extent
    extended_dist: NonNegative  # metres: reach of a part's extended faces
    seed: int  # draws the fixed surface samples
    input_scale: Positive  # bone-frame coordinates x this before the networks (1: published dm; 10: cm)


@dataclass
class PointConfig:
    # training points per part and pose: half uniform in its box, half near the surface
    per_part: Annotated[int, Range(ge=2)]
    surface_std: NonNegative  # Gaussian jitter of the near-surface points, dm


@dataclass
class PairOFTrainConfig:
    UMBRELLA: ClassVar[Umbrella] = Umbrella("fidelity", {"published": PUBLISHED_PAIROF, "ours": {}})

    name: str  # output folder under out_root
    # published: every key of PUBLISHED_PAIROF takes its published value (setting one otherwise is an error)
    fidelity: Literal["published", "ours"]
    out_root: str  # where runs are written
    seed: int  # seed of the training poses and points
    device: Literal["auto", "cpu", "cuda"]  # auto: CUDA when present
    precision: Literal["float32", "bfloat16"]  # bfloat16: the networks under autocast
    model: ModelConfig
    field: FieldConfig
    steps: NonNegInt  # optimisation steps
    batch: Count  # poses per step
    lr: Positive  # Adam learning rate
    lr_gamma: Annotated[float, Range(gt=0, le=1)]  # exponential decay of the learning rate per step
    loss: Literal["mse", "bce"]  # mse: the published (COAP) loss; bce: binary cross-entropy, learns faster
    points: PointConfig
    poses: PoseConfig
    log_every: Count  # steps between TensorBoard scalars
    checkpoint_every: Count  # steps between checkpoints
    eval_poses: Count  # held-out poses of the evaluation
    eval_seed: int  # their seed
    eval_points: Count  # points per held-out pose and kind (box-uniform, near-surface)
    eval_surface_std: NonNegative  # dm: jitter of the near-surface evaluation points (fixed, so runs compare)
    mesh_resolution: Annotated[int, Range(ge=2)]  # marching-cubes grid of the fist mesh
    resume: bool  # continue from checkpoint.pt when the run folder has one
    publish: bool  # copy pairof.ckpt to pairof/out/pretrained_pairof/pairof.ckpt


def build_hand(config: ModelConfig, device: torch.device) -> tuple[MANO, MANO, str]:
    """The base layer, the MANO-HD layer with the configured skinning weights, and a description of those weights."""
    base = smplx.create(config.path, is_rhand=config.is_rhand, **PAPER_FRAME).to(device)
    hd = smplx.subdivide(base, config.levels)
    path = Path(config.lbs_weights) if config.lbs_weights else None
    if path is not None and path.is_file():
        with torch.no_grad():
            hd.lbs_weights.copy_(load_lbs_weights(path, hd, levels=config.levels))
        return base, hd, str(path)
    if path is not None:
        print(f"note: {path} does not exist (scripts/train_lbs.sh makes it); using the averaged MANO-HD skinning "
              "weights. The avatar must then use the same weights as this field.")
    return base, hd, "averaged"


def box_points(encoding: PairOFEncoding, per_part: int, generator: torch.Generator) -> Tensor:
    """(B, 16 per_part, 3) points uniform in every part's padded box, M frame."""
    b = encoding.joints.shape[0]
    u = torch.rand(b, 16, per_part, 3, generator=generator, dtype=encoding.joints.dtype) * 2 - 1
    local = encoding.box_centre[:, :, None] + encoding.box_half[:, :, None] * u.to(encoding.joints.device)
    return (torch.einsum("bkij,bknj->bkni", encoding.rotations, local) + encoding.joints[:, :, None]).flatten(1, 2)


def surface_points(vertices: Tensor, faces: Tensor, count: int, std: float, generator: torch.Generator) -> Tensor:
    """(B, count, 3) points on each posed surface (area-weighted), jittered by N(0, std) along every axis."""
    out = []
    for v in vertices:
        samples = sample_surface(v.detach().cpu(), faces.cpu(), count, generator=generator).points
        out.append(samples + std * torch.randn(samples.shape, generator=generator, dtype=samples.dtype))
    return torch.stack(out).to(vertices)


def labels(points: Tensor, vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, N) float 0/1: inside the sealed posed meshes (winding number >= 1)."""
    f = faces.cpu().numpy()
    return torch.stack([torch.as_tensor(winding_numbers(p.detach().cpu().double().numpy(),
                                                        v.detach().cpu().double().numpy(), f) >= 1)
                        for p, v in zip(points, vertices)]).to(points)


class PairOFRun:
    """The hand, the field and the samplers of one run."""

    def __init__(self, config: PairOFTrainConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.out = Path(config.out_root) / config.name
        self.base, self.hd, self.weights_source = build_hand(config.model, self.device)
        f = config.field
        torch.manual_seed(config.seed)  # the networks' initial weights: a rerun (or a resumed run) repeats them
        self.field = PairOF.from_layer(self.hd, part_samples=f.part_samples, anchors=f.anchors,
                                       neighbours=f.neighbours, box_padding=f.box_padding,
                                       extended_dist=f.extended_dist, seed=f.seed, input_scale=f.input_scale)
        self.field.precision = config.precision
        self.faces = self.hd.output_faces

    def sampler(self, seed: int) -> PoseSampler:
        p = self.config.poses
        return PoseSampler(self.base, pool=p.pool, shape_std=p.shape_std, global_rotation=p.global_rotation,
                           seed=seed, mix=p.mix)

    def pose(self, betas, orient, hand_pose):
        with torch.no_grad():
            return self.hd(betas.to(self.device), orient.to(self.device), hand_pose.to(self.device))

    def checkpoint_dict(self, steps: int) -> dict:
        """What pairof.ckpt holds: the published `state_dict`, and what the field was trained for."""
        return {"state_dict": self.field.state_dict(), "field": config_to_dict(self.config)["field"],
                "model": config_to_dict(self.config)["model"], "model_source": self.base.source,
                "lbs_weights": self.weights_source, "lbs_weights_sha256": weights_fingerprint(self.hd),
                "steps": steps, "fidelity": self.config.fidelity, "poses": config_to_dict(self.config)["poses"],
                "loss": self.config.loss, "precision": self.config.precision}


def evaluate(run: PairOFRun) -> dict:
    """Volumetric IoU and accuracy on held-out poses, box-uniform and near-surface points reported separately."""
    config = run.config
    betas, orient, hand_pose = run.sampler(config.eval_seed).batch(0, config.eval_poses)
    g = torch.Generator().manual_seed(config.eval_seed)
    counts = {kind: np.zeros(4) for kind in ("box", "surface")}  # tp, fp, fn, tn
    for i in range(config.eval_poses):
        posed = run.pose(betas[i:i + 1], orient[i:i + 1], hand_pose[i:i + 1])
        with torch.no_grad():
            encoding = run.field.encode(posed.vertices, posed.joints, posed.full_pose)
            per_part = max(config.eval_points // 16, 1)
            kinds = {"box": box_points(encoding, per_part, g),
                     "surface": surface_points(posed.vertices, run.faces, config.eval_points,
                                               config.eval_surface_std, g)}
            for kind, points in kinds.items():
                truth = labels(points, posed.vertices, run.faces) > 0.5
                pred = run.field.query(points, encoding).occupancy > 0.5
                counts[kind] += [(pred & truth).sum().item(), (pred & ~truth).sum().item(),
                                 (~pred & truth).sum().item(), (~pred & ~truth).sum().item()]
    report = {"held_out_poses": config.eval_poses, "eval_seed": config.eval_seed}
    for kind, (tp, fp, fn, tn) in counts.items():
        report[kind] = {"iou": tp / max(tp + fp + fn, 1), "accuracy": (tp + tn) / max(tp + fp + fn + tn, 1),
                        "points": int(tp + fp + fn + tn)}
    return report


def export_fist(run: PairOFRun, out: Path) -> Path:
    """Meshes of the field and of the posed MANO-HD for a held-out fist: fist.obj, fist.ply (coloured by part) and
    fist.png (field mesh from above and from the thumb side, then the MANO-HD mesh)."""
    hand_pose = torch.as_tensor(named_poses(["fist"], run.base.pose_frames()), dtype=run.hd.v_template.dtype)
    posed = run.pose(torch.zeros(1, run.hd.num_betas), torch.zeros(1, 3), hand_pose)
    with torch.no_grad():
        encoding = run.field.encode(posed.vertices, posed.joints, posed.full_pose)
    verts = posed.vertices[0].cpu().numpy()
    pad = 0.05 * (verts.max(0) - verts.min(0))
    mesh = extract_mesh(run.field, encoding, verts.min(0) - pad, verts.max(0) + pad,
                        resolution=run.config.mesh_resolution)
    mesh.export(out / "fist.obj")
    mesh.export(out / "fist.ply")
    if len(mesh.faces):
        colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255
        pictures = [render_preview(np.asarray(mesh.vertices), np.asarray(mesh.faces), view=v, color=colours)
                    for v in ("top", "back")]
        truth = render_sheet([verts], run.faces.cpu().numpy(), views=("top", "back"))
        iio.imwrite(out / "fist.png", np.concatenate([np.concatenate(pictures, 1), truth], 0))
    return out / "fist.png"


def occupancy_loss(occupancy: Tensor, truth: Tensor, kind: str) -> Tensor:
    """Mean over all points (points in no part box have occupancy 0 and no gradient)."""
    if kind == "mse":
        return ((occupancy - truth) ** 2).mean()
    return torch.nn.functional.binary_cross_entropy(occupancy.clamp(1e-6, 1 - 1e-6), truth)


def train(config: PairOFTrainConfig) -> Path:
    """Run (or resume) the pretraining; returns the path of pairof.ckpt."""
    run = PairOFRun(config)
    folder = RunFolder(run.out, config_to_dict(config), checkpoint="checkpoint.pt",
                       identity=("model", "field", "seed", "batch", "points"))
    optimizer = torch.optim.Adam(run.field.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_gamma)
    start, checkpoint = 0, folder.checkpoint
    state = folder.resume(run.device) if config.resume else None
    if state is not None:
        run.field.load_state_dict(state["field"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        print(f"resuming {checkpoint} at step {start}")
    sampler = run.sampler(config.seed)
    board = folder.board
    bar = folder.progress(start, config.steps, "PairOF")
    for step in bar:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        posed = run.pose(*sampler.batch(step, config.batch))
        encoding = run.field.encode(posed.vertices, posed.joints, posed.full_pose)
        with torch.no_grad():
            half = config.points.per_part // 2
            points = torch.cat([box_points(encoding, half, g), surface_points(
                posed.vertices, run.faces, 16 * (config.points.per_part - half), config.points.surface_std, g)], 1)
            truth = labels(points, posed.vertices, run.faces)
        out = run.field.query(points, encoding)
        loss = occupancy_loss(out.occupancy, truth, config.loss)
        optimisation_step(loss, optimizer, scheduler, step=step, checkpoint=checkpoint)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            accuracy = ((out.occupancy.detach() > 0.5) == (truth > 0.5)).float().mean().item()
            board.add_scalar("loss/mse", loss.item(), done)
            board.add_scalar("train/accuracy", accuracy, done)
            board.add_scalar("lr", scheduler.get_last_lr()[0], done)
            bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{accuracy:.3f}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            folder.save({"field": run.field.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "step": done})
    bar.close()

    result = run.out / "pairof.ckpt"
    saved = run.checkpoint_dict(config.steps)
    atomic_write(result, lambda f: torch.save(saved, f))
    report = _report(run, board, config.steps)
    folder.close()
    if config.publish:
        atomic_write(PUBLISHED, lambda f: torch.save(saved, f))
        print(f"published to {PUBLISHED}")
    print(f"wrote {result}, {run.out / 'eval.json'}, {run.out}/fist.{{obj,ply,png}}, TensorBoard logs in "
          f"{run.out / 'board'}; held-out IoU {report['box']['iou']:.3f} (box points), "
          f"{report['surface']['iou']:.3f} (near-surface points)")
    return result


def _report(run: PairOFRun, board: SummaryWriter | None, step: int) -> dict:
    report = evaluate(run)
    report["lbs_weights"] = run.weights_source
    (run.out / "eval.json").write_text(json.dumps(report, indent=2))
    export_fist(run, run.out)
    print(f"held-out poses: {report['held_out_poses']}")
    for kind in ("box", "surface"):
        r = report[kind]
        print(f"  {kind:8s} points: IoU {r['iou']:.4f}, accuracy {r['accuracy']:.4f} ({r['points']} points)")
        if board is not None:
            board.add_scalar(f"eval/{kind}_iou", r["iou"], step)
            board.add_scalar(f"eval/{kind}_accuracy", r["accuracy"], step)
    return report


@cli_main
def main(argv: list[str] | None = None) -> None:
    config, eval_only = parse_config_command(PairOFTrainConfig, DEFAULTS, argv, description=__doc__,
                                             eval_help="only evaluate <out_root>/<name>/pairof.ckpt")
    start = time.perf_counter()
    if eval_only:
        run = PairOFRun(config)
        trained = load_pairof(run.out / "pairof.ckpt", run.hd)
        run.field.load_state_dict(trained.state_dict())
        _report(run, None, config.steps)
    else:
        train(config)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
