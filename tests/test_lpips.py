"""LPIPS: ST-LPIPS against the original stlpips-pytorch package (distances stored in a fixture), LPIPS-VGG against a
functional recomputation from a synthetic checkpoint in torchvision / lpips key layout, errors, and properties."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handavatar import lpips as lpips_module
from handavatar.lpips import load_lpips

FIXTURE = Path(__file__).parent / "fixtures" / "stlpips_reference.npz"
# torchvision's VGG16 `features` indices of the 3x3 convolutions, per stage (a max pool starts stages 2 to 5).
TORCHVISION_CONVS = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@pytest.fixture(scope="module")
def stlpips():
    return load_lpips()


@pytest.fixture(scope="module")
def reference():
    """Pairs and the distances the original stlpips-pytorch 0.0.2 computed for them (make_stlpips_reference.py)."""
    data = np.load(FIXTURE)
    image = {key: torch.from_numpy(data[key]).float() / 255 for key in ("pred", "target", "odd_pred", "odd_target")}
    return image, torch.from_numpy(data["distances"]), torch.from_numpy(data["odd_distances"])


def test_stlpips_matches_the_original_package(stlpips, reference):
    images, distances, odd_distances = reference
    assert stlpips.name == "ST-LPIPS (VGG16, stlpips-pytorch 0.0.2 weights vST0.0)"
    with torch.no_grad():
        ours = stlpips(images["pred"], images["target"]).double()
        odd = stlpips(images["odd_pred"], images["odd_target"]).double()
    # float32 on both sides, other torch version and batching: 1e-5 relative (observed: equal to the last bit).
    torch.testing.assert_close(ours, distances, rtol=1e-5, atol=0)
    torch.testing.assert_close(odd, odd_distances, rtol=1e-5, atol=0)


def test_stlpips_reads_the_wheel_as_data():
    """Neither stlpips_pytorch (its code imports torchvision) nor torchvision is imported; a second load reads the
    59 MB file from the cache."""
    code = ("import sys; from handavatar.lpips import load_lpips, _read_state_dict; load_lpips(); load_lpips(); "
            "assert 'stlpips_pytorch' not in sys.modules and 'torchvision' not in sys.modules, sorted(sys.modules); "
            "info = _read_state_dict.cache_info(); assert (info.misses, info.hits) == (1, 1), info")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_stlpips_properties(stlpips, reference):
    images, _, _ = reference
    pred = images["pred"].clone().requires_grad_(True)
    target = images["target"]
    same = stlpips(target, target)
    assert same.shape == (4,) and same.abs().max() < 1e-6  # only float rounding between the two batch halves
    distances = stlpips(pred, target)
    assert torch.all(distances > 1e-3)
    distances.sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum(dim=(1, 2, 3)).min() > 0
    assert all(p.grad is None and not p.requires_grad for p in stlpips.parameters())
    assert not stlpips.train().training  # stays in eval mode under a parent's .train()


def test_stlpips_tolerates_a_shift_more_than_noise_of_equal_mse(stlpips, reference):
    """Pair 1 of the fixture is the same scene moved by one pixel. Gaussian noise of the same MSE must be far more
    distant (observed ratio ~19; the threshold 5 leaves room for the noise draw)."""
    images, _, _ = reference
    shifted, target = images["pred"][1:2], images["target"][1:2]
    mse = ((shifted - target) ** 2).mean()
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * mse.sqrt()
    with torch.no_grad():
        assert 5 * stlpips(shifted, target) < stlpips(target + noise, target)


def _synthetic_lpips_vgg(directory: Path, seed: int = 0) -> tuple[Path, Path, dict, dict]:
    """A torchvision VGG16 checkpoint (features only, plus one small classifier key that the loader must ignore)
    and LPIPS heads, random, in the published key layouts."""
    g = torch.Generator().manual_seed(seed)
    vgg, in_channels = {}, 3
    for indices, widths in zip(TORCHVISION_CONVS, WIDTHS):
        for i, width in zip(indices, widths):
            he = (2 / (9 * in_channels)) ** 0.5  # He initialisation keeps the activations alive through 13 layers
            vgg[f"features.{i}.weight"] = torch.randn(width, in_channels, 3, 3, generator=g) * he
            vgg[f"features.{i}.bias"] = torch.randn(width, generator=g) * 0.1
            in_channels = width
    vgg["classifier.6.bias"] = torch.zeros(1000)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, widths[-1], 1, 1, generator=g)
             for k, widths in enumerate(WIDTHS)}
    vgg_path, heads_path = directory / "vgg16-397923af.pth", directory / "vgg.pth"
    torch.save(vgg, vgg_path)
    torch.save(heads, heads_path)
    return vgg_path, heads_path, vgg, heads


def _lpips_vgg_by_hand(vgg: dict, heads: dict, pred, target):
    """LPIPS with functional ops on torchvision keys, float64: (N, 3, H, W) [0, 1] pairs -> (N,)."""
    # the constants as the checkpoints store them: float32
    shift = torch.tensor([-0.030, -0.088, -0.188]).double()[:, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450]).double()[:, None, None]

    def features(images):
        h, out = ((2 * images - 1) - shift) / scale, []
        for stage, indices in enumerate(TORCHVISION_CONVS):
            if stage > 0:
                h = F.max_pool2d(h, kernel_size=2, stride=2)
            for i in indices:
                h = F.relu(F.conv2d(h, vgg[f"features.{i}.weight"].double(), vgg[f"features.{i}.bias"].double(),
                                    padding=1))
            out.append(h)
        return out

    total = torch.zeros(pred.shape[0], dtype=torch.float64)
    for k, (a, b) in enumerate(zip(features(pred), features(target))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        weight = heads[f"lin{k}.model.1.weight"].double()[0, :, 0, 0]
        total += torch.einsum("nchw,c->n", (a - b) ** 2, weight) / (a.shape[2] * a.shape[3])
    return total


def test_lpips_vgg_matches_a_functional_recomputation(tmp_path):
    vgg_path, heads_path, vgg, heads = _synthetic_lpips_vgg(tmp_path)
    metric = load_lpips(str(vgg_path), str(heads_path))
    assert metric.name == "LPIPS-VGG (v0.1 heads vgg.pth, VGG16 vgg16-397923af.pth)"
    assert torch.equal(metric.state_dict()["net.slice5.28.weight"], vgg["features.28.weight"])
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 48, 64, generator=g, dtype=torch.float64)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    with torch.no_grad():
        ours = metric.double()(pred, target)
    torch.testing.assert_close(ours, _lpips_vgg_by_hand(vgg, heads, pred, target), rtol=1e-10, atol=0)  # float64
    assert torch.all(ours > 0) and metric(target, target).abs().max() < 1e-12


def test_lpips_vgg_errors_name_the_file_and_the_keys(tmp_path):
    vgg_path, heads_path, vgg, heads = _synthetic_lpips_vgg(tmp_path)
    with pytest.raises(ValueError, match="needs both"):
        load_lpips(vgg_path=str(vgg_path))
    with pytest.raises(ValueError, match="needs both"):
        load_lpips(heads_path=str(heads_path))
    with pytest.raises(FileNotFoundError, match=r"missing\.pth does not exist: expected a torchvision VGG16"):
        load_lpips(str(tmp_path / "missing.pth"), str(heads_path))
    with pytest.raises(FileNotFoundError, match="LPIPS v0.1 VGG linear heads"):
        load_lpips(str(vgg_path), str(tmp_path / "missing.pth"))

    torch.save({k: v for k, v in vgg.items() if k != "features.12.bias"}, tmp_path / "no_bias.pth")
    with pytest.raises(ValueError, match=r"missing keys \['features.12.bias'\], unexpected keys \[\]"):
        load_lpips(str(tmp_path / "no_bias.pth"), str(heads_path))
    torch.save({**heads, "lin5.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "squeeze_heads.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \['lin5.model.1.weight'\]"):
        load_lpips(str(vgg_path), str(tmp_path / "squeeze_heads.pth"))
    torch.save({**vgg, "features.0.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "wrong_shape.pth")
    with pytest.raises(ValueError, match=r"features.0.weight \(64, 3, 5, 5\) \(expected \(64, 3, 3, 3\)\)"):
        load_lpips(str(tmp_path / "wrong_shape.pth"), str(heads_path))
    # the ST-LPIPS file is not a torchvision checkpoint
    st_path = lpips_module._stlpips_weights()[0]
    with pytest.raises(ValueError, match="not a torchvision VGG16"):
        load_lpips(str(st_path), str(heads_path))


def test_missing_stlpips_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(lpips_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="stlpips-pytorch package.*make install"):
        load_lpips()


def test_shapes_are_checked(stlpips):
    with pytest.raises(ValueError, match=r"pred \(1, 3, 32, 32\) and target \(1, 3, 32, 30\)"):
        stlpips(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 30))
    with pytest.raises(ValueError, match=r"pred \(32, 32, 3\)"):
        stlpips(torch.zeros(32, 32, 3), torch.zeros(32, 32, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(stlpips, reference, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions are ~1e-3 off
    images, distances, _ = reference
    metric = load_lpips(device="cuda")
    with torch.no_grad():
        on_gpu = metric(images["pred"].cuda(), images["target"].cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu().double(), distances, rtol=1e-4, atol=0)  # float32, other conv kernels
