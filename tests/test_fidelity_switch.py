"""`fidelity: published` (docs/fidelity.md): the umbrella sets every key of the docs' tables to its published value,
refuses a conflicting value naming the key, the shipped configs say which they are, and a published avatar run names
the inputs (masks, skinning weights, PairOF) that record they were made otherwise."""

import re
import shutil
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml

from smplx.manohd.skinning import SkinningObjective, read_weights_record, write_weights_record
from smplx.manohd.train_lbs import DEFAULTS as LBS_DEFAULTS, PUBLISHED_LBS, LBSConfig
from smplx.utils.config import ConfigError, load_config
from pairof.train import DEFAULTS as PAIROF_DEFAULTS, PUBLISHED_PAIROF, PairOFTrainConfig
from segment.annotations import Subject
from segment.interhand import MASK_TREE, tree_path
from segment.masks import make_masks
from handavatar.config import DEFAULTS, PUBLISHED, AvatarConfig
from handavatar.fidelity import unpublished_inputs

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {"avatar": (AvatarConfig, DEFAULTS, PUBLISHED), "lbs": (LBSConfig, LBS_DEFAULTS, PUBLISHED_LBS),
            "pairof": (PairOFTrainConfig, PAIROF_DEFAULTS, PUBLISHED_PAIROF)}
# keys whose defaults-file comment says "published" or "not in the paper" but that the umbrella leaves alone, and why
NOT_SWITCHED = {
    ("avatar", "fidelity"): "the umbrella itself",
    ("avatar", "render.renderer"): "fast with render.band 0 and render.tolerance 0 (set) has the reference's losses",
    ("avatar", "data.eval_skip"): "per experiment (200, or 160 for val_cap0), set in configs/interhand/*.yaml",
    ("avatar", "train.decay_epochs"): "per experiment (50, 40, 30), set in configs/interhand/*.yaml",
    ("avatar", "run.joint_rot"): "the published free-pose table is the default; rendering only",
    ("lbs", "fidelity"): "the umbrella itself",
    ("lbs", "name"): "the output folder's name",
    ("pairof", "fidelity"): "the umbrella itself",
}


def _docs_table() -> dict[str, dict[str, object]]:
    """The column "`fidelity: published` sets" of docs/fidelity.md's tables, per program: {dotted key: value}."""
    table: dict[str, dict[str, object]] = {name: {} for name in PROGRAMS}
    text = (ROOT / "docs" / "fidelity.md").read_text()
    for block in re.findall(r"^\|[^\n]*`fidelity: published` sets[^\n]*\|\n\|[-|]+\|\n((?:\|[^\n]*\n)+)", text, re.M):
        header = [cell.strip() for cell in re.search(
            r"^(\|[^\n]*`fidelity: published` sets[^\n]*)\n\|[-|]+\|\n" + re.escape(block), text, re.M)[1].split("|")]
        column = header.index("`fidelity: published` sets")
        for row in block.splitlines():
            cell = row.split("|")[column]
            for program, key, value in re.findall(r"`(?:\[(lbs|pairof)\] )?([\w.]+): ([^`]+)`", cell):
                table[program or "avatar"][key] = yaml.safe_load(value)
    return table


def _commented_published_keys(defaults: Path) -> set[str]:
    """Dotted keys of a defaults file whose comment (with its continuation lines) mentions "published" or "not in the
    paper"."""
    keys, stack, last = set(), [], None
    for line in defaults.read_text().splitlines():
        if line.lstrip().startswith("#"):
            if last is not None and ("published" in line or "not in the paper" in line):
                keys.add(last)  # a continuation of the previous key's comment
            continue
        match = re.match(r"^( *)([A-Za-z_]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match[1]), match[2], match[3]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        last = ".".join(k for _, k in stack)
        comment = rest.split("#", 1)[1] if "#" in rest else ""
        if "published" in comment or "not in the paper" in comment:
            keys.add(last)
    return keys


def _kind(cls, dotted):
    for part in dotted.split("."):
        cls = typing.get_type_hints(cls, include_extras=True)[part]
    return cls


def _other_value(kind, value):
    """A valid value of the field type `kind` other than `value`."""
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) is typing.Literal:
        return next(v for v in typing.get_args(kind) if v != value)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # e.g. float | Literal['auto']
        for alternative in typing.get_args(kind):
            try:
                return _other_value(alternative, value)
            except (StopIteration, TypeError):
                continue
    if kind is bool:
        return not value
    number = value if isinstance(value, (int, float)) else 0  # value: a literal of another alternative
    return number + 1 if kind is int else number + 0.5


def test_the_docs_tables_are_the_umbrellas_lists():
    """Every key the docs' tables say `fidelity: published` sets is in the code's list with the same value, and the
    lists hold nothing the tables do not name."""
    table = _docs_table()
    for program, (_, _, published) in PROGRAMS.items():
        assert table[program] == dict(published), program
    assert len(table["avatar"]) >= 12 and table["lbs"]["candidates"] == "all"


@pytest.mark.parametrize("program", PROGRAMS)
def test_published_resolves_every_table_item_to_its_published_value(program):
    """Item by item: a `fidelity=published` config holds the docs' published values, where `ours` holds the
    defaults file's (so each item really changes something or is already published by default)."""
    cls, defaults, _ = PROGRAMS[program]
    published = load_config(cls, [defaults], ["fidelity=published"])
    ours = load_config(cls, [defaults])
    assert (published.fidelity, ours.fidelity) == ("published", "ours")
    raw = yaml.safe_load(defaults.read_text())
    for key, value in _docs_table()[program].items():
        got, default = published, raw
        for part in key.split("."):
            got, default = getattr(got, part), default[part]
        assert got == value, key
        mine = ours
        for part in key.split("."):
            mine = getattr(mine, part)
        assert mine == default, key  # under ours the defaults file decides


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_key_commented_published_is_switched_or_named(program):
    """A key whose defaults-file comment calls a value "published" or "not in the paper" is a deviation or an option
    of ours: it must have a published value in the umbrella, or be a named exception. A new option documented so,
    without a published value, fails here."""
    _, defaults, published = PROGRAMS[program]
    commented = _commented_published_keys(defaults)
    exceptions = {key for prog, key in NOT_SWITCHED if prog == program}
    assert commented - set(published) - exceptions == set()
    assert exceptions <= commented  # an exception that no longer applies is removed from the list
    for key in published:
        _kind(PROGRAMS[program][0], key)  # a key of the config (KeyError otherwise)


@pytest.mark.parametrize("program,key", [(p, k) for p, (_, _, published) in PROGRAMS.items() for k in published])
def test_a_conflicting_value_is_refused_naming_the_key(program, key, tmp_path):
    """On the command line and in an experiment file: the error names the key, both values and the fix; the same
    value is accepted; under `ours` the value is taken."""
    cls, defaults, published = PROGRAMS[program]
    other = _other_value(_kind(cls, key), published[key])
    text = yaml.safe_dump(other).splitlines()[0]
    fix = f"set fidelity: ours, or drop {key}={text}"
    with pytest.raises(ConfigError, match=re.escape(f"fidelity: published sets {key}: ")) as error:
        load_config(cls, [defaults], ["fidelity=published", f"{key}={text}"])
    assert "the command line" in str(error.value) and str(error.value).endswith(fix)
    experiment = tmp_path / "experiment.yaml"
    tree = {"fidelity": "published"}
    node = tree
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = other
    experiment.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=re.escape(str(experiment))):
        load_config(cls, [defaults, experiment])
    same = yaml.safe_dump(published[key]).splitlines()[0]
    resolved = load_config(cls, [defaults], ["fidelity=published", f"{key}={same}"])
    ours = load_config(cls, [defaults, experiment], ["fidelity=ours"])
    for part in key.split("."):
        resolved, ours = getattr(resolved, part), getattr(ours, part)
    assert resolved == published[key] and ours == other


def test_a_later_override_back_to_the_published_value_is_accepted(tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("fidelity: published\ndata: {target: masked}\n")
    assert load_config(AvatarConfig, [DEFAULTS, experiment], ["data.target=composite"]).data.target == "composite"


def test_the_shipped_configs_say_which_recipe_they_are():
    for name in ("test_cap0", "test_cap1", "val_cap0"):
        paper = load_config(AvatarConfig, [DEFAULTS, ROOT / "configs" / "interhand" / f"{name}.yaml"])
        assert paper.fidelity == "published" and paper.data.target == "composite" and paper.render.band == 0
    assert load_config(AvatarConfig, [DEFAULTS, ROOT / "configs" / "synthetic" / "demo.yaml"]).fidelity == "ours"
    for cls, defaults, _ in (PROGRAMS["lbs"], PROGRAMS["pairof"]):
        assert load_config(cls, [defaults, defaults.parent / "mano.yaml"]).fidelity == "published"
        assert load_config(cls, [defaults, defaults.parent / "demo.yaml"]).fidelity == "ours"
    assert load_config(LBSConfig, [LBS_DEFAULTS, LBS_DEFAULTS.parent / "mano.yaml"]).candidates == "all"


def test_the_surface_distance_over_all_faces_is_at_most_the_candidates_one():
    """SkinningObjective(candidates=None) searches every face and vertex: its surface term is the exact one, never
    above the 4-candidate term (a minimum over more), and equal to a candidate search as wide as the mesh."""
    import smplx
    base = smplx.create("open_hand", is_rhand=True, scale=10.0)
    hd = smplx.subdivide(base, 1)
    g = torch.Generator().manual_seed(0)
    pose = 0.6 * torch.rand(1, 45, generator=g)  # one pose: the all-faces and the mesh-wide searches take 10 s
    hd_vertices, base_vertices = hd(hand_pose=pose).vertices, base(hand_pose=pose).vertices
    terms = {k: SkinningObjective(base, hd, candidates=k, sparsity_sharpness=100.0)(
        hd_vertices, base_vertices, hd.lbs_weights).surface for k in (None, 4, 1)}
    assert terms[None] <= terms[4] <= terms[1] and terms[None] < terms[1]
    wide = SkinningObjective(base, hd, candidates=len(base.faces), sparsity_sharpness=100.0)
    torch.testing.assert_close(terms[None], wide(hd_vertices, base_vertices, hd.lbs_weights).surface,
                               rtol=1e-6, atol=0)  # float32 means of the same minima, summed in another order


def test_a_weights_record_is_believed_only_for_its_weights(tmp_path):
    weights = torch.softmax(torch.randn(10, 16, generator=torch.Generator().manual_seed(0)), 1)
    path = tmp_path / "lbs_weights.pth"
    torch.save(weights, path)
    assert read_weights_record(path) is None
    write_weights_record(path, weights, {"poses.mix": "published", "candidates": "all"})
    assert read_weights_record(path)["candidates"] == "all"
    torch.save(weights.flip(0), path)  # other weights copied over the file: the record no longer describes it
    assert read_weights_record(path) is None


def test_a_published_run_names_each_input_made_otherwise(synthetic_capture, tmp_path):
    """Masks filled our way (and the capture's own, which do not say), weights and PairOF that record our pose draw:
    one message each, naming the file and the command that remakes it; none once they are published, and none at
    all under `fidelity: ours`."""
    root = tmp_path / "capture"
    shutil.copytree(synthetic_capture, root)
    train = Subject.parse("test/Capture0/ROM04_RT_Occlusion")
    make_masks(root, [train], overwrite=True, progress=False, fill="coverage")
    weights, pairof = tmp_path / "lbs_weights.pth", tmp_path / "pairof.ckpt"
    torch.save(torch.full((10, 16), 1 / 16), weights)
    write_weights_record(weights, torch.full((10, 16), 1 / 16), {"poses.mix": "anatomical", "candidates": 4})
    torch.save({"poses": {"mix": "anatomical"}, "field": {"input_scale": 10.0}, "loss": "mse",
                "precision": "float32"}, pairof)
    overrides = [f"data.root={root}", f"smpl_cfg.lbs_weights={weights}", f"smpl_cfg.pairof={pairof}"]
    config = load_config(AvatarConfig, [DEFAULTS], ["fidelity=published", *overrides])
    messages = unpublished_inputs(config)
    assert len(messages) == 5
    masks, eval_masks, lbs, field, lpips = messages
    assert "test/Capture0/ROM04_RT_Occlusion" in masks and "filled coverage" in masks
    assert "--seq ROM04_RT_Occlusion --fill published --overwrite" in masks
    assert "ROM03_RT_No_Occlusion" in eval_masks and "not saying how they were filled" in eval_masks
    assert str(weights) in lbs and "poses.mix=anatomical" in lbs and "scripts/train_lbs.sh configs/lbs/mano.yaml" in lbs
    assert str(pairof) in field and "field.input_scale=10.0 (published: 1.0)" in field
    assert "poses.mix=anatomical" in field
    assert "ST-LPIPS" in lpips
    assert unpublished_inputs(load_config(AvatarConfig, [DEFAULTS], overrides)) == []

    make_masks(root, [train, Subject.parse("test/Capture0/ROM03_RT_No_Occlusion")], overwrite=True, progress=False,
               fill="published")
    write_weights_record(weights, torch.full((10, 16), 1 / 16), {"poses.mix": "published", "candidates": "all"})
    torch.save({"poses": {"mix": "published"}, "field": {"input_scale": 1.0}, "loss": "mse",
                "precision": "float32"}, pairof)
    assert unpublished_inputs(config) == [lpips]
    assert "smpl_cfg.lbs_weights is ''" in unpublished_inputs(
        load_config(AvatarConfig, [DEFAULTS], ["fidelity=published", *overrides, "smpl_cfg.lbs_weights="]))[0]
    assert tree_path(root, MASK_TREE, "test", "Capture0").is_dir()


def test_the_pretraining_runs_take_and_record_the_published_settings(tmp_path):
    """candidates: all reaches the objective as an all-faces search; pairof.ckpt records the fidelity and the pose
    draw that handavatar.fidelity reads."""
    from smplx.manohd.train_lbs import LBSRun
    from pairof.train import PairOFRun
    small = ["fidelity=published", "model.path=open_hand", "model.levels=1", "poses.pool=20", f"out_root={tmp_path}"]
    assert LBSRun(load_config(LBSConfig, [LBS_DEFAULTS], small)).objective.candidates is None
    assert LBSRun(load_config(LBSConfig, [LBS_DEFAULTS], small[1:])).objective.candidates == 4
    run = PairOFRun(load_config(PairOFTrainConfig, [PAIROF_DEFAULTS], small + [
        "model.lbs_weights=", "field.anchors=32", "field.part_samples=8"]))
    saved = run.checkpoint_dict(0)
    assert (saved["fidelity"], saved["poses"]["mix"], saved["loss"], saved["precision"]) == (
        "published", "published", "mse", "float32") and saved["field"]["input_scale"] == 1.0


def test_each_message_is_warned_once(tmp_path):
    """Inputs that do not exist are load_pairof's and the dataset's to report; what is left here (ST-LPIPS) is
    warned once however often an avatar is built."""
    import warnings
    from handavatar.fidelity import warn_unpublished_inputs
    config = load_config(AvatarConfig, [DEFAULTS], ["fidelity=published", f"data.root={tmp_path}",
                                                    f"smpl_cfg.lbs_weights={tmp_path / 'w.pth'}",
                                                    f"smpl_cfg.pairof={tmp_path / 'p.ckpt'}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            warn_unpublished_inputs(config)
    assert [str(w.message) for w in caught] == unpublished_inputs(config) and len(caught) == 1
