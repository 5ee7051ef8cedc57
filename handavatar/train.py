"""Train the hand avatar (reference §5) on one subject of an InterHand2.6M-layout root.

    python -m handavatar.train --config configs/synthetic/demo.yaml [key.sub=value ...]
    scripts/train_hand.sh configs/synthetic/demo.yaml
    scripts/train_hand.sh configs/synthetic/demo.yaml phase=val         # metrics of latest.tar

Each iteration renders the patches of one image and adds weighted losses: LPIPS and L1 on the patches, the point
silhouette of the posed hand against its dilated mask, and the occupancy at the ray samples against the winding
number of the sealed posed MANO-HD. Gradients accumulate over `train.accum_iter` images per Adam step; the learning
rates (the albedo MLP and the deformer, the albedo codebook, SelF, PairOF's decoder) fall 10x over
`train.decay_iters` images (0: `train.decay_epochs` x the training images, as published). With `train.ema` > 0 the
run also keeps an exponential moving average of the weights (not in the paper), which the checkpoint's network, the
progress renders and every later use of the checkpoint get. With `train.refine_pose` (not in the paper) each training
frame's pose has a learned correction (handavatar.model.pose_refine), applied to the sample before it is rendered and
saved in latest.tar; with `val.refine_steps`, `phase: val` also refines each held-out frame's pose (validate).
Writes <out_root>/<experiment>/: latest.tar (iteration, model and optimizer state; written atomically;
a later run with resume: true continues exactly), board/ (TensorBoard: losses, learning rates, iterations/s, and
every `train.progress_every` iterations renders and metrics of a few evaluation frames), progress.csv (those metrics
against training time) and config.yaml. A NaN or infinite loss stops the run, naming the term, with the last good
latest.tar kept. Under `torchrun` (handavatar.distributed) the processes train one model together.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from smplx.utils.cli import cli_main
from smplx.utils.config import ConfigError, config_to_dict, parse_config_command, resolve_device
from smplx.utils.training import RunFolder
from smplx.utils.inside import winding_numbers
from handavatar.baseline.evaluate import image_colours
from handavatar.checkpoint import build_avatar, load_avatar
from handavatar.config import DEFAULTS, AvatarConfig, LossWeights, TrainSection, data_config
from handavatar.data import InterHandDataset, to_tensors
from handavatar.data.dataset import prepare_caches
from handavatar.losses import point_silhouette, silhouette_loss
from handavatar.lpips import LPIPS, load_lpips
from handavatar.model import HandAvatar
from handavatar.model.pose_refine import PoseCorrections
from handavatar.distributed import setup_distributed
from handavatar.validate import Progress, evaluation_dataset, validate

class WeightAverage:
    """An exponential moving average of a model's weights: after optimiser step n, average <- average + (1 - d)
    (weights - average) with d = min(decay, (1 + n) / (10 + n)) (the usual warm-up, so that the first steps are not
    averaged with the initialisation for long). `model` renders with the averaged weights."""

    def __init__(self, avatar: HandAvatar, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema {decay} must be in (0, 1) (0 turns the average off)")
        self.model, self.decay = copy.deepcopy(avatar).requires_grad_(False), decay

    def update(self, avatar: HandAvatar, steps: int) -> None:
        """Fold in the weights after optimiser step `steps` (1, 2, ...)."""
        rate = 1.0 - min(self.decay, (1 + steps) / (10 + steps))
        with torch.no_grad():
            for average, current in zip(self.model.parameters(), avatar.parameters()):
                average.lerp_(current, rate)


def make_optimizer(avatar: HandAvatar, train: TrainSection, corrections: PoseCorrections | None = None
                   ) -> torch.optim.Adam:
    """Adam with one group per learning rate, by module (`HandAvatar.parameter_groups`): the albedo codebook at
    lr_codes, SelF at lr_shading, PairOF's decoder at lr_pairof, every other trainable parameter (albedo MLP, deformer)
    at lr; and the training frames' pose corrections at lr_pose (group 'pose', last) when given."""
    rates = {"avatar": train.lr, "albedo_codes": train.lr_codes, "shading": train.lr_shading,
             "pairof_decoder": train.lr_pairof, "pose": train.lr_pose}
    groups = dict(avatar.parameter_groups())
    if corrections is not None:
        groups["pose"] = list(corrections.parameters())
    return torch.optim.Adam([{"params": params, "lr": rates[name], "base_lr": rates[name], "name": name}
                             for name, params in groups.items() if params])


def set_learning_rates(optimizer: torch.optim.Optimizer, iteration: int, decay_iters: int) -> float:
    """base_lr x 0.1^(iteration / decay_iters) for every group (the published per-sample exponential decay);
    returns the first group's rate."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * 0.1 ** (iteration / max(decay_iters, 1))
    return optimizer.param_groups[0]["lr"]


def check_patch_size(lpips: LPIPS, size: int, device: torch.device) -> None:
    """Raise ConfigError when `lpips` cannot measure patches of size x size pixels."""
    try:
        with torch.no_grad():
            lpips(torch.zeros(1, 3, size, size, device=device), torch.zeros(1, 3, size, size, device=device))
    except RuntimeError as error:
        raise ConfigError(f"patch.size {size} is too small for the perceptual loss {lpips.name} ({error}); use "
                          "patch.size >= 24 or set train.lossweights.lpips=0") from None


def losses(avatar: HandAvatar, sample: dict, out: dict, weights: LossWeights, lpips: LPIPS | None = None,
           sil_mask: str = "square") -> dict[str, torch.Tensor]:
    """The weighted loss terms of one rendered sample (only those with a non-zero weight; `lpips` is needed when
    its weight is not zero; `sil_mask`: the shape the silhouette loss dilates the mask with)."""
    terms = {}
    if weights.lpips:
        patches = out["rgb"].permute(0, 3, 1, 2).float()
        terms["lpips"] = weights.lpips * lpips(patches, sample["target_rgb"].permute(0, 3, 1, 2).float()).mean()
    if weights.l1:
        terms["l1"] = weights.l1 * (out["rgb"] - sample["target_rgb"]).abs().mean()
    if weights.sil:
        vertices_cam = out["posed"].vertices + sample["Th"]
        size = sample["alpha_image"].shape[-1]
        silhouette = point_silhouette(vertices_cam, sample["K"], size)
        terms["sil"] = weights.sil * silhouette_loss(silhouette, sample["alpha_image"][None], shape=sil_mask)
    # the 3D occupancy at the samples inside the part boxes (the published `~all_out`): all the reference renderer
    # drew there, or those the fast renderer evaluated (with band 0 and tolerance 0, the same samples)
    points, occupancy = out["points"].reshape(-1, 3), out["occupancy"].reshape(-1)
    if "in_box" in out:
        points, occupancy = points[out["in_box"]], occupancy[out["in_box"]]
    if weights.iou3d and points.numel():
        truth = winding_numbers(points.detach().cpu().double().numpy(), out["posed"].vertices[0].detach().cpu()
                                .double().numpy(), avatar.hand.output_faces.cpu().numpy()) >= 1
        terms["iou3d"] = weights.iou3d * ((occupancy - torch.as_tensor(truth).to(points)) ** 2).mean()
    return terms


def train(config: AvatarConfig) -> Path:
    """Run (or resume) training; returns the path of latest.tar. Under `torchrun` each process renders its own
    image per iteration and DistributedDataParallel averages the gradients; rank 0 logs and saves."""
    if config.train.save_every % config.train.accum_iter:
        raise ConfigError(f"train.save_every ({config.train.save_every}) must be a multiple of train.accum_iter "
                          f"({config.train.accum_iter}), so that a checkpoint never falls inside an accumulation")
    group = setup_distributed(resolve_device(config.device))
    device = group.device
    out_dir = Path(config.out_root) / config.experiment
    if config.train.refine_pose != "none" and group.world > 1:
        raise ConfigError(f"train.refine_pose {config.train.refine_pose} trains in one process only (each frame's "
                          "correction lives in the process that renders it): run without torchrun, or set "
                          "train.refine_pose=none")
    avatar = build_avatar(config, device)
    evaluation = [data_config(config, "eval")] if config.train.progress_every else []  # the progress renders' frames
    prepare_caches(data_config(config, "train"), *evaluation)  # each split's annotation files read once
    dataset = InterHandDataset(data_config(config, "train"))
    lpips = load_lpips(config.lpips.vgg, config.lpips.heads, device=device)
    if config.train.lossweights.lpips:
        check_patch_size(lpips, config.patch.size, device)
    corrections = None if config.train.refine_pose == "none" else PoseCorrections(
        len(dataset), fingers=config.train.refine_pose == "full").to(device)
    optimizer = make_optimizer(avatar, config.train, corrections)
    folder = RunFolder(out_dir, config_to_dict(config), checkpoint="latest.tar", main=group.main)
    latest, start, seconds = folder.checkpoint, 0, 0.0
    state = folder.resume(device) if config.resume else None
    if state is not None:
        avatar.load_state_dict(state.get("trained_network", state["network"]))  # an averaged run: the raw weights
        _load_corrections(corrections, state, latest)
        optimizer.load_state_dict(state["optimizer"])
        start, seconds = int(state["iter"]), float(state.get("seconds", 0.0))
        if group.main:
            print(f"resuming {latest} at iteration {start}")
    elif avatar.texture is not None and config.network.texture_init == "images":
        avatar.texture.initialise(image_colours(config, progress=group.main))
    average = WeightAverage(avatar, config.train.ema) if config.train.ema else None
    if average is not None and state is not None and "trained_network" in state:
        average.model.load_state_dict(state["network"])
    rendered = avatar if average is None else average.model  # what the checkpoint and the progress renders hold
    model = avatar if group.world == 1 else DistributedDataParallel(
        avatar, find_unused_parameters=True, broadcast_buffers=False)

    def save(iteration: int) -> None:
        state = {"iter": iteration, "seconds": seconds, "network": rendered.state_dict(),
                 "optimizer": optimizer.state_dict()}
        if average is not None:
            state["trained_network"] = avatar.state_dict()
        if corrections is not None:
            state["pose_corrections"] = corrections.state_dict()
        folder.save(state)

    board = progress = None
    if group.main:
        board = folder.board
        board.add_text("perceptual_metric", lpips.name, start)
        print(f"perceptual loss and metric: {lpips.name}; {group.world} process(es) on {device}")
        if config.train.progress_every:
            progress = Progress(config, evaluation_dataset(config), lpips, out_dir / "progress.csv", device)
    decay = config.train.decay_iters or round(config.train.decay_epochs * len(dataset))
    maxiter = config.train.maxiter or -(-decay // group.world)
    if group.main:
        print(f"{len(dataset)} training images; learning rates fall 10x over {decay} images; {maxiter} iterations of "
              f"{group.world} image(s)")
    if config.train.max_seconds and seconds >= config.train.max_seconds and start < maxiter:
        if group.main:
            print(f"train.max_seconds: {latest} has already trained {seconds:.0f} s (iteration {start}); nothing to "
                  "do (raise train.max_seconds to train on)")
        maxiter = start
    bar = folder.progress(start, maxiter, "avatar", unit="it")
    tick, rays, resumed_seconds = time.perf_counter(), 0, seconds
    for iteration in bar:
        began = time.perf_counter()
        step = (iteration + 1) % config.train.accum_iter == 0 or iteration + 1 == maxiter
        # one image per process: image j = iteration x world + rank of the sequence a single process would see
        image = iteration * group.world + group.rank
        lr = set_learning_rates(optimizer, (iteration + 1) * group.world - 1, decay)
        torch.manual_seed(config.seed * 1_000_003 + image)  # patches, background and jitter of this image
        index = int(torch.randint(len(dataset), ()).item())
        sample = to_tensors(dataset[index], device)
        if corrections is not None:
            sample = corrections(sample)
        rays += int(sample["ray_mask"].sum())
        with contextlib.nullcontext() if step or group.world == 1 else model.no_sync():
            out = model(sample, stratified=True, chunk=config.chunk)
            terms = losses(avatar, sample, out, config.train.lossweights, lpips, config.train.sil_mask)
            if corrections is not None and config.train.pose_prior:
                terms["pose_prior"] = config.train.pose_prior * corrections.prior(sample)
            for name, value in terms.items():
                if not torch.isfinite(value):
                    raise FloatingPointError(f"loss term {name} became {value.item()} at iteration {iteration} "
                                             f"(frame {sample['key']}); the last good state is {latest}: lower "
                                             "train.lr and resume")
            total = sum(terms.values())
            (total / config.train.accum_iter).backward()
        if step:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if average is not None:
                average.update(avatar, -(-(iteration + 1) // config.train.accum_iter))
        done = iteration + 1
        seconds += time.perf_counter() - began
        # train.max_seconds: rank 0's clock decides for every process, at the end of an optimiser step
        out_of_time = step and bool(config.train.max_seconds) and group.agree(seconds >= config.train.max_seconds)
        last = done == maxiter or out_of_time
        if not group.main:
            if out_of_time:
                break
            continue
        if done % config.train.log_every == 0 or last:
            for name, value in terms.items():
                board.add_scalar(f"train/{name}", value.item(), done)
            board.add_scalar("train/total", total.item(), done)
            board.add_scalar("train/lr", lr, done)
            board.add_scalar("train/iterations_per_s", config.train.log_every / (time.perf_counter() - tick), done)
            tick = time.perf_counter()
            bar.set_postfix(loss=f"{total.item():.4f}")
        if done % config.train.save_every == 0 or last:
            save(done)
        if progress is not None and (done % config.train.progress_every == 0 or last):
            progress.log(rendered, board, done, seconds)
            tick = time.perf_counter()
        if out_of_time:
            print(f"train.max_seconds: stopped after {seconds:.0f} s of training at iteration {done} of {maxiter}")
            maxiter = done
            break
    bar.close()
    group.close()
    if group.main:
        folder.close()
        spent = seconds - resumed_seconds
        if maxiter > start and spent > 0:
            trained = maxiter - start
            speed = (f"{trained} iterations in {spent:.0f} s of training: {trained / spent:.2f} it/s, "
                     f"{rays * group.world / spent:.0f} rays/s")
            if device.type == "cuda":
                speed += f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB"
            print(speed + (f" ({group.world} processes)" if group.world > 1 else ""))
        print(f"wrote {latest}, TensorBoard logs in {out_dir / 'board'}")
    return latest


def _load_corrections(corrections: PoseCorrections | None, state: dict, latest: Path) -> None:
    """Resume the pose corrections from a checkpoint's state, or say why they cannot be."""
    if (corrections is None) != ("pose_corrections" not in state):
        had = "with" if "pose_corrections" in state else "without"
        raise ConfigError(f"{latest} was trained {had} pose refinement, but train.refine_pose is now "
                          f"{'none' if corrections is None else 'on'}: resume it with the setting it was trained "
                          "with, or train a new experiment")
    if corrections is not None:
        try:
            corrections.load_state_dict(state["pose_corrections"])
        except RuntimeError as error:
            raise ConfigError(f"the pose corrections in {latest} do not fit this training subject (its frames, "
                              f"data.skip, data.max_frames, or refine_pose rigid/full changed): {error}") from None


def refinement_loss(config: AvatarConfig) -> Callable[[HandAvatar, dict, LPIPS], torch.Tensor]:
    """The loss `validate` refines a held-out frame's pose with (`val.refine_steps`): the training losses of a
    rendered sample (stratified, as in training) without the 3D occupancy term (the mesh is the pose itself)."""
    weights = replace(config.train.lossweights, iou3d=0.0)

    def loss(avatar: HandAvatar, sample: dict, lpips: LPIPS) -> torch.Tensor:
        out = avatar(sample, stratified=True, chunk=config.chunk)
        return sum(losses(avatar, sample, out, weights, lpips, config.train.sil_mask).values())

    return loss


def run_validation(config: AvatarConfig) -> dict:
    """`phase: val`: load <out_root>/<experiment>/latest.tar (or run.ckpt), checked against this config, and
    validate it (handavatar.validate), refining the held-out poses too when `val.refine_steps` > 0."""
    device = resolve_device(config.device)
    avatar, latest, iteration = load_avatar(config, device)
    prepare_caches(data_config(config, "eval"), data_config(config, "train"))  # the baseline reads the training frames
    summary = validate(config, avatar, latest.parent / "val", device,
                       refine_loss=refinement_loss(config) if config.val.refine_steps else None)
    print(f"iteration {iteration}, {summary['frames']} frames of {summary['subject']}: PSNR {summary['psnr']:.2f} "
          f"dB, SSIM {summary['ssim']:.4f} (paper protocol); hand pixels: PSNR {summary['psnr_masked']:.2f} dB, SSIM "
          f"{summary['ssim_masked']:.4f}; LPIPS {summary['lpips']:.4f} ({summary['lpips_name']})" +
          (f"; albedo error {summary['albedo_error']:.4f}, shading error {summary['shading_error']:.4f}"
           if "albedo_error" in summary else "") + f". Wrote {latest.parent / 'val'}/")
    if "refined" in summary:
        refined = summary["refined"]
        print(f"with {config.val.refine_steps} steps of held-out pose refinement: PSNR {refined['psnr']:.2f} dB, "
              f"SSIM {refined['ssim']:.4f}; hand pixels: PSNR {refined['psnr_masked']:.2f} dB; LPIPS "
              f"{refined['lpips']:.4f}")
    return summary


@cli_main
def main(argv: list[str] | None = None) -> None:
    config, _ = parse_config_command(AvatarConfig, DEFAULTS, argv, description=__doc__)
    start = time.perf_counter()
    if config.phase == "val":
        run_validation(config)
    else:
        train(config)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
