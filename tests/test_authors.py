"""The authors' released files (handavatar.authors): ours -> their layout -> ours is the same avatar, bit for bit, and
renders the same pixels; the exported files have their keys and shapes; tensors written by hand in their layout
(a weight-normalised colour MLP, anchors given by vertex triples) load as they mean; missing keys and wrong shapes
are named. A tiny avatar (MANO-HD level 1 of the open hand, 256 anchors, 8-d codes) with randomised weights."""

import json
import shutil

import pytest
import torch
from torch import nn

import smplx

from smplx.utils.cli import InputError
from smplx.utils.config import config_to_dict, load_config
from handavatar.authors import export_authors, import_authors
from handavatar.authors.__main__ import main as authors_main
from handavatar.checkpoint import build_avatar, load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.data import DataConfig, InterHandDataset, to_tensors
from handavatar.run import run
from tests.hand_fixtures import train_tiny_pairof


def _config(work, *overrides):
    return load_config(AvatarConfig, [DEFAULTS], [
        f"out_root={work / 'runs'}", "experiment=tiny", f"data.root={work / 'capture'}",
        "smpl_cfg.model_path=open_hand", "smpl_cfg.levels=1", f"smpl_cfg.lbs_weights={work / 'lbs_weights.pth'}",
        f"smpl_cfg.pairof={work / 'field' / 'pairof.ckpt'}", "N_samples=8", "network.code_dim=8", "device=cpu",
        "render.band=0", "run.resolution=32", "run.fps=5", *overrides])


@pytest.fixture(scope="module")
def ours(synthetic_capture, tmp_path_factory):
    """Our three files for a tiny avatar whose every weight is randomised (weight-norm g no longer |v|)."""
    work = tmp_path_factory.mktemp("authors")
    shutil.copytree(synthetic_capture, work / "capture")
    train_tiny_pairof(work)  # averaged MANO-HD weights: write them as the lbs_weights.pth
    saved = torch.load(work / "field" / "pairof.ckpt", weights_only=True)
    hand = smplx.subdivide(smplx.create("open_hand", **smplx.PAPER_FRAME), 1)
    torch.save(hand.lbs_weights.clone(), work / "lbs_weights.pth")
    config = _config(work)
    avatar = build_avatar(config, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in avatar.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    latest = work / "runs" / "tiny" / "latest.tar"
    latest.parent.mkdir(parents=True)
    torch.save({"iter": 7, "network": avatar.state_dict(), "optimizer": {},
                "config": json.dumps(config_to_dict(config))}, latest)
    settings = {k: v for k, v in saved["field"].items() if k != "anchors"}
    return work, latest, settings


def _files(work, latest):
    return dict(lbs_weights=work / "lbs_weights.pth", pairof=work / "field" / "pairof.ckpt", avatar=latest)


@pytest.fixture(scope="module")
def theirs(ours):
    work, latest, _ = ours
    return export_authors(_config(work), work / "theirs", **_files(work, latest))


def _render(config):
    avatar, _, _ = load_avatar(config, torch.device("cpu"))
    data = DataConfig(root=config.data.root, subject=config.data.eval_subject, mode="image", resolution=32,
                      background="black", model="open_hand")
    with torch.no_grad():
        return avatar.render(to_tensors(InterHandDataset(data)[0]))


def test_exported_files_have_the_published_layout(theirs, ours):
    network = torch.load(theirs["avatar"], weights_only=True)
    assert set(network) == {"iter", "network", "optimizer"} and network["iter"] == 7
    state = network["network"]
    avatar, _, _ = load_avatar(_config(ours[0]), torch.device("cpu"))
    vertices, anchors = avatar.hand.v_template.shape[0], avatar.field.anchor_faces.shape[0]
    shapes = {"color_dict": (anchors, 8), "color_network.lin0.weight_g": (256, 1), "color_network.lin0.weight_v":
              (256, 8), "color_network.lin4.bias": (3,), "deformer.vert_dict": (1, vertices, 39),
              "deformer.lin0.weight": (128, 84), "shadow_network.lin1.weight": (171, 256),
              "anchor_embed": (anchors, 21),
              "smpl_body.coap.decoder.lin4.weight": (1, 128), "smpl_body.coap.partitioner.w0": (1, anchors),
              "smpl_body.coap.partitioner.sample_face_tensor": (anchors, 3), "smpl_body.coap.connect": (30,),
              "smpl_body.v_template": (vertices, 3), "smpl_body.lbs_weights": (vertices, 16)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert state["smpl_body.coap.partitioner.tight_face_tensor"].dtype == torch.int32
    assert not any(k.startswith(("albedo.", "field.", "shading.", "hand.")) for k in state)
    field = torch.load(theirs["pairof"], weights_only=True)["state_dict"]
    assert "decoder.lin0.weight" in field and "part_encoder.block_4.fc_1.weight" in field
    assert not any(k.startswith("coap.") for k in field)
    assert torch.equal(torch.load(theirs["lbs_weights"], weights_only=True), avatar.hand.lbs_weights)


def test_round_trip_gives_the_same_avatar_and_renders_bit_for_bit(ours, theirs, tmp_path):
    work, latest, settings = ours
    back = import_authors(_config(work), tmp_path / "back", field=settings, **theirs)
    before = torch.load(latest, weights_only=True)["network"]
    after = torch.load(back["avatar"], weights_only=True)["network"]
    assert set(before) == set(after)
    assert all(torch.equal(before[k], after[k]) for k in before), [k for k in before if not torch.equal(before[k],
                                                                                                      after[k])]
    field_before = torch.load(work / "field" / "pairof.ckpt", weights_only=True)["state_dict"]
    field_after = torch.load(back["pairof"], weights_only=True)["state_dict"]
    assert all(torch.equal(field_before[k], field_after[k]) for k in field_before)
    original = _render(_config(work))
    imported = _render(load_config(AvatarConfig, [DEFAULTS, back["config"]]))
    assert original["alpha"].max() > 0.1  # the frame shows the hand
    for name in ("rgb", "alpha", "albedo", "shading"):
        assert torch.equal(original[name], imported[name]), name


def test_cli_import_then_run_hand_renders(ours, theirs, tmp_path):
    work, _, settings = ours
    out = tmp_path / "cli"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in theirs.items()] + [f"--out={out}"]
    args += [f"--field={k}={v}" for k, v in settings.items()] + _overrides(work)
    authors_main(args)
    folder = run(load_config(AvatarConfig, [DEFAULTS, out / "config.yaml"], ["run.mode=tpose"]))
    assert len(list((folder / "frames").glob("*.png"))) == 1


def _overrides(work):
    return [f"data.root={work / 'capture'}", "smpl_cfg.model_path=open_hand", "smpl_cfg.levels=1",
            "network.code_dim=8", "N_samples=8", "render.band=0", "run.resolution=32", "device=cpu"]


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # the published API, on purpose
def test_colour_mlp_and_anchors_written_by_hand_load_as_they_mean(ours, theirs, tmp_path):
    """A colour MLP built as the published one (Linear layers lin0..lin4 under torch.nn.utils.weight_norm, ReLU,
    sigmoid) and anchors given as their faces' vertex triples with barycentric rows w0, w1, w2: after the import our
    albedo MLP computes the same colours and our anchors sit on the same faces with the same weights."""
    work, _, settings = ours
    saved = torch.load(theirs["avatar"], weights_only=True)
    network = saved["network"]
    torch.manual_seed(3)
    dims = [8, 256, 256, 256, 256, 3]
    published = nn.Module()
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layer = torch.nn.utils.weight_norm(nn.Linear(a, b))
        with torch.no_grad():
            layer.weight_g.uniform_(0.5, 2.0)  # g is not |v|: a swap of g and v would show
        setattr(published, f"lin{i}", layer)
    network.update({f"color_network.{k}": v for k, v in published.state_dict().items()})
    faces = network["smpl_body.faces_tensor"].long()
    anchors = network["smpl_body.coap.partitioner.sample_points"].shape[0]
    face_ids = torch.randperm(faces.shape[0])[:anchors]
    bary = torch.rand(anchors, 3)
    bary = bary / bary.sum(1, keepdim=True)
    network["smpl_body.coap.partitioner.sample_face_tensor"] = faces[face_ids]
    network.update({f"smpl_body.coap.partitioner.w{i}": bary[:, i][None] for i in range(3)})
    torch.save(saved, tmp_path / "latest.tar")
    back = import_authors(_config(work), tmp_path / "back", field=settings,
                          **{**theirs, "avatar": tmp_path / "latest.tar"})
    avatar, _, _ = load_avatar(load_config(AvatarConfig, [DEFAULTS, back["config"]]), torch.device("cpu"))
    features = torch.randn(50, 8)
    expected, colour = features, features
    with torch.no_grad():
        for i, layer in enumerate(avatar.albedo.layers):
            expected, colour = getattr(published, f"lin{i}")(expected), layer(colour)
            expected, colour = (torch.relu(expected), torch.relu(colour)) if i < 4 else (
                torch.sigmoid(expected), torch.sigmoid(colour))
    torch.testing.assert_close(colour, expected, rtol=1e-6, atol=1e-7)  # float32, the same weight-norm arithmetic
    assert torch.equal(avatar.field.anchor_faces, face_ids)
    assert torch.equal(avatar.field.anchor_bary, bary)


@pytest.mark.parametrize("key,change,message", [
    ("color_network.lin2.weight_g", "delete", r"no key 'color_network.lin2.weight_g'"),
    ("smpl_body.coap.decoder.lin1.weight", "shape",
     r"'decoder.lin1.weight' has shape \(64, 127\), expected \(64, 128\)"),
    ("deformer.vert_dict", "shape", r"'deformer.vert_dict' has shape .* expected \(1, \d+, 39\)"),
    ("smpl_body.coap.partitioner.w1", "delete", r"no key 'partitioner.w1'"),
    ("non_rigid_mlp.lin0.weight", "add", r"does not map: \['non_rigid_mlp.lin0.weight'\]"),
    ("smpl_body.v_template", "move", r"'smpl_body.v_template' differs from this config's hand model"),
])
def test_missing_keys_and_wrong_shapes_are_named(ours, theirs, tmp_path, key, change, message):
    work, _, settings = ours
    saved = torch.load(theirs["avatar"], weights_only=True)
    if change == "delete":
        del saved["network"][key]
    elif change == "add":
        saved["network"][key] = torch.zeros(4, 4)
    elif change == "move":
        saved["network"][key] = saved["network"][key] + 1e-4  # 0.1 mm: another MANO file
    else:
        saved["network"][key] = saved["network"][key][..., :-1]
    torch.save(saved, tmp_path / "latest.tar")
    with pytest.raises(InputError, match=message):
        import_authors(_config(work), tmp_path / "back", field=settings,
                       **{**theirs, "avatar": tmp_path / "latest.tar"})


def test_pairof_without_parts_needs_the_avatar(ours, theirs, tmp_path):
    """A pairof.ckpt of the networks alone (keys prefixed as the body model's, `coap.`): the parts and anchors come
    from latest.tar."""
    work, _, settings = ours
    state = torch.load(theirs["pairof"], weights_only=True)["state_dict"]
    torch.save({"state_dict": {f"coap.{k}": v for k, v in state.items() if not k.startswith("partitioner.")}},
               tmp_path / "pairof.ckpt")
    files = {**theirs, "pairof": tmp_path / "pairof.ckpt"}
    with pytest.raises(InputError, match="no key 'partitioner.tight_face_tensor'"):
        import_authors(_config(work), tmp_path / "a", field=settings, **{**files, "avatar": None})
    written = import_authors(_config(work), tmp_path / "b", field=settings, **files)  # parts from latest.tar
    direct = import_authors(_config(work), tmp_path / "c", field=settings, **theirs)
    for name in ("pairof", "avatar"):
        key = "state_dict" if name == "pairof" else "network"
        a, b = (torch.load(w[name], weights_only=True)[key] for w in (written, direct))
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_lbs_weights_of_another_model_are_named(ours, theirs, tmp_path):
    work, _, settings = ours
    torch.save(torch.rand(10, 16), tmp_path / "lbs.pth")
    with pytest.raises(ValueError, match=r"shape \(10, 16\)"):
        import_authors(_config(work), tmp_path / "out", field=settings,
                       **{**theirs, "lbs_weights": tmp_path / "lbs.pth"})


def test_an_avatar_with_a_vertex_texture_has_no_authors_equivalent(ours, tmp_path):
    """network.albedo_at=mesh keeps the albedo in a vertex texture, which the authors' Network cannot hold: the
    export names the checkpoint and the setting (InputError: one error line, exit 2, from the CLI)."""
    work, _, _ = ours
    config = _config(work, "network.albedo_at=mesh")
    avatar = build_avatar(config, torch.device("cpu"))
    latest = tmp_path / "latest.tar"
    torch.save({"iter": 1, "network": avatar.state_dict(), "optimizer": {},
                "config": json.dumps(config_to_dict(config))}, latest)
    with pytest.raises(InputError, match=r"latest.tar keeps its albedo in a vertex texture \(network.albedo_at=mesh\)"):
        export_authors(config, tmp_path / "theirs", **_files(work, latest))
