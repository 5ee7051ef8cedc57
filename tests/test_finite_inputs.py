"""Every number that enters from a file is checked: config values (finite, in range), model files, checkpoints,
motion files and annotation files. A bad value is an error naming the file and key, or (per frame) a dropped frame
counted under its own reason."""

from dataclasses import dataclass
from typing import Annotated

import pytest

from smplx.cli import InputError
from smplx.config import ConfigError, Count, Positive, Range, load_config
from handavatar.config import DEFAULTS as AVATAR_DEFAULTS, AvatarConfig
from pairof.train import DEFAULTS as PAIROF_DEFAULTS, PairOFTrainConfig
from smplx.manohd.train_lbs import DEFAULTS as LBS_DEFAULTS, LBSConfig


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
