"""LPIPS, the learned perceptual image distance (Zhang et al. 2018), in plain torch, with weights read offline.

Two weight sources (DESIGN.md "Perceptual loss and metric offline"); every report names the one used (`LPIPS.name`):

- **LPIPS-VGG**, as the paper reports: a user-provided torchvision VGG16 ImageNet checkpoint (`vgg16-397923af.pth`,
  keys `features.<i>.weight`, ...) plus the LPIPS v0.1 linear heads (the `lpips` package's `weights/v0.1/vgg.pth`,
  keys `lin<k>.model.1.weight`). Features: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of the plain VGG16.
- **ST-LPIPS** (Ghildyal & Liu, ECCV 2022), the default: the shift-tolerant weights that the `stlpips-pytorch`
  wheel ships (`stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth`, backbone and heads in one file), read as a
  data file; the package itself is never imported (its code needs torchvision). Its VGG16 replaces each 2x2 max
  pool of stride 2 by a 2x2 max pool of stride 1 followed by a blur-downsample: reflection padding of 2 pixels on
  every side, the 3x3 binomial filter [1, 2, 1]^T [1, 2, 1] / 16, stride 2.

Both compute d(x, y) = sum_k mean_hw || w_k * (f_k(x) / |f_k(x)| - f_k(y) / |f_k(y)|)^2 ||_1 over the five feature
maps f_k, with unit-length features along channels (eps 1e-10 on the norm) and the non-negative 1x1 heads w_k.
Module and key names follow the `lpips` / `stlpips-pytorch` layout (`scaling_layer.shift`, `net.slice<k>.<i>.weight`,
`lin<k>.model.1.weight`), so the shipped state dict loads strictly.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.torchfile import read_torch_file

__all__ = ["LPIPS", "load_lpips"]

_STLPIPS_PACKAGE = "stlpips-pytorch"
_STLPIPS_VARIANT = "vST0.0"
_STLPIPS_VGG = f"weights/{_STLPIPS_VARIANT}/vgg_shift_tolerant.pth"

# VGG16 ("D"): output channels of each 3x3 convolution, one list per stage; a 2x2 max pool starts stages 2 to 5.
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# The ImageNet normalisation of the LPIPS networks, for inputs in [-1, 1]: (x - shift) / scale.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class _ScalingLayer(nn.Module):
    """[-1, 1] RGB to the VGG input normalisation: (x - shift) / scale per channel."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(_SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(_SCALE)[None, :, None, None])

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.shift) / self.scale


class _BlurDownsample(nn.Module):
    """Anti-aliased stride-2 subsampling (Zhang 2019, as stlpips-pytorch's `Downsample(filt_size=3, pad_more=True)`):
    reflection-pad 2 pixels on every side, then a depthwise 3x3 binomial blur of stride 2.
    (N, C, H, W) -> (N, C, H // 2 + 1, W // 2 + 1)."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, features: Tensor) -> Tensor:
        padded = nn.functional.pad(features, (2, 2, 2, 2), mode="reflect")
        return nn.functional.conv2d(padded, self.filt, stride=2, groups=features.shape[1])


class _VGG16Features(nn.Module):
    """The VGG16 convolutional stack cut after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 (`slice1` ..
    `slice5`). Layers keep their index in the whole stack as module names, as in torchvision's `features` and in
    stlpips-pytorch, so that checkpoints map key by key.

    Args:
        shift_tolerant: False for torchvision's VGG16 (2x2 max pool, stride 2); True for ST-LPIPS (2x2 max pool,
            stride 1, then `_BlurDownsample`).
    """

    def __init__(self, shift_tolerant: bool):
        super().__init__()
        index, in_channels = 0, 3
        for stage, widths in enumerate(_VGG16_STAGES):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if stage > 0:
                if shift_tolerant:
                    layers[str(index)] = nn.MaxPool2d(kernel_size=2, stride=1)
                    layers[str(index + 1)] = _BlurDownsample(in_channels)
                    index += 2
                else:
                    layers[str(index)] = nn.MaxPool2d(kernel_size=2, stride=2)
                    index += 1
            for width in widths:
                layers[str(index)] = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
                layers[str(index + 1)] = nn.ReLU(inplace=True)
                index, in_channels = index + 2, width
            self.add_module(f"slice{stage + 1}", nn.Sequential(layers))

    def conv_indices(self) -> list[tuple[int, int]]:
        """(slice, index) of every convolution, in order: the 13 weight layers."""
        return [(k, int(name)) for k in range(1, 6) for name, layer in getattr(self, f"slice{k}").named_children()
                if isinstance(layer, nn.Conv2d)]

    def forward(self, images: Tensor) -> list[Tensor]:
        """images: (N, 3, H, W) normalised -> five (N, C_k, H_k, W_k) feature maps, C = 64, 128, 256, 512, 512."""
        features = []
        for k in range(1, 6):
            images = getattr(self, f"slice{k}")(images)
            features.append(images)
        return features


class _LinearHead(nn.Module):
    """The learned 1x1 convolution (no bias) that weighs squared feature differences; `model.0` was a dropout during
    LPIPS training and is the identity here."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, diffs: Tensor) -> Tensor:
        return self.model(diffs)


def _unit_features(features: Tensor, eps: float = 1e-10) -> Tensor:
    """(N, C, H, W) -> the same divided by its length along channels (+ eps)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """The LPIPS distance between images. Frozen (no parameter requires a gradient) and always in eval mode.

    Build it with `load_lpips`, which fills the weights; `name` says which network and weights it uses.
    """

    def __init__(self, *, shift_tolerant: bool, name: str):
        super().__init__()
        self.name = name
        self.scaling_layer = _ScalingLayer()
        self.net = _VGG16Features(shift_tolerant)
        for k, widths in enumerate(_VGG16_STAGES):
            self.add_module(f"lin{k}", _LinearHead(widths[-1]))

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode whatever `mode` says, so a parent's `.train()` does not change the metric."""
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS distance of each image pair.

        Args:
            pred: (N, 3, H, W) RGB in [0, 1]; gradients flow to it.
            target: (N, 3, H, W) RGB in [0, 1].

        Returns:
            (N,) distances, >= 0, 0 for identical images; in the weights' dtype (float32), on the inputs' device.
        """
        if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
            raise ValueError(f"LPIPS takes two (N, 3, H, W) images of the same shape, got pred {tuple(pred.shape)} "
                             f"and target {tuple(target.shape)}")
        dtype = self.scaling_layer.shift.dtype
        images = torch.cat([pred, target]).to(dtype) * 2 - 1  # (2N, 3, H, W) in [-1, 1]
        features = self.net(self.scaling_layer(images))
        total = pred.new_zeros(pred.shape[0], dtype=dtype)
        for k, both in enumerate(features):
            unit = _unit_features(both)
            diffs = (unit[:pred.shape[0]] - unit[pred.shape[0]:]) ** 2  # (N, C_k, H_k, W_k)
            total = total + getattr(self, f"lin{k}")(diffs).mean(dim=(1, 2, 3))
        return total


@functools.lru_cache(maxsize=4)
def _read_state_dict(path: str, mtime_ns: int) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, read once per (path, modification time) in a process."""
    remedy = "give the file the lpips section of the config asks for, or leave both paths empty for ST-LPIPS"
    state = read_torch_file(path, what="a state dict of tensors", remedy=remedy)
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; {remedy}")
    return state


def _read(path: Path, what: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: expected {what}")
    return _read_state_dict(str(path.resolve()), path.stat().st_mtime_ns)


def _check_keys(state: dict[str, Tensor], expected: dict[str, Tensor], path: Path, what: str) -> None:
    """Raise InputError naming the missing and unexpected keys, or the keys of the wrong shape."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path} is not {what}: missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
                       f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}")
    wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})" for key, value in expected.items()
             if state[key].shape != value.shape]
    if wrong:
        raise InputError(f"{path} is not {what}: wrong shapes for {wrong[:6]}")


def _stlpips_weights() -> tuple[Path, str]:
    """Path of the ST-LPIPS VGG weights in the installed stlpips-pytorch, and its version; nothing is imported."""
    spec = importlib.util.find_spec("stlpips_pytorch")  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            f"the {_STLPIPS_PACKAGE} package, whose wheel ships the ST-LPIPS weights, is not installed: run `make "
            f"install` (it is pinned in requirements.txt), or give both LPIPS-VGG paths")
    return Path(spec.submodule_search_locations[0]) / _STLPIPS_VGG, importlib.metadata.version(_STLPIPS_PACKAGE)


def _load_stlpips() -> LPIPS:
    path, version = _stlpips_weights()
    name = f"ST-LPIPS (VGG16, {_STLPIPS_PACKAGE} {version} weights {_STLPIPS_VARIANT})"
    model = LPIPS(shift_tolerant=True, name=name)
    state = _read(path, f"the ST-LPIPS VGG weights of {_STLPIPS_PACKAGE}: reinstall it with `make install`")
    _check_keys(state, model.state_dict(), path, f"the ST-LPIPS VGG16 checkpoint of {_STLPIPS_PACKAGE}")
    model.load_state_dict(state, strict=True)
    return model


def _load_lpips_vgg(vgg_path: Path, heads_path: Path) -> LPIPS:
    model = LPIPS(shift_tolerant=False, name=f"LPIPS-VGG (v0.1 heads {heads_path.name}, VGG16 {vgg_path.name})")
    expected = model.state_dict()
    vgg_what = ("a torchvision VGG16 ImageNet checkpoint (vgg16-397923af.pth from torchvision's model zoo, keys "
                "features.<i>.weight/bias and classifier.*)")
    heads_what = ("the LPIPS v0.1 VGG linear heads (weights/v0.1/vgg.pth of the `lpips` package, keys "
                  "lin<k>.model.1.weight)")
    vgg = _read(vgg_path, vgg_what)
    heads = _read(heads_path, heads_what)
    renamed = {f"net.slice{k}.{i}.{p}": f"features.{i}.{p}"  # ours: torchvision's
               for k, i in model.net.conv_indices() for p in ("weight", "bias")}
    features = {key: value for key, value in vgg.items() if not key.startswith("classifier.")}
    _check_keys(features, {source: expected[ours] for ours, source in renamed.items()}, vgg_path, vgg_what)
    lins = {key: value for key, value in expected.items() if key.startswith("lin")}
    _check_keys(heads, lins, heads_path, heads_what)
    state = {ours: features[source] for ours, source in renamed.items()}
    state.update(heads)
    state.update({key: expected[key] for key in ("scaling_layer.shift", "scaling_layer.scale")})
    model.load_state_dict(state, strict=True)
    return model


def load_lpips(vgg_path: str | os.PathLike = "", heads_path: str | os.PathLike = "", device=None) -> LPIPS:
    """The LPIPS metric and loss, frozen, in eval mode, on `device` (default CPU).

    Args:
        vgg_path: torchvision VGG16 ImageNet checkpoint (`vgg16-397923af.pth`); with `heads_path`, LPIPS-VGG.
        heads_path: LPIPS v0.1 VGG linear heads (`lpips` package, `weights/v0.1/vgg.pth`).
            Both empty: ST-LPIPS with the weights of the installed stlpips-pytorch wheel.
        device: where the module goes; inputs must be there too.

    Returns:
        An `LPIPS` whose `name` says which network and weights it uses.
    """
    if bool(str(vgg_path)) != bool(str(heads_path)):
        raise InputError(f"LPIPS-VGG needs both the VGG16 checkpoint and the linear heads, got vgg_path="
                         f"{str(vgg_path)!r} and heads_path={str(heads_path)!r}; leave both empty for ST-LPIPS")
    model = _load_lpips_vgg(Path(vgg_path), Path(heads_path)) if str(vgg_path) else _load_stlpips()
    model.requires_grad_(False)
    model.eval()
    return model if device is None else model.to(device)
