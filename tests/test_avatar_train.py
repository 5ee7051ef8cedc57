"""The avatar trainer: a resumed run continues exactly as an uninterrupted one; missing inputs and NaNs are named."""

import json
import shutil

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

import pytest
import torch

from smplx.config import ConfigError, load_config
from handavatar.train import DEFAULTS, AvatarConfig, run_validation, train
from pairof.train import main as pairof_main


@pytest.fixture(scope="module")
def setup(synthetic_capture, tmp_path_factory):
    work = tmp_path_factory.mktemp("avatar_train")
    shutil.copytree(synthetic_capture, work / "capture")
    pairof_main([f"out_root={work}", "name=field", "model.path=open_hand", "model.levels=1", "model.lbs_weights=",
                 "field.part_samples=32", "field.anchors=256", "batch=1", "points.per_part=16", "eval_poses=1",
                 "eval_points=256", "mesh_resolution=16", "publish=false", "steps=2", "precision=float32"])
    return work


def _config(work, *overrides):
    return load_config(AvatarConfig, [DEFAULTS], [
        f"out_root={work / 'runs'}", f"data.root={work / 'capture'}", "smpl_cfg.model_path=open_hand",
        "smpl_cfg.levels=1", "smpl_cfg.lbs_weights=", f"smpl_cfg.pairof={work / 'field' / 'pairof.ckpt'}",
        "N_samples=4", "patch.size=4", "network.code_dim=8", "train.accum_iter=2", "train.save_every=2",
        "train.log_every=1", *overrides])


def test_resume_continues_exactly(setup):
    straight = torch.load(train(_config(setup, "experiment=straight", "train.maxiter=4")), weights_only=True)
    train(_config(setup, "experiment=split", "train.maxiter=2"))
    resumed = torch.load(train(_config(setup, "experiment=split", "train.maxiter=4")), weights_only=True)
    assert straight["iter"] == resumed["iter"] == 4
    for name, value in straight["network"].items():
        assert torch.equal(value, resumed["network"][name]), name
    assert straight["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for key, state in straight["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], resumed["optimizer"]["state"][key]["exp_avg"])
    assert len(straight["optimizer"]["param_groups"]) == 2
    assert [g["lr"] for g in straight["optimizer"]["param_groups"]] == [
        g["lr"] for g in resumed["optimizer"]["param_groups"]]


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

    def broken(avatar, sample, out, weights):
        terms = real(avatar, sample, out, weights)
        terms["sil"] = terms["sil"] * float("nan")
        return terms

    real = trainer.losses
    monkeypatch.setattr(trainer, "losses", broken)
    with pytest.raises(FloatingPointError, match=r"loss term sil became nan at iteration 0 .*latest.tar"):
        train(_config(setup, "experiment=nan", "train.maxiter=2"))


def test_validation_reports(setup):
    config = _config(setup, "experiment=straight", "phase=val", "data.eval_skip=1", "data.max_frames=2")
    summary = run_validation(config)
    out = setup / "runs" / "straight" / "val"
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0] == "key,psnr,ssim,psnr_masked,ssim_masked" and len(rows) == 1 + summary["frames"] == 3
    assert (out / "frames.png").is_file() and json.loads((out / "summary.json").read_text())["frames"] == 2
    tile = np.asarray(Image.open(out / "frames.png")).astype(float) / 255  # target | rgb | albedo | shading
    target, pred = tile[:256, :256], tile[:256, 256:512]
    first = float(rows[1].split(",")[1])
    assert first == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-6)
    assert 0 < summary["ssim"] <= 1 and np.isfinite(summary["psnr_masked"])
    with pytest.raises(FileNotFoundError, match="train first"):
        run_validation(_config(setup, "experiment=never", "phase=val"))
