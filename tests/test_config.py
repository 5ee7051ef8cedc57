from dataclasses import dataclass
from typing import Literal

import pytest

from smplx.utils.config import ConfigError, load_config
from handavatar.config import DEFAULTS as AVATAR_DEFAULTS, AvatarConfig
from pairof.train import DEFAULTS as PAIROF_DEFAULTS, PairOFTrainConfig
from smplx.manohd.train_lbs import DEFAULTS, LBSConfig


@dataclass
class Inner:
    rate: float
    kind: Literal["a", "b"]


@dataclass
class Outer:
    name: str
    steps: int
    flag: bool
    inner: Inner
    maybe: int | None


@dataclass
class Either:
    band: float | Literal["auto"]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_files_load_into_their_dataclasses():
    """The defaults YAML holds every key of the dataclasses (so the two cannot drift) and every experiment applies."""
    config = load_config(LBSConfig, [DEFAULTS])
    assert config.model.levels == 2 and config.loss.surface == 5.0 and config.steps == 3000
    for experiment in sorted(DEFAULTS.parent.glob("*.yaml")):
        load_config(LBSConfig, [DEFAULTS, experiment])
    pairof = load_config(PairOFTrainConfig, [PAIROF_DEFAULTS])
    assert pairof.field.anchors == 4096 and pairof.field.box_padding == 2.0 and pairof.loss == "mse"
    for experiment in sorted(PAIROF_DEFAULTS.parent.glob("*.yaml")):
        load_config(PairOFTrainConfig, [PAIROF_DEFAULTS, experiment])
    avatar = load_config(AvatarConfig, [AVATAR_DEFAULTS])
    assert avatar.patch.N_patches == 2 and avatar.train.accum_iter == 8 and avatar.N_samples == 64
    for experiment in sorted(AVATAR_DEFAULTS.parent.glob("synthetic/*.yaml")):
        load_config(AvatarConfig, [AVATAR_DEFAULTS, experiment])
    published = {"test_cap0": ("test/Capture0", 200, 50, 3), "test_cap1": ("test/Capture1", 200, 40, 3),
                 "val_cap0": ("val/Capture0", 160, 30, 4)}  # reference §6.6 and §11
    for name, (capture, skip, epochs, levels) in published.items():
        paper = load_config(AvatarConfig, [AVATAR_DEFAULTS, AVATAR_DEFAULTS.parent / "interhand" / f"{name}.yaml"])
        assert paper.data.subject == f"{capture}/ROM04_RT_Occlusion" and paper.data.eval_skip == skip
        assert paper.data.eval_subject == f"{capture}/ROM03_RT_No_Occlusion" and paper.experiment == name
        assert (paper.train.decay_iters, paper.train.decay_epochs, paper.network.anchor_levels) == (0, epochs, levels)
        assert (paper.N_samples, paper.patch.size, paper.train.accum_iter, paper.train.lr) == (64, 32, 8, 5e-4)
        assert paper.train.lossweights.lpips == paper.train.lossweights.l1 == 1.0


def test_merge_order_and_overrides(tmp_path):
    base = _write(tmp_path, "base.yaml", "name: x\nsteps: 1\nflag: false\ninner: {rate: 1, kind: a}\nmaybe: null\n")
    exp = _write(tmp_path, "exp.yaml", "steps: 5\ninner: {kind: b}\n")
    config = load_config(Outer, [base, exp], ["inner.rate=2.5e-3", "flag=true", "maybe=3"])
    assert config == Outer("x", 5, True, Inner(0.0025, "b"), 3)
    assert load_config(Outer, [base], ["inner.rate=3e-3"]).inner.rate == 0.003  # YAML 1.1 reads 3e-3 as a string
    assert isinstance(load_config(Outer, [base]).inner.rate, float)  # an integer is accepted for a float


def test_a_union_takes_the_first_alternative_that_fits(tmp_path):
    base = _write(tmp_path, "either.yaml", "band: auto\n")
    assert load_config(Either, [base]).band == "auto"
    assert load_config(Either, [base], ["band=0.1"]).band == 0.1
    assert load_config(Either, [base], ["band=3e-3"]).band == 0.003
    with pytest.raises(ConfigError, match=r"band must be a number, got 'wide' or band='wide' is not one of \['auto'\]"):
        load_config(Either, [base], ["band=wide"])


@dataclass
class Table:
    rows: dict[str, list[list[float]]]


def test_dict_tables_merge_by_key_and_check_their_values(tmp_path):
    base = _write(tmp_path, "table.yaml", "rows: {a: [[0, 1]], b: [[2, 3]]}\n")
    config = load_config(Table, [base], ["rows.b=[[4, 5.5]]", "rows.c=[]"])
    assert config.rows == {"a": [[0.0, 1.0]], "b": [[4.0, 5.5]], "c": []}
    assert isinstance(config.rows["a"][0][0], float)
    with pytest.raises(ConfigError, match=r"rows.a\[0\]\[1\] must be a number, got 'x'"):
        load_config(Table, [base], ["rows.a=[[0, x]]"])
    with pytest.raises(ConfigError, match=r"rows must be a mapping, got 3"):
        load_config(Table, [base], ["rows=3"])


@pytest.mark.parametrize("override, message", [
    ("inner.rte=1", r"unknown config key inner.rte; did you mean inner.rate\?"),
    ("inner.kind=c", r"inner.kind='c' is not one of \['a', 'b'\]"),
    ("steps=1.5", r"steps must be an integer, got 1.5"),
    ("inner.rate=fast", r"inner.rate must be a number, got 'fast'"),
    ("flag=maybe", r"flag must be true or false"),
    ("steps", r"must look like key.sub=value"),
])
def test_bad_values_are_named(tmp_path, override, message):
    base = _write(tmp_path, "base.yaml", "name: x\nsteps: 1\nflag: false\ninner: {rate: 1, kind: a}\nmaybe: 2\n")
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, [base], [override])


def test_missing_keys_and_bad_files(tmp_path):
    partial = _write(tmp_path, "partial.yaml", "name: x\nsteps: 1\nflag: false\ninner: {rate: 1}\nmaybe: 2\n")
    with pytest.raises(ConfigError, match="config key inner.kind is missing"):
        load_config(Outer, [partial])
    broken = _write(tmp_path, "broken.yaml", "name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(Outer, [broken])
    with pytest.raises(FileNotFoundError, match="absent.yaml does not exist"):
        load_config(Outer, [tmp_path / "absent.yaml"])


def test_data_config_carries_every_data_setting():
    """handavatar.config.data_config: the trainer's and validation's dataset settings come from the run's config,
    every shared field (a changed YAML value reaches the dataset), the training or the evaluation subject."""
    from dataclasses import fields
    from handavatar.config import data_config
    overrides = ["data.root=/r", "data.subject=test/Capture1/A", "data.eval_subject=val/Capture2/B", "data.hand=left",
                 "data.eval_skip=7", "data.eval_order=sorted", "data.resolution=128", "data.crop_scale=1.5",
                 "data.bbox_offset=0.02", "data.box_padding=0.03", "data.skip=3", "data.max_frames=9",
                 "patch.N_patches=3", "patch.size=16", "patch.sample_subject_ratio=0.5", "smpl_cfg.model_path=m",
                 "data.target=composite"]
    config = load_config(AvatarConfig, [AVATAR_DEFAULTS], overrides)
    train, evaluation = data_config(config, "train"), data_config(config, "eval")
    shared = {f.name for f in fields(train)} & set(vars(config.data))
    assert shared >= {"root", "subject", "hand", "resolution", "crop_scale", "bbox_offset", "box_padding", "skip",
                      "max_frames", "target"}
    for name in shared - {"subject", "skip"}:
        assert getattr(train, name) == getattr(evaluation, name) == getattr(config.data, name), name
    assert (train.subject, train.skip, train.mode, train.background) == ("test/Capture1/A", 3, "patch", "random")
    assert (train.n_patches, train.patch_size, train.sample_subject_ratio, train.model) == (3, 16, 0.5, "m")
    assert (evaluation.subject, evaluation.skip, evaluation.order) == ("val/Capture2/B", 7, "sorted")
    assert (evaluation.mode, evaluation.background, evaluation.model) == ("image", "black", "m")
    assert data_config(config, "train", mode="image", layers=True).layers
    with pytest.raises(ValueError, match="split 'test'"):
        data_config(config, "test")
