"""The avatar's checkpoints: build a fresh avatar from a config, and load a trained one from its latest.tar with
its shapes checked against the config (the error names the tensors and the config keys that differ).

    avatar = build_avatar(config, device)                      # MANO-HD + its skinning weights, PairOF, new networks
    avatar, path, iteration = load_avatar(config, device)      # <out_root>/<experiment>/latest.tar, or run.ckpt
    options = render_options(config)                           # how the config renders (avatar.options)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import smplx
from smplx import PAPER_FRAME
from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.config import config_to_dict
from smplx.manohd.skinning import load_lbs_weights
from smplx.utils.torchfile import read_torch_file
from pairof import load_pairof
from handavatar.config import AvatarConfig
from handavatar.fidelity import warn_unpublished_inputs
from handavatar.model import HandAvatar
from handavatar.render.options import RenderOptions

__all__ = ["build_avatar", "load_avatar", "render_options"]


def build_avatar(config: AvatarConfig, device: torch.device) -> HandAvatar:
    """MANO-HD with its skinning weights, the pretrained PairOF for them, and fresh avatar networks. Under
    `fidelity: published`, warns once about each input that records it was not made the published way.

    Raises:
        FileNotFoundError: the skinning weights or the PairOF checkpoint are missing (names the path and the script
            that makes it).
    """
    warn_unpublished_inputs(config)
    cfg = config.smpl_cfg
    base = smplx.create(cfg.model_path, is_rhand=config.data.hand == "right", **PAPER_FRAME)
    hand = smplx.subdivide(base, cfg.levels)
    if cfg.lbs_weights:
        with torch.no_grad():
            hand.lbs_weights.copy_(load_lbs_weights(cfg.lbs_weights, hand, levels=cfg.levels))
    field = load_pairof(cfg.pairof, hand)
    field.precision = config.precision
    torch.manual_seed(config.seed)
    net = config.network
    try:
        avatar = HandAvatar(hand, field, deformer=net.deformer, shading=net.shading,
                            shading_normal=net.shading_normal, code_dim=net.code_dim,
                            anchor_levels=net.anchor_levels, albedo_at=net.albedo_at, shading_at=net.shading_at,
                            shadow_rays=net.shadow_rays, lights=net.lights, options=render_options(config))
    except ValueError as error:  # options of the network section that do not go together
        raise InputError(f"the config's network section: {error}") from error
    return avatar.to(device)


def render_options(config: AvatarConfig) -> RenderOptions:
    """The renderers' options a config chooses (`N_samples`, `sampling` and the `render` section)."""
    render = config.render
    return RenderOptions(renderer=render.renderer, samples=config.N_samples, sampling=config.sampling,
                         group=render.group, tolerance=render.tolerance, band=render.band,
                         band_margin=render.band_margin, band_min=render.band_min, band_training=render.band_training)


_HINTS = {"hand.": "smpl_cfg.model_path, smpl_cfg.levels, data.hand", "field.": "smpl_cfg.pairof, smpl_cfg.levels",
          "deformer.": "network.deformer, smpl_cfg.levels", "albedo.": "network.code_dim, smpl_cfg.pairof",
          "texture.": "network.albedo_at, smpl_cfg.levels",
          "anchor_embedding": "network.anchor_levels, smpl_cfg.pairof",
          "shading.": "network.shading, network.shading_normal, network.anchor_levels, network.shading_at, "
                      "network.shadow_rays, network.lights"}
"""State-dict prefixes -> the config keys that decide those tensors' shapes."""


def _differences(saved: str | None, config: AvatarConfig) -> list[str]:
    """'key: checkpoint value vs this value' for the shape-deciding keys (data.hand, smpl_cfg.*, network.*)."""
    if not saved:
        return []
    old, new = json.loads(saved), config_to_dict(config)
    pairs = [("data.hand", old["data"]["hand"], new["data"]["hand"])]
    pairs += [(f"{section}.{key}", value, new[section][key]) for section in ("smpl_cfg", "network")
              for key, value in old.get(section, {}).items() if key in new[section]]
    return [f"{key}: {a!r} in the checkpoint, {b!r} here" for key, a, b in pairs if a != b]


def _check_state(expected: dict, found: dict, saved_config: str | None, config: AvatarConfig, path: Path) -> None:
    """Raise ValueError naming the tensors whose shapes differ and the config keys that likely caused it."""
    wrong = [(name, tuple(t.shape), tuple(found[name].shape) if name in found else None)
             for name, t in expected.items() if name not in found or found[name].shape != t.shape]
    wrong += [(name, None, tuple(t.shape)) for name, t in found.items() if name not in expected]
    if not wrong:
        return
    text = [f"{name}: this config builds {'no such tensor' if want is None else want}, the checkpoint has "
            f"{'none' if got is None else got}" for name, want, got in wrong[:4]]
    differ = _differences(saved_config, config)
    hints = sorted({hint for name, _, _ in wrong for prefix, hint in _HINTS.items() if name.startswith(prefix)})
    cause = (f"its config differs in {'; '.join(differ)}" if differ else f"check {'; '.join(hints)}")
    raise InputError(f"checkpoint {path} does not fit this config ({len(wrong)} tensors differ: {'; '.join(text)}"
                     f"{'; ...' if len(wrong) > 4 else ''}); {cause}. Render with the config it was trained with "
                     f"(config.yaml beside it) or set those keys")


def load_avatar(config: AvatarConfig, device: torch.device) -> tuple[HandAvatar, Path, int]:
    """The trained avatar (eval mode), its checkpoint path and iteration.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: not an avatar checkpoint, or one of another configuration
            (naming the tensors and config keys).
    """
    path = Path(config.run.ckpt) if config.run.ckpt else Path(config.out_root) / config.experiment / "latest.tar"
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist: train the avatar first (scripts/train_hand.sh "
                                "with the same config and experiment), or set run.ckpt=PATH to a latest.tar")
    state = read_torch_file(path, what="an avatar checkpoint (a latest.tar of handavatar.train)", map_location=device,
                            remedy="train it again, or set run.ckpt to another latest.tar")
    if not isinstance(state, dict) or "network" not in state:
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise InputError(f"checkpoint {path} is not an avatar checkpoint: expected the keys iter, network, optimizer, "
                         f"config of handavatar.train, found {found}")
    saved = json.loads(state["config"]).get("network", {}) if state.get("config") else {}
    for key in ("albedo_at", "shading_at"):  # tensors that may have the same shapes, and another picture
        if saved.get(key, "samples") != getattr(config.network, key):
            raise InputError(f"checkpoint {path} was trained with network.{key}={saved.get(key, 'samples')}, this "
                             f"config says {getattr(config.network, key)}: render with the config it was trained "
                             f"with (config.yaml beside it) or set network.{key}")
    avatar = build_avatar(config, device)
    _check_state(avatar.state_dict(), state["network"], state.get("config"), config, path)
    avatar.load_state_dict(state["network"])
    return avatar.eval(), path, int(state.get("iter", -1))
