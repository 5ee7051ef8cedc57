"""Every number that enters from a file is checked: config values (finite, in range), model files, checkpoints,
motion files and annotation files. A bad value is an error naming the file and key, or (per frame) a dropped frame
counted under its own reason."""

import json
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pytest
import torch

from smplx.utils.cli import InputError
from smplx.utils.config import ConfigError, Count, Positive, Range, load_config
from smplx.manohd.skinning import load_lbs_weights
from smplx.manohd.train_lbs import DEFAULTS as LBS_DEFAULTS, LBSConfig
from smplx.utils.torchfile import nonfinite_entries
from smplx.utils.training import RunFolder
from pairof.checkpoint import load_pairof
from pairof.train import DEFAULTS as PAIROF_DEFAULTS, PairOFTrainConfig
from segment.annotations import SplitAnnotations, Subject
from segment.interhand import annotation_path
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS as AVATAR_DEFAULTS, AvatarConfig
from handavatar.poses import load_motion_file


@dataclass
class Ranged:
    rate: Positive
    count: Count
    share: Annotated[float, Range(ge=0, le=1)]
    chunk: Annotated[int | None, Range(ge=1)]


def _ranged(tmp_path, text):
    path = tmp_path / "ranged.yaml"
    path.write_text("rate: 0.5\ncount: 1\nshare: 1.0\nchunk: null\n")
    return load_config(Ranged, [path], text.split())


def test_config_ranges_by_hand(tmp_path):
    assert _ranged(tmp_path, "share=0 chunk=7") == Ranged(0.5, 1, 0.0, 7)  # the bounds themselves are allowed
    for override, message in (("rate=0", r"rate=0.0 is out of range: it must be > 0"),
                              ("count=0", r"count=0 is out of range: it must be >= 1"),
                              ("share=1.5", r"share=1.5 is out of range: it must be >= 0 and <= 1"),
                              ("share=-0.1", r"share=-0.1 is out of range"),
                              ("chunk=0", r"chunk=0 is out of range: it must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            _ranged(tmp_path, override)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf"])
def test_config_numbers_must_be_finite(tmp_path, value):
    with pytest.raises(ConfigError, match=r"rate must be a finite number, got (nan|inf|-inf)"):
        _ranged(tmp_path, f"rate={value}")


@pytest.mark.parametrize("cls, defaults, override, key", [
    (AvatarConfig, AVATAR_DEFAULTS, "train.lr=-1e-3", "train.lr"),
    (AvatarConfig, AVATAR_DEFAULTS, "train.lr=.nan", "train.lr"),
    (AvatarConfig, AVATAR_DEFAULTS, "N_samples=0", "N_samples"),
    (AvatarConfig, AVATAR_DEFAULTS, "patch.size=0", "patch.size"),
    (AvatarConfig, AVATAR_DEFAULTS, "patch.sample_subject_ratio=2", "patch.sample_subject_ratio"),
    (AvatarConfig, AVATAR_DEFAULTS, "data.skip=0", "data.skip"),
    (AvatarConfig, AVATAR_DEFAULTS, "data.eval_skip=-3", "data.eval_skip"),
    (AvatarConfig, AVATAR_DEFAULTS, "chunk=0", "chunk"),
    (AvatarConfig, AVATAR_DEFAULTS, "train.ema=1", "train.ema"),
    (AvatarConfig, AVATAR_DEFAULTS, "render.band=-0.1", "render.band"),
    (AvatarConfig, AVATAR_DEFAULTS, "run.motion_skip=0", "run.motion_skip"),
    (LBSConfig, LBS_DEFAULTS, "lr=0", "lr"),
    (LBSConfig, LBS_DEFAULTS, "batch=0", "batch"),
    (LBSConfig, LBS_DEFAULTS, "poses.pool=0", "poses.pool"),
    (PairOFTrainConfig, PAIROF_DEFAULTS, "lr=-1", "lr"),
    (PairOFTrainConfig, PAIROF_DEFAULTS, "points.per_part=1", "points.per_part"),
    (PairOFTrainConfig, PAIROF_DEFAULTS, "field.anchors=0", "field.anchors"),
])
def test_trainer_configs_check_ranges_at_load_time(cls, defaults, override, key):
    """Learning rates, sample counts, patch sizes and skips are checked when the config is read, before any work."""
    with pytest.raises(ConfigError, match=rf"^{key}(=| must be a finite)") as error:
        load_config(cls, [defaults], [override])
    assert isinstance(error.value, InputError)


def test_nonfinite_entries_by_hand():
    tree = {"network": {"a": torch.zeros(2), "b": torch.tensor([1.0, float("inf")])},
            "optimizer": {"state": {3: {"exp_avg": torch.tensor([float("nan")]), "step": torch.tensor(4)}}},
            "list": [np.zeros(2), np.array([np.nan]), 1.5, float("-inf"), 7, "text"], "count": torch.tensor([1, 2])}
    assert nonfinite_entries(tree) == ["network.b", "optimizer.state.3.exp_avg", "list.1", "list.3"]
    assert nonfinite_entries(torch.tensor(float("nan"))) == ["the value"]


def _save(path, value):
    torch.save(value, path)
    return path


def test_a_nan_in_a_resumable_checkpoint_is_named(tmp_path):
    folder = RunFolder(tmp_path / "run", {"model": "m"}, checkpoint="checkpoint.pt", identity=("model",))
    folder.save({"field": {"weight": torch.tensor([0.5, float("nan")])}, "step": 3})
    with pytest.raises(InputError, match=r"checkpoint.pt: a resumable checkpoint holds NaN or infinite values in "
                                         r"field.weight; delete it to start over, or set resume=false"):
        folder.resume(torch.device("cpu"))
    folder.checkpoint.write_bytes(b"\x80\x02truncated")
    with pytest.raises(InputError, match=r"checkpoint.pt cannot be read as a resumable checkpoint"):
        folder.resume(torch.device("cpu"))


def test_a_nan_in_pairof_and_skinning_weight_files_is_named(tmp_path):
    """Both files are read, and refused, before the layer is looked at."""
    pairof = _save(tmp_path / "pairof.ckpt", {"field": {}, "lbs_weights_sha256": "x",
                                              "state_dict": {"decoder.0.weight": torch.full((2, 2), float("inf"))}})
    with pytest.raises(InputError, match=r"pairof.ckpt: a PairOF checkpoint holds NaN or infinite values in "
                                         r"state_dict.decoder.0.weight; pretrain it again"):
        load_pairof(pairof, None)
    weights = _save(tmp_path / "lbs_weights.pth", torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(InputError, match=r"lbs_weights.pth: skinning weights holds NaN or infinite values"):
        load_lbs_weights(weights, None)


def test_a_nan_in_an_avatar_checkpoint_is_named(tmp_path):
    config = load_config(AvatarConfig, [AVATAR_DEFAULTS], [f"run.ckpt={tmp_path / 'latest.tar'}"])
    _save(tmp_path / "latest.tar", {"iter": 3, "network": {"albedo.codes": torch.tensor([[float("nan")]])}})
    with pytest.raises(InputError, match=r"latest.tar: an avatar checkpoint .* holds NaN or infinite values in "
                                         r"network.albedo.codes"):
        load_avatar(config, torch.device("cpu"))


def test_a_nan_in_a_motion_file_names_the_frame(tmp_path):
    path = tmp_path / "motion.npz"
    pose = np.zeros((4, 48))
    pose[2, 7] = np.inf
    np.savez(path, pose=pose)
    with pytest.raises(InputError, match=r"motion.npz: 'pose' has NaN or infinite values in 1 frame\(s\), the "
                                         r"first frame 2"):
        load_motion_file(path)


def _annotation_split(root, frames):
    """Write the four annotation files of split 'test' with one right-hand image per entry of `frames`, each a dict
    of the values to spoil ('pose', 'focal', 'joint', 'bbox')."""
    images, annotations, mano, joints = [], [], {"0": {}}, {"0": {}}
    cameras = {"0": {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}}
    for i, spoil in enumerate(frames):
        camera = f"40{i}"
        images.append({"id": i, "capture": 0, "frame_idx": 6 * i, "camera": camera, "seq_name": "SEQ",
                       "file_name": f"Capture0/SEQ/cam{camera}/image{6 * i}.jpg", "width": 334, "height": 512})
        annotations.append({"image_id": i, "hand_type": "right", "joint_valid": [1] * 42,
                            "bbox": spoil.get("bbox", [100.0, 100.0, 120.0, 120.0])})
        mano["0"][str(6 * i)] = {"right": {"pose": spoil.get("pose", [0.1] * 48), "shape": [0.0] * 10,
                                           "trans": [0.0, 0.0, 0.0]}, "left": None}
        world = [[10.0 * j, 0.0, 500.0] for j in range(42)]
        world[5] = spoil.get("joint", world[5])
        joints["0"][str(6 * i)] = {"world_coord": world}
        cameras["0"]["campos"][camera] = [0.0, 0.0, 0.0]
        cameras["0"]["camrot"][camera] = np.eye(3).tolist()
        cameras["0"]["focal"][camera] = spoil.get("focal", [1000.0, 1000.0])
        cameras["0"]["princpt"][camera] = [167.0, 256.0]
    for kind, content in (("data", {"images": images, "annotations": annotations}), ("camera", cameras),
                          ("joint_3d", joints), ("MANO_NeuralAnnot", mano)):
        path = annotation_path(root, "test", kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))  # NaN and Infinity as Python's json writes them; None as null


def test_a_nonfinite_number_in_the_annotations_drops_the_frame_with_its_reason(tmp_path):
    nan = float("nan")
    _annotation_split(tmp_path, [{}, {"pose": [0.1] * 47 + [nan]}, {"focal": [None, 1000.0]},
                                 {"joint": [0.0, float("inf"), 500.0]}, {"bbox": [100.0, nan, 120.0, 120.0]}, {}])
    records, rejected = SplitAnnotations(tmp_path, "test").frames(Subject.parse("test/Capture0/SEQ"), "right")
    assert [r.frame_idx for r in records] == [0, 30]
    assert rejected == Counter({"non-finite MANO parameters": 1, "non-finite camera parameters": 1,
                                "non-finite 3D joints": 1, "non-finite box": 1})
