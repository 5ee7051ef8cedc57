"""Pretrain MANO-HD skinning weights (reference section 2.4), and evaluate them against the averaged weights.

    python -m smplx.manohd.train_lbs --config configs/lbs/demo.yaml [key.sub=value ...]
    python -m smplx.manohd.train_lbs --config configs/lbs/demo.yaml --eval     # evaluation only

Files are read as configs/lbs/default.yaml, then --config, then the overrides. Writes, under
<out_root>/<name>/: lbs_weights.pth (a plain (V_hd, 16) tensor, as the published file), checkpoint.pt (resumable),
board/ (TensorBoard), vis/*.obj (a posed MANO-HD mesh now and then), eval.json and config.yaml; with publish: true
it also copies the weights to smplx/out/pretrained_lbs_weights/lbs_weights.pth, the path the avatar reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import torch
import trimesh
from torch.utils.tensorboard import SummaryWriter

import smplx
from smplx.utils.cli import cli_main
from smplx.utils.config import (Count, NonNegInt, NonNegative, Positive, Range, Umbrella,
                                config_to_dict, parse_config_command, resolve_device)
from smplx.utils.fileio import atomic_write
from smplx.utils.training import RunFolder, optimisation_step
from smplx.hand_pose import named_poses
from smplx.manohd.skinning import (PoseSampler, SkinningObjective, WeightReport, evaluate_weights,
                                   load_lbs_weights, normalize_weights, write_weights_record)

DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "lbs" / "default.yaml"
PUBLISHED = Path("smplx/out/pretrained_lbs_weights/lbs_weights.pth")
MM_PER_UNIT = 100.0  # the layers work in decimetres (scale 10)
# fidelity: published (docs/fidelity.md): the published pose draw and the surface distance over all faces
PUBLISHED_LBS: dict[str, object] = {"poses.mix": "published", "candidates": "all"}


@dataclass
class ModelConfig:
    path: str  # MANO file or folder; a folder without MANO_RIGHT/LEFT gives the open hand
    is_rhand: bool  # right hand
    levels: NonNegInt  # MANO-HD subdivision levels


@dataclass
class LossConfig:
    laplacian: NonNegative  # weight of the uniform Laplacian smoothness of the posed HD mesh
    surface: NonNegative  # weight of the HD-to-base squared surface distance (both directions)
    normal: NonNegative  # weight of the normal consistency of the posed HD mesh
    sparsity: NonNegative  # weight of the mean 1 - exp(-k w)
    sparsity_sharpness: Positive  # k


@dataclass
class PoseConfig:
    pool: Count  # hand poses pre-sampled from the model's prior, drawn from at every step
    global_rotation: bool  # uniformly random global rotation per pose
    shape_std: NonNegative  # betas ~ N(0, shape_std)
    # anatomical: digit by digit, angles interpolated between two prior poses within the joint limits (ours);
    # published: digit by digit, joints slerped between two prior poses, no limits
    mix: Literal["anatomical", "published"]


@dataclass
class LBSConfig:
    UMBRELLA: ClassVar[Umbrella] = Umbrella("fidelity", {"published": PUBLISHED_LBS, "ours": {}})

    name: str  # output folder name under out_root
    # published: every key of PUBLISHED_LBS takes its published value (setting one otherwise is an error); ours: as set
    fidelity: Literal["published", "ours"]
    out_root: str  # where runs are written
    seed: int  # random seed of the pose pool and the batches
    device: Literal["auto", "cpu", "cuda"]  # auto: CUDA when present
    model: ModelConfig
    steps: NonNegInt  # optimisation steps
    batch: Count  # poses per step
    lr: Positive  # Adam learning rate
    lr_gamma: Annotated[float, Range(gt=0, le=1)]  # exponential decay of the learning rate per step
    # nearest faces / vertices searched by the surface distance, or all (published)
    candidates: Annotated[int | Literal["all"], Range(ge=1)]
    loss: LossConfig
    poses: PoseConfig
    log_every: Count  # steps between TensorBoard scalars
    snapshot_every: NonNegInt  # steps between OBJ snapshots (0: none)
    checkpoint_every: Count  # steps between checkpoints
    eval_poses: Count  # held-out poses of the evaluation
    eval_seed: int  # seed of the held-out poses (different from seed)
    resume: bool  # continue from checkpoint.pt when the run folder has one
    publish: bool  # copy the result to smplx/out/pretrained_lbs_weights/lbs_weights.pth


class LBSRun:
    """The models, objective and outputs of one run."""

    def __init__(self, config: LBSConfig):
        self.config = config
        self.device = resolve_device(config.device)
        self.out = Path(config.out_root) / config.name
        self.base = smplx.create(config.model.path, is_rhand=config.model.is_rhand, scale=10.0).to(self.device)
        self.hd = smplx.subdivide(self.base, config.model.levels)
        candidates = None if config.candidates == "all" else config.candidates
        self.objective = SkinningObjective(self.base, self.hd, candidates=candidates,
                                           sparsity_sharpness=config.loss.sparsity_sharpness)
        self.sampler = PoseSampler(self.base, pool=config.poses.pool, shape_std=config.poses.shape_std,
                                   global_rotation=config.poses.global_rotation, seed=config.seed,
                                   mix=config.poses.mix)
        self.snapshot_pose = torch.as_tensor(named_poses(["fist"], self.base.pose_frames()), dtype=torch.float32,
                                             device=self.device)

    def held_out(self):
        """The evaluation poses: drawn like training poses, from a separate seed."""
        held_out = PoseSampler(self.base, pool=self.config.poses.pool, shape_std=self.config.poses.shape_std,
                               global_rotation=self.config.poses.global_rotation, seed=self.config.eval_seed)
        return held_out.batch(0, self.config.eval_poses)

    def evaluate(self, weights: torch.Tensor) -> dict[str, WeightReport]:
        poses = self.held_out()
        return {name: evaluate_weights(self.base, self.hd, w, poses, mm_per_unit=MM_PER_UNIT)
                for name, w in (("averaged", self.hd.lbs_weights), ("learned", weights))}

    def snapshot(self, weights: torch.Tensor, step: int) -> None:
        with torch.no_grad():
            verts = self.hd(hand_pose=self.snapshot_pose, custom_lbs_weights=weights).vertices[0].cpu().numpy()
        (self.out / "vis").mkdir(exist_ok=True)
        trimesh.Trimesh(verts / 10, self.hd.faces.cpu().numpy(), process=False).export(
            self.out / "vis" / f"step_{step:06d}.obj")  # metres


def train(config: LBSConfig) -> Path:
    """Run (or resume) the weight fit; returns the path of lbs_weights.pth."""
    run = LBSRun(config)
    folder = RunFolder(run.out, config_to_dict(config), checkpoint="checkpoint.pt",
                       identity=("model", "candidates", "seed"))
    raw = torch.nn.Parameter(run.hd.lbs_weights.clone())
    optimizer = torch.optim.Adam([raw], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_gamma)
    start, checkpoint = 0, folder.checkpoint
    state = folder.resume(run.device) if config.resume else None
    if state is not None:
        with torch.no_grad():
            raw.copy_(state["raw_weights"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        print(f"resuming {checkpoint} at step {start}")
    board = folder.board
    w = config.loss
    bar = folder.progress(start, config.steps, "LBS weights")
    for step in bar:
        betas, orient, hand_pose = (t.to(run.device) for t in run.sampler.batch(step, config.batch))
        weights = normalize_weights(raw)
        hd_vertices = run.hd(betas, orient, hand_pose, custom_lbs_weights=weights).vertices
        with torch.no_grad():
            base_vertices = run.base(betas, orient, hand_pose).vertices
        terms = run.objective(hd_vertices, base_vertices, weights)
        loss = (w.laplacian * terms.laplacian + w.surface * terms.surface + w.normal * terms.normal
                + w.sparsity * terms.sparsity)
        optimisation_step(loss, optimizer, scheduler, step=step, checkpoint=checkpoint)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            for name, value in vars(terms).items():
                board.add_scalar(f"loss/{name}", value.item(), done)
            board.add_scalar("loss/total", loss.item(), done)
            board.add_scalar("lr", scheduler.get_last_lr()[0], done)
            bar.set_postfix(loss=f"{loss.item():.4g}")
        if config.snapshot_every and (done % config.snapshot_every == 0 or done == config.steps):
            run.snapshot(normalize_weights(raw).detach(), done)
        if done % config.checkpoint_every == 0 or done == config.steps:
            folder.save({"raw_weights": raw.detach(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "step": done})
    bar.close()

    weights = normalize_weights(raw).detach().float().cpu()
    result = run.out / "lbs_weights.pth"
    atomic_write(result, lambda f: torch.save(weights, f))
    made = {"made_by": "smplx.manohd.train_lbs", "fidelity": config.fidelity, "poses.mix": config.poses.mix,
            "candidates": config.candidates, "run": str(run.out / "config.yaml")}
    write_weights_record(result, weights, made)
    reports = run.evaluate(weights)
    _write_report(run, reports, board, config.steps)
    folder.close()
    if config.publish:
        PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(PUBLISHED, lambda f: torch.save(weights, f))
        write_weights_record(PUBLISHED, weights, made)
        print(f"published to {PUBLISHED} (how it was made: {PUBLISHED.with_suffix('.json')})")
    print(f"wrote {result}, {run.out / 'eval.json'}, TensorBoard logs in {run.out / 'board'}")
    return result


def _write_report(run: LBSRun, reports: dict[str, WeightReport], board: SummaryWriter | None, step: int) -> None:
    config = run.config
    table = {name: asdict(r) for name, r in reports.items()}
    summary = {"held_out_poses": config.eval_poses, "eval_seed": config.eval_seed, "unit": "mm",
               "vertices_hd": run.hd.v_template.shape[0], **table}
    (run.out / "eval.json").write_text(json.dumps(summary, indent=2))
    print(f"held-out poses: {config.eval_poses}; posed MANO-HD vs posed base mesh")
    print(f"{'weights':10s} {'mean mm':>9s} {'p99 mm':>9s} {'flipped faces/pose':>19s}")
    for name, r in reports.items():
        print(f"{name:10s} {r.mean_mm:9.4f} {r.p99_mm:9.4f} {r.flipped_faces:19.1f}")
        if board is not None:
            board.add_scalar(f"eval/{name}_mean_mm", r.mean_mm, step)
            board.add_scalar(f"eval/{name}_p99_mm", r.p99_mm, step)


@cli_main
def main(argv: list[str] | None = None) -> None:
    config, eval_only = parse_config_command(LBSConfig, DEFAULTS, argv, description=__doc__,
                                             eval_help="only evaluate <out_root>/<name>/lbs_weights.pth")
    if not eval_only:
        start = time.perf_counter()
        train(config)
        print(f"done in {time.perf_counter() - start:.0f} s")
        return
    run = LBSRun(config)
    weights = load_lbs_weights(run.out / "lbs_weights.pth", run.hd, levels=config.model.levels)
    _write_report(run, run.evaluate(weights), None, config.steps)


if __name__ == "__main__":
    main()
