"""The avatar trainer: a resumed run continues exactly as an uninterrupted one; missing inputs and NaNs are named."""

import json
import shutil

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

import pytest
import torch

from smplx.utils.config import ConfigError, load_config
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.train import WeightAverage, run_validation, train
from tests.hand_fixtures import train_tiny_pairof


@pytest.fixture(scope="module")
def setup(synthetic_capture, tmp_path_factory):
    work = tmp_path_factory.mktemp("avatar_train")
    shutil.copytree(synthetic_capture, work / "capture")
    train_tiny_pairof(work)
    return work


def _config(work, *overrides):
    return load_config(AvatarConfig, [DEFAULTS], [
        f"out_root={work / 'runs'}", f"data.root={work / 'capture'}", "smpl_cfg.model_path=open_hand",
        "smpl_cfg.levels=1", "smpl_cfg.lbs_weights=", f"smpl_cfg.pairof={work / 'field' / 'pairof.ckpt'}",
        "N_samples=4", "patch.size=4", "network.code_dim=8", "train.accum_iter=2", "train.save_every=2",
        "train.log_every=1", "train.lossweights.lpips=0", "train.progress_every=0", *overrides])


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_exactly(setup, ema):
    name = "_ema" if ema else ""
    straight = torch.load(train(_config(setup, f"experiment=straight{name}", "train.maxiter=4", f"train.ema={ema}")),
                          weights_only=True)
    train(_config(setup, f"experiment=split{name}", "train.maxiter=2", f"train.ema={ema}"))
    resumed = torch.load(train(_config(setup, f"experiment=split{name}", "train.maxiter=4", f"train.ema={ema}")),
                         weights_only=True)
    assert straight["iter"] == resumed["iter"] == 4
    networks = ("network", "trained_network") if ema else ("network",)
    assert ("trained_network" in straight) == bool(ema)
    for network in networks:
        for name, value in straight[network].items():
            assert torch.equal(value, resumed[network][name]), (network, name)
    if ema:  # the checkpoint's network is the average, not the last weights
        assert not torch.equal(straight["network"]["albedo.codes"], straight["trained_network"]["albedo.codes"])
    assert straight["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for key, state in straight["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][key]["exp_avg"])
    assert [g["name"] for g in straight["optimizer"]["param_groups"]] == ["avatar", "albedo_codes", "shading",
                                                                        "pairof_decoder"]
    assert [g["lr"] for g in straight["optimizer"]["param_groups"]] == [
        g["lr"] for g in resumed["optimizer"]["param_groups"]]


def test_max_seconds_stops_at_a_step_and_resumes(setup, monkeypatch):
    """train.max_seconds: with each iteration taking 10 s (a fake clock), a 25 s budget stops at the first optimiser
    step past it (iteration 4 with accumulation over 2) with the weights of a run told to stop there; rerun, it does
    nothing; with a larger budget it trains on, counting the seconds already spent."""
    import types
    import handavatar.train as trainer
    clock = [0.0]
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    real = trainer.to_tensors
    monkeypatch.setattr(trainer, "to_tensors", lambda *a, **k: clock.__setitem__(0, clock[0] + 10.0) or real(*a, **k))
    timed = torch.load(train(_config(setup, "experiment=timed", "train.maxiter=10", "train.max_seconds=25")),
                       weights_only=True)
    assert timed["iter"] == 4 and timed["seconds"] == 40.0
    straight = torch.load(train(_config(setup, "experiment=stop_at_4", "train.maxiter=4")), weights_only=True)
    for name, value in straight["network"].items():
        assert torch.equal(value, timed["network"][name]), name
    again = torch.load(train(_config(setup, "experiment=timed", "train.maxiter=10", "train.max_seconds=25")),
                       weights_only=True)
    assert again["iter"] == 4 and again["seconds"] == 40.0
    longer = torch.load(train(_config(setup, "experiment=timed", "train.maxiter=10", "train.max_seconds=45")),
                        weights_only=True)
    assert longer["iter"] == 6 and longer["seconds"] == 60.0


def test_published_losses_are_the_reference_renderers(setup):
    """With render.band 0 and render.tolerance 0 (as configs/interhand/*.yaml set them), the fast renderer's loss
    terms equal the reference renderer's, values and gradients, on a trained avatar: the same picture, and the 3D
    occupancy loss over the same samples, those inside some part box (the published `~all_out`). With the default
    band the occupancy loss sees fewer samples and differs."""
    from handavatar.checkpoint import build_avatar
    from handavatar.config import data_config
    from handavatar.data import InterHandDataset, to_tensors
    from handavatar.train import losses
    config = _config(setup, "experiment=losses", "train.maxiter=4", "render.band=0", "render.tolerance=0",
                     "N_samples=12")
    state = torch.load(train(config), weights_only=True)["network"]
    torch.manual_seed(3)
    sample = to_tensors(InterHandDataset(data_config(config, "train"))[0])
    weights = config.train.lossweights
    results = {}
    for name, options in (("fast", ()), ("reference", ("render.renderer=reference",)),
                          ("banded", ("render.band=0.1",))):
        avatar = build_avatar(_config(setup, "render.band=0", "render.tolerance=0", "N_samples=12", *options),
                              torch.device("cpu"))
        avatar.load_state_dict(state)
        terms = losses(avatar, sample, avatar.render(sample), weights)
        sum(terms.values()).backward()
        results[name] = ({k: v.detach() for k, v in terms.items()},
                         {k: p.grad.clone() for k, p in avatar.named_parameters() if p.grad is not None})
    (fast, fast_grads), (reference, reference_grads) = results["fast"], results["reference"]
    assert set(fast) == {"l1", "sil", "iou3d"} and fast["iou3d"] > 0
    for term in fast:
        torch.testing.assert_close(fast[term], reference[term], rtol=1e-5, atol=1e-7, msg=term)
    assert fast_grads.keys() == reference_grads.keys() and any(k.startswith("field.decoder") for k in fast_grads)
    for key in fast_grads:
        torch.testing.assert_close(fast_grads[key], reference_grads[key], rtol=1e-4, atol=1e-6, msg=key)
    assert abs(results["banded"][0]["iou3d"] - reference["iou3d"]) > 1e-4  # the band leaves samples out


def test_weight_average_by_hand():
    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(layer.weight, 1.0)
    average = WeightAverage(layer, 0.5)
    expected = 1.0
    for steps, weight in ((1, 3.0), (2, 5.0), (3, -1.0)):
        torch.nn.init.constant_(layer.weight, weight)
        average.update(layer, steps)
        decay = min(0.5, (1 + steps) / (10 + steps))  # 0.5 from step 9 on: the warm-up decays are smaller here
        expected = decay * expected + (1 - decay) * weight
        assert average.model.weight.item() == pytest.approx(expected, abs=1e-6)
    assert not average.model.weight.requires_grad
    with pytest.raises(ConfigError, match="train.ema 1.0 must be in"):
        WeightAverage(layer, 1.0)


def test_missing_inputs_and_bad_settings_are_named(setup):
    with pytest.raises(FileNotFoundError, match=r"nothing\.ckpt does not exist; pretrain one with "
                                                r"scripts/train_pairof\.sh"):
        train(_config(setup, "experiment=x", "smpl_cfg.pairof=nothing.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"none\.pth do not exist; train them with scripts/train_lbs\.sh"):
        train(_config(setup, "experiment=x", "smpl_cfg.lbs_weights=none.pth"))
    with pytest.raises(ConfigError, match="train.save_every .3. must be a multiple of train.accum_iter .2."):
        train(_config(setup, "experiment=x", "train.save_every=3"))


def test_a_nan_loss_names_its_term(setup, monkeypatch):
    import handavatar.train as trainer

    def broken(*args):
        terms = real(*args)
        terms["sil"] = terms["sil"] * float("nan")
        return terms

    real = trainer.losses
    monkeypatch.setattr(trainer, "losses", broken)
    with pytest.raises(FloatingPointError, match=r"loss term sil became nan at iteration 0 .*latest.tar"):
        train(_config(setup, "experiment=nan", "train.maxiter=2"))


def test_validation_reports(setup):
    train(_config(setup, "experiment=validated", "train.maxiter=2"))
    config = _config(setup, "experiment=validated", "phase=val", "data.eval_skip=1", "data.max_frames=2")
    summary = run_validation(config)
    out = setup / "runs" / "validated" / "val"
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0] == "key,psnr,ssim,psnr_masked,ssim_masked,lpips,albedo_error,shading_error"
    assert len(rows) == 1 + summary["frames"] == 3
    assert (out / "frames.png").is_file() and json.loads((out / "summary.json").read_text())["frames"] == 2
    assert summary["lpips_name"].startswith("ST-LPIPS") and 0 <= summary["lpips"] < 1
    assert 0 <= summary["albedo_error"] < 1 and 0 <= summary["shading_error"] < 1
    tile = np.asarray(Image.open(out / "frames.png")).astype(float) / 255  # rgb | albedo | shading | target | mask
    pred, target = tile[:256, :256], tile[:256, 768:1024]
    first = float(rows[1].split(",")[1])
    assert first == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-6)
    assert 0 < summary["ssim"] <= 1 and np.isfinite(summary["psnr_masked"])
    with pytest.raises(FileNotFoundError, match="does not exist: train the avatar first"):
        run_validation(_config(setup, "experiment=never", "phase=val"))


@pytest.mark.parametrize("albedo_at, shading_at", [("surface", "samples"), ("mesh", "samples"), ("surface", "surface")])
def test_albedo_at_the_surface_trains_validates_and_is_checked_on_load(setup, albedo_at, shading_at):
    """network.albedo_at: surface (and mesh, and shading_at: surface) trains and validates; a surface checkpoint
    holds the same tensors as a published one, so loading it under the other setting (which would draw another
    picture) is refused, naming the key (shading_at too: 16 shadow rays give SelF the published input width). A
    mesh avatar's texture starts from the training images unprojected onto the mesh (texture_init: images): the
    baseline's colours, which its two steps move only a little."""
    name = f"{albedo_at}_{shading_at}"
    settings = [f"network.albedo_at={albedo_at}", f"network.shading_at={shading_at}", "network.shadow_rays=16"]
    train(_config(setup, f"experiment={name}", "train.maxiter=2", *settings))
    summary = run_validation(_config(setup, f"experiment={name}", "phase=val", *settings, "data.eval_skip=1",
                                     "data.max_frames=1"))
    assert summary["frames"] == 1 and np.isfinite(summary["psnr"]) and 0 <= summary["albedo_error"] < 1
    key, value = ("shading_at", shading_at) if shading_at != "samples" else ("albedo_at", albedo_at)
    with pytest.raises(ValueError, match=f"trained with network.{key}={value}, this config says samples"):
        run_validation(_config(setup, f"experiment={name}", "phase=val", f"network.albedo_at={albedo_at}",
                               "data.eval_skip=1", "data.max_frames=1") if key == "shading_at" else
                       _config(setup, f"experiment={name}", "phase=val", "data.eval_skip=1", "data.max_frames=1"))
    if albedo_at == "mesh":
        from handavatar.baseline.evaluate import image_colours

        config = _config(setup, "network.albedo_at=mesh")
        logits = torch.load(setup / "runs" / name / "latest.tar", weights_only=True)["network"]["texture.logits"]
        images = torch.from_numpy(image_colours(config, progress=False)).float()
        assert images.std(0).min() > 0.02  # the capture's colours vary over the hand
        # Adam moves each logit by at most ~lr per step
        torch.testing.assert_close(torch.sigmoid(logits), images.clamp(0.02, 0.98), atol=0.01, rtol=0)


def test_perceptual_loss_and_progress_renders(setup):
    """With the LPIPS loss on, training logs it and the perceptual metric's name; progress renders land in
    TensorBoard and progress.csv; patches too small for ST-LPIPS are refused before training."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(setup, "experiment=perceptual", "train.maxiter=2", "patch.size=24", "train.lossweights.lpips=1",
                     "train.progress_every=2", "train.progress_frames=1", "data.eval_skip=1")
    train(config)
    run = setup / "runs" / "perceptual"
    board = EventAccumulator(str(run / "board"), size_guidance={"images": 0}).Reload()
    assert "train/lpips" in board.Tags()["scalars"] and "progress/psnr" in board.Tags()["scalars"]
    assert board.Tags()["images"] == ["progress"]
    rows = (run / "progress.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,seconds,psnr,ssim") and rows[1].startswith("2,")
    with pytest.raises(ConfigError, match="patch.size 4 is too small for the perceptual loss ST-LPIPS"):
        train(_config(setup, "experiment=x", "train.lossweights.lpips=1"))


@pytest.mark.parametrize("rate, warned", [(1.0, True), (5e-4, False)])
def test_a_saturated_self_is_reported(setup, capsys, rate, warned):
    """SelF's sigmoid saturated at 0 or 1 has no gradient: a far too large learning rate gets there in one step, and
    the progress renders say so; the published rate does not."""
    train(_config(setup, f"experiment=saturated_{rate}", "train.maxiter=2", f"train.lr_shading={rate}",
                  "train.progress_every=2", "train.progress_frames=1", "data.eval_skip=1"))
    assert ("SelF's shading is saturated" in capsys.readouterr().err) == warned
    rows = (setup / "runs" / f"saturated_{rate}" / "progress.csv").read_text().splitlines()
    saturated = float(rows[1].split(",")[rows[0].split(",").index("shading_saturated")])
    assert (saturated > 0.99) == warned


def test_saturated_shading_by_hand():
    from handavatar.validate import saturated_shading

    alpha = torch.tensor([[[1.0, 1.0, 0.9995, 0.2]]])
    shading = torch.tensor([[[[1.0], [0.5], [0.9993], [0.2]]]])  # opaque: saturated, not, saturated; transparent
    assert saturated_shading({"alpha": alpha, "shading": shading}) == pytest.approx(2 / 3)
    assert saturated_shading({"alpha": alpha, "shading": torch.zeros_like(shading)}) == 1.0  # dark: saturated at 0
    assert saturated_shading({"alpha": torch.zeros_like(alpha), "shading": shading}) == 0.0


def test_layer_errors_ignore_a_scale_per_channel():
    from handavatar.validate import layer_errors

    generator = torch.Generator().manual_seed(0)
    albedo, shading = torch.rand(1, 6, 6, 3, generator=generator), torch.rand(1, 6, 6, 1, generator=generator)
    sample = {"target_albedo": albedo, "target_shading": shading, "target_alpha": torch.ones(1, 6, 6)}
    scaled = {"albedo": albedo * torch.tensor([2.0, 0.5, 1.5]), "shading": 3 * shading}
    errors = layer_errors(scaled, sample)
    assert errors["albedo_error"] < 1e-6 and errors["shading_error"] < 1e-6
    noisy = layer_errors({"albedo": albedo + 0.1, "shading": shading}, sample)
    assert 0.01 < noisy["albedo_error"] < 0.1 and noisy["shading_error"] < 1e-6


def test_two_processes_train_as_one_with_twice_the_accumulation(setup):
    """torchrun with 2 CPU processes (gloo): process r renders image 2i + r at iteration i and DDP averages the
    gradients, so 2 iterations of 2 processes equal 4 iterations of 1 process accumulating over 2 images."""
    import os
    import subprocess
    import sys

    common = [f"out_root={setup / 'runs'}", f"data.root={setup / 'capture'}", "smpl_cfg.model_path=open_hand",
              "smpl_cfg.levels=1", "smpl_cfg.lbs_weights=", f"smpl_cfg.pairof={setup / 'field' / 'pairof.ckpt'}",
              "N_samples=4", "patch.size=4", "network.code_dim=8", "train.save_every=2", "train.log_every=1",
              "train.lossweights.lpips=0", "train.progress_every=0", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
                    "-m", "handavatar.train", *common, "experiment=ddp", "train.accum_iter=1", "train.maxiter=2"],
                   check=True, env=env, cwd=os.getcwd(), capture_output=True)
    single = torch.load(train(_config(setup, *common, "experiment=single", "train.accum_iter=2", "train.maxiter=4")),
                        weights_only=True)
    ddp = torch.load(setup / "runs" / "ddp" / "latest.tar", weights_only=True)
    assert ddp["iter"] == 2
    changed = 0
    for name, value in single["network"].items():
        torch.testing.assert_close(ddp["network"][name], value, rtol=1e-4, atol=1e-5, msg=name)
        changed += name.startswith("albedo.")
    assert changed
    assert [g["lr"] for g in ddp["optimizer"]["param_groups"]] == [
        g["lr"] for g in single["optimizer"]["param_groups"]]


def test_the_published_schedule_counts_epochs(setup):
    """decay_iters 0: the rates fall 10x over decay_epochs x the training images; maxiter 0: train until then."""
    config = _config(setup, "experiment=epochs", "train.decay_iters=0", "train.decay_epochs=0.5", "train.maxiter=0",
                     "data.max_frames=8", "train.accum_iter=1", "train.save_every=1")
    state = torch.load(train(config), weights_only=True)
    assert state["iter"] == 4  # 0.5 epochs of 8 images
    lr = [g["lr"] for g in state["optimizer"]["param_groups"] if g["name"] == "avatar"][0]
    assert lr == pytest.approx(config.train.lr * 0.1 ** (3 / 4))


def test_progress_csv_keeps_its_rows_when_the_columns_change(tmp_path):
    from handavatar.validate import append_row

    path = tmp_path / "progress.csv"
    append_row(path, {"iteration": "1", "psnr": "20.0"})
    append_row(path, {"iteration": "2", "psnr": "21.0"})
    assert path.read_text() == "iteration,psnr\n1,20.0\n2,21.0\n"
    append_row(path, {"iteration": "3", "seconds": "9.5", "psnr": "22.0"})  # resumed by code with another column
    assert path.read_text() == "iteration,seconds,psnr\n1,,20.0\n2,,21.0\n3,9.5,22.0\n"


def test_pose_refinement_steps_the_rendered_frames_and_resumes_exactly(setup):
    """train.refine_pose full: the frames rendered (the trainer's seeded draw, one per iteration) and only those get
    a correction, each first moved by one Adam step of exactly lr_pose per component (its own step count, however
    late it comes round); latest.tar holds the corrections and a resumed run continues exactly; a checkpoint is not
    resumed with the other setting."""
    from handavatar.config import data_config
    from handavatar.data import InterHandDataset
    options = ("train.refine_pose=full", "train.lr_pose=0.01", "train.decay_iters=0", "train.decay_epochs=1000")
    straight = torch.load(train(_config(setup, "experiment=posed", "train.maxiter=4", *options)), weights_only=True)
    train(_config(setup, "experiment=posed_split", "train.maxiter=2", *options))
    resumed = torch.load(train(_config(setup, "experiment=posed_split", "train.maxiter=4", *options)),
                         weights_only=True)
    for network in ("network", "pose_corrections"):
        assert straight[network].keys() == resumed[network].keys()
        for name, value in straight[network].items():
            assert torch.equal(value, resumed[network][name]), (network, name)
    assert straight["optimizer"]["param_groups"][-1]["name"] == "pose"
    for key, state in straight["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][key]["exp_avg"])
    config = _config(setup, "train.maxiter=4", *options)
    frames = len(InterHandDataset(data_config(config, "train")))
    drawn = []
    for image in range(4):  # the trainer's draw of the frame of each iteration
        torch.manual_seed(config.seed * 1_000_003 + image)
        drawn.append(int(torch.randint(frames, ()).item()))
    corrections = torch.stack([straight["pose_corrections"][f"corrections.{i}"] for i in range(frames)])
    assert corrections.shape == (frames, 51)
    moved = {i for i in range(frames) if corrections[i].abs().sum() > 0}
    assert moved == set(drawn) and len(moved) >= 2
    for frame in moved:
        if drawn.count(frame) == 1:  # one Adam step: each component with a gradient moves by the rate, 0.01 x
            # 0.1^(iteration / 10,000 images) (0.9993 x 0.01 at the latest), less Adam's eps (1e-8) against gradients
            # down to ~1e-5 (seen: 0.9989 x 0.01 at the least)
            steps = corrections[frame][corrections[frame] != 0].abs()
            assert steps.max() <= 0.01 * (1 + 1e-5) and steps.min() >= 0.01 * 0.99, frame
    with pytest.raises(ConfigError, match="was trained with pose refinement, but train.refine_pose is now none"):
        train(_config(setup, "experiment=posed_split", "train.maxiter=6"))


def test_held_out_pose_refinement_reports_both(setup):
    """val.refine_steps: the unrefined metrics are those of a validation without it, and the refined ones (and the
    size of each frame's correction) come beside them."""
    train(_config(setup, "experiment=heldout", "train.maxiter=2", "data.resolution=64"))
    common = ("experiment=heldout", "phase=val", "data.eval_skip=1", "data.max_frames=1", "data.resolution=64")
    plain = run_validation(_config(setup, *common))
    summary = run_validation(_config(setup, *common, "val.refine_steps=2", "val.refine_fingers=false"))
    for name in ("psnr", "ssim", "lpips", "psnr_masked"):
        assert summary[name] == plain[name], name
    refined = summary["refined"]
    assert "2 Adam steps" in refined["protocol"] and np.isfinite(refined["psnr"]) and refined["psnr"] != plain["psnr"]
    assert 0 < refined["mean_refine_translation_mm"] and "mean_refine_fingers_deg" not in refined
    rows = (setup / "runs" / "heldout" / "val" / "metrics.csv").read_text().splitlines()
    assert "refined_psnr" in rows[0].split(",") and "refine_rotation_deg" in rows[0].split(",") and len(rows) == 2
    assert (setup / "runs" / "heldout" / "val" / "frames_refined.png").is_file()
