"""The authors' released files and ours: `lbs_weights.pth` (a plain (V, 16) tensor in both), `pairof.ckpt`
({'state_dict'} there; ours adds the field settings and the skinning weights' fingerprint) and `latest.tar`
({'iter', 'network', 'optimizer'} there; ours adds the config).

    written = import_authors(config, out, lbs_weights=..., pairof=..., avatar=...)   # theirs -> ours
    written = export_authors(config, out, lbs_weights=..., pairof=..., avatar=...)   # ours -> theirs

An import writes, besides our three files, `config.yaml`: the config with smpl_cfg.lbs_weights, smpl_cfg.pairof and
run.ckpt pointing at them, so that `scripts/run_hand.sh <out>/config.yaml` and validation use the authors' avatar.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import torch
import yaml

import smplx
from smplx import MANO, PAPER_FRAME
from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.config import config_to_dict, load_config
from smplx.utils.fileio import atomic_write
from smplx.manohd.skinning import load_lbs_weights
from pairof import load_pairof
from pairof.checkpoint import weights_fingerprint
from pairof.train import DEFAULTS as PAIROF_DEFAULTS, PairOFTrainConfig
from handavatar.checkpoint import build_avatar, load_avatar
from handavatar.config import AvatarConfig
from handavatar.train import make_optimizer
from handavatar.authors.keymap import (avatar_state_from_authors, avatar_to_authors, field_from_authors,
                                       field_to_authors, strip_field_prefix)

__all__ = ["import_authors", "export_authors", "published_field_settings", "FIELD_SETTINGS"]

FIELD_SETTINGS = ("part_samples", "neighbours", "box_padding", "extended_dist", "seed", "input_scale")
"""The field settings an import needs and the authors' files do not hold (the anchor count comes from the file)."""


def published_field_settings() -> dict:
    """FIELD_SETTINGS as configs/pairof/default.yaml has them: the published values (256 part samples, 4
    neighbours, box padding 2, extended faces within 0.01 m, networks in dm), seed 0."""
    field = config_to_dict(load_config(PairOFTrainConfig, [PAIROF_DEFAULTS]))["field"]
    return {key: field[key] for key in FIELD_SETTINGS}


def _read(path: str | Path, what: str):
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        raise InputError(f"{what} {path} cannot be read as a torch file of tensors ({error})") from error


def _save(path: Path, value) -> Path:
    return atomic_write(path, lambda f: torch.save(value, f))


def _hand(config: AvatarConfig, weights_path: Path) -> MANO:
    """The config's MANO-HD carrying the skinning weights of `weights_path` (checked: (V, 16), valid)."""
    cfg = config.smpl_cfg
    hand = smplx.subdivide(smplx.create(cfg.model_path, is_rhand=config.data.hand == "right", **PAPER_FRAME),
                           cfg.levels)
    with torch.no_grad():
        hand.lbs_weights.copy_(load_lbs_weights(weights_path, hand, levels=cfg.levels))
    return hand


def _state(saved, key: str, path: Path, what: str) -> dict:
    if not isinstance(saved, dict) or key not in saved or not isinstance(saved[key], dict):
        found = sorted(saved)[:6] if isinstance(saved, dict) else type(saved).__name__
        raise InputError(f"{what} {path} has no {key!r} state dict (found {found})")
    return saved[key]


def import_authors(config: AvatarConfig, out: str | Path, *, lbs_weights: str | Path, pairof: str | Path,
                   avatar: str | Path | None = None, field: dict | None = None) -> dict[str, Path]:
    """Convert the authors' files into ours under `out`.

    Args:
        config: the avatar config whose hand model (smpl_cfg.model_path, levels, data.hand) and networks
            (network.*) the files were made for.
        lbs_weights, pairof, avatar: their lbs_weights.pth, pairof.ckpt and (optional) latest.tar.
        field: FIELD_SETTINGS overrides (default `published_field_settings()`).

    Returns:
        The paths written: 'lbs_weights', 'pairof', and with `avatar` 'avatar' and 'config'.

    Raises:
        MissingFileError, InputError: a file is missing, unreadable, or not in their layout (naming the key).
    """
    out = Path(out)
    settings = {**published_field_settings(), **(field or {})}
    unknown = set(settings) - set(FIELD_SETTINGS)
    if unknown:
        raise InputError(f"unknown field settings {sorted(unknown)}; known: {list(FIELD_SETTINGS)}")
    weights = _read(lbs_weights, "skinning weights")
    if not torch.is_tensor(weights):
        raise InputError(f"skinning weights {lbs_weights} hold a {type(weights).__name__}, not the plain (V, 16) "
                         "tensor of the published lbs_weights.pth")
    written = {"lbs_weights": _save(out / "lbs_weights.pth", weights.detach().float().contiguous())}
    hand = _hand(config, written["lbs_weights"])

    theirs = _read(pairof, "PairOF checkpoint")
    field_state = dict(theirs["state_dict"]) if isinstance(theirs, dict) and "state_dict" in theirs else theirs
    if not isinstance(field_state, dict):
        raise InputError(f"PairOF checkpoint {pairof} holds a {type(field_state).__name__}, not a state dict")
    field_state = strip_field_prefix(field_state, f"PairOF checkpoint {pairof}")
    network = None
    if avatar is not None:
        saved = _read(avatar, "avatar checkpoint")
        network = _state(saved, "network", Path(avatar), "avatar checkpoint")
        # their pairof.ckpt may hold only the networks: the parts and anchors then come from the avatar
        if not any(k.endswith("partitioner.sample_points") for k in field_state):
            field_state.update({k[len("smpl_body.coap."):]: v for k, v in network.items()
                                if k.startswith(("smpl_body.coap.partitioner.", "smpl_body.coap.connect"))})
    field_model = field_from_authors(field_state, hand, where=f"PairOF checkpoint {pairof}", **settings)
    cfg = config.smpl_cfg
    written["pairof"] = _save(out / "pairof.ckpt", {
        "state_dict": field_model.state_dict(), "field": {**settings, "anchors": field_model.anchor_faces.shape[0]},
        "model": {"path": cfg.model_path, "is_rhand": config.data.hand == "right", "levels": cfg.levels,
                  "lbs_weights": str(written["lbs_weights"])},
        "model_source": hand.source, "lbs_weights": str(written["lbs_weights"]),
        "lbs_weights_sha256": weights_fingerprint(hand), "steps": 0, "imported_from": str(pairof)})
    if network is None:
        return written

    paths = replace(cfg, lbs_weights=str(written["lbs_weights"]), pairof=str(written["pairof"]))
    ours = replace(config, smpl_cfg=paths, run=replace(config.run, ckpt=str(out / "latest.tar")))
    model = build_avatar(ours, torch.device("cpu"))
    state = avatar_state_from_authors(network, model, where=f"avatar checkpoint {avatar}", **settings)
    model.load_state_dict(state)
    written["avatar"] = _save(out / "latest.tar", {
        "iter": int(saved.get("iter", 0)), "seconds": 0.0, "network": state,
        "optimizer": make_optimizer(model, ours.train).state_dict(),  # fresh: the trainer resumes from the import
        "config": json.dumps(config_to_dict(ours)),
        "imported_from": str(avatar)})
    written["config"] = out / "config.yaml"
    written["config"].write_text(yaml.safe_dump(config_to_dict(ours), sort_keys=False))
    return written


def export_authors(config: AvatarConfig, out: str | Path, *, lbs_weights: str | Path, pairof: str | Path,
                   avatar: str | Path | None = None) -> dict[str, Path]:
    """Write our files in the authors' layout under `out` (lbs_weights.pth, pairof.ckpt, latest.tar): the field's
    state dict relative to their COAPBodyModel, the avatar's as their Network's. The optimizer's moments are not
    converted: latest.tar's 'optimizer' is an empty Adam state (their resume is broken anyway, reference §10.10).

    Returns:
        The paths written: 'lbs_weights', 'pairof' and with `avatar` 'avatar'.
    """
    out = Path(out)
    weights = _read(lbs_weights, "skinning weights")
    written = {"lbs_weights": _save(out / "lbs_weights.pth", weights)}
    hand = _hand(config, Path(lbs_weights))
    ours = _read(pairof, "PairOF checkpoint")
    extended_dist = float(ours["field"]["extended_dist"]) if isinstance(ours, dict) and "field" in ours else 0.01
    field = load_pairof(pairof, hand)
    written["pairof"] = _save(out / "pairof.ckpt", {"state_dict": field_to_authors(
        field, hand.v_template, hand.lbs_weights, extended_dist=extended_dist)})
    if avatar is None:
        return written
    paths = replace(config.smpl_cfg, lbs_weights=str(lbs_weights), pairof=str(pairof))
    model, _, iteration = load_avatar(replace(config, smpl_cfg=paths, run=replace(config.run, ckpt=str(avatar))),
                                      torch.device("cpu"))
    if model.texture is not None:
        raise InputError(f"{avatar} keeps its albedo in a vertex texture (network.albedo_at=mesh): the authors' "
                         "Network has only the anchor-code albedo field, so this avatar has no equivalent in their "
                         "layout (lbs_weights.pth and pairof.ckpt were written)")
    written["avatar"] = _save(out / "latest.tar", {
        "iter": iteration, "network": avatar_to_authors(model, extended_dist=extended_dist),
        "optimizer": {"state": {}, "param_groups": []}})
    return written
