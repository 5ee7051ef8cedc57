"""The assembled avatar on a synthetic capture's samples: shapes, background outside the rendered rays, the
compositing identities, which parameters learn, and the ablation switches."""

import copy
import math
import shutil

import pytest
import torch

import smplx
from handavatar.data import DataConfig, InterHandDataset, to_tensors
from handavatar.model import HandAvatar, network
from handavatar.render.anchors import AnchorIndex
from handavatar.render.options import RenderOptions
from handavatar.render.surface import onto_anchor_planes
from pairof import PairOF
from smplx.utils.inside import inside_mesh

OPTIONS = smplx.PAPER_FRAME


@pytest.fixture(scope="module")
def parts(synthetic_capture, tmp_path_factory):
    root = tmp_path_factory.mktemp("avatar") / "capture"
    shutil.copytree(synthetic_capture, root)
    config = DataConfig(root=str(root), mode="patch", n_patches=2, patch_size=8, sample_subject_ratio=1.0,
                        background="black")
    torch.manual_seed(0)
    sample = to_tensors(InterHandDataset(config)[0])
    hand = smplx.subdivide(smplx.create("open_hand", **OPTIONS), 1)
    return hand, sample


def _avatar(hand, **options):
    """An avatar with 8 samples per ray; `options`: HandAvatar's keywords and RenderOptions' fields."""
    torch.manual_seed(0)
    field = PairOF.from_layer(hand, part_samples=32, anchors=256)
    render = {key: options.pop(key) for key in list(options) if key in RenderOptions.__dataclass_fields__}
    return HandAvatar(hand, field, code_dim=16, options=RenderOptions(**{"samples": 8, **render}), **options)


def test_render_a_sample(parts):
    hand, sample = parts
    avatar = _avatar(hand)
    out = avatar.render(sample, chunk=40)
    mask = sample["ray_mask"]
    assert out["rgb"].shape == (2, 8, 8, 3) and out["alpha"].shape == (2, 8, 8) and out["shading"].shape == (2, 8, 8, 1)
    assert mask.any() and torch.all(out["alpha"][~mask] == 0) and torch.all(out["rgb"][~mask] == 0)
    assert torch.all((out["rgb"] >= 0) & (out["rgb"] <= 1)) and out["alpha"][mask].max() > 0
    # colour = albedo x shading integrated along the ray; with a black background rgb <= albedo
    assert torch.all(out["rgb"] <= out["albedo"] + 1e-6)
    for chunk in (10 ** 6, "auto"):
        torch.testing.assert_close(avatar.render(sample, chunk=chunk)["rgb"], out["rgb"])  # nor does chunking
    with pytest.raises(ValueError, match="chunk 0 is not a number of rays"):
        avatar.render(sample, chunk=0)


def test_options_given_for_one_render(parts):
    """render(options=...) draws what an avatar built with those options draws, and leaves the avatar's own
    options as they were (bench/render.py renders its variants so)."""
    hand, sample = parts
    avatar = _avatar(hand, band=0.05)
    reference = _avatar(hand, renderer="reference", samples=6)
    reference.load_state_dict(avatar.state_dict())
    with torch.no_grad():
        given = avatar(sample, options=RenderOptions(renderer="reference", samples=6))
        built = reference.render(sample)
    for name in ("rgb", "alpha", "occupancy", "in_box"):
        assert torch.equal(given[name], built[name]), name
    assert avatar.options == RenderOptions(samples=8, band=0.05) and "in_box" not in avatar.render(sample)


def test_per_pose_work_is_done_once_per_frame(parts, monkeypatch):
    """The fast renderer finds the pose's surface band and builds its nearest-anchor index once per frame, however
    many chunks of rays it renders."""
    hand, sample = parts
    avatar = _avatar(hand, band=0.05)
    bands, indices = [], []
    real_band, real_index = avatar.surface_band, network.AnchorIndex
    monkeypatch.setattr(avatar, "surface_band", lambda *a: bands.append(1) or real_band(*a))
    monkeypatch.setattr(network, "AnchorIndex", lambda *a, **k: indices.append(1) or real_index(*a, **k))
    assert sample["ray_mask"].sum() > 3 * 16
    avatar.render(sample, chunk=16)
    assert len(bands) == 1 and len(indices) == 1


def test_which_parameters_learn(parts):
    hand, sample = parts
    avatar = _avatar(hand)
    out = avatar.render(sample, stratified=True, generator=torch.Generator().manual_seed(0))
    (out["rgb"].sum() + out["alpha"].sum()).backward()
    learns = {name: p.grad is not None and p.grad.abs().sum().item() > 0 for name, p in avatar.named_parameters()}
    assert all(v for k, v in learns.items() if k.startswith(("albedo.", "shading.", "deformer.", "field.decoder.")))
    assert not any(p.requires_grad for p in avatar.field.part_encoder.parameters())
    assert not any(p.requires_grad for p in avatar.field.local_encoder.parameters())
    assert not any(p.requires_grad for p in avatar.hand.parameters())


def test_ablation_switches(parts):
    hand, sample = parts
    plain = _avatar(hand, deformer=False, shading=False)
    out = plain.render(sample)
    torch.testing.assert_close(out["rgb"], out["albedo"])  # shading 1: colour is the albedo
    assert plain.deformer is None and plain.shading is None
    posed = plain.pose(sample["global_orient"][None], sample["hand_pose"][None])
    direct = hand(global_orient=sample["global_orient"][None], hand_pose=sample["hand_pose"][None])
    torch.testing.assert_close(posed.vertices, direct.vertices)


def _rays(avatar, sample):
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    mask = sample["ray_mask"]
    return (sample["rays_o"], sample["rays_d"][mask], sample["near"][mask], sample["far"][mask], posed, encoding,
            sample["bgcolor"])


def _surface_points(avatar, published, sample):
    """Render the sample's rays with `avatar` and with the `published` renderer (no gradients); per ray, the
    published compositing's expected surface point o + d depth / alpha, or None where alpha is 0. Returns the
    avatar's output, the published output, the points, and `_rays`' origin, directions, posed hand and encoding."""
    origin, directions, near, far, posed, encoding, background = _rays(avatar, sample)
    with torch.no_grad():
        out = avatar.render_rays(origin, directions, near, far, posed, encoding, background)
        every = published.render_rays(origin, directions, near, far, posed, encoding, background)
    points = [origin + directions[r] * every["depth"][r, 0] / alpha if alpha > 0 else None
              for r, alpha in enumerate(every["alpha"])]
    return out, every, points, (origin, directions, posed, encoding)


def _fast_and_reference(sample, fast, reference, *, atol_grad=1e-6):
    """Render the same rays (jittered alike) with both avatars, same weights, back-propagate rgb + alpha; assert the
    pictures and every gradient agree; return both outputs."""
    reference.load_state_dict(fast.state_dict())
    outs = []
    for avatar in (fast, reference):
        out = avatar.render_rays(*_rays(avatar, sample), stratified=True, generator=torch.Generator().manual_seed(3))
        (out["rgb"].sum() + out["alpha"].sum()).backward()
        outs.append(out)
    for name in ("rgb", "albedo", "shading", "depth", "alpha"):
        torch.testing.assert_close(outs[0][name], outs[1][name], rtol=1e-5, atol=1e-6)
    assert outs[0]["alpha"].max() > 0.2
    for (name, a), b in zip(fast.named_parameters(), reference.parameters()):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=atol_grad, msg=name)
    return outs


@pytest.mark.parametrize("sampling, group", [("box", 8), ("parts", 8), ("box", 3), ("parts", 3)])
def test_fast_renderer_draws_what_the_reference_draws(parts, sampling, group):
    """Without early termination the fast renderer composites exactly the reference's picture (every sample, every
    pair, every anchor), and its gradients are the reference's: marching the 8 samples as one group or in groups of
    3, 3 and 2 (transmittance and SelF's running maximum carried from group to group)."""
    hand, sample = parts
    fast = _avatar(hand, sampling=sampling, tolerance=0.0, group=group)
    outs = _fast_and_reference(sample, fast, _avatar(hand, sampling=sampling, renderer="reference"))
    if sampling == "box":  # samples outside every part box were left out
        assert outs[0]["points"].shape[0] < 0.9 * outs[1]["points"].shape[0]


def test_rays_that_miss_every_box_are_background_without_the_network(parts, monkeypatch):
    hand, sample = parts
    avatar = _avatar(hand)
    origin, directions, near, far, posed, encoding, background = _rays(avatar, sample)
    away = -directions  # the hand is in front of the camera: these rays look the other way
    monkeypatch.setattr(avatar.field, "query", lambda *a, **k: pytest.fail("the network was queried"))
    with torch.no_grad():
        out = avatar.render_rays(origin, away, near, far, posed, encoding, background)
    assert torch.all(out["alpha"] == 0) and torch.all(out["rgb"] == background) and out["points"].shape == (0, 3)


@pytest.mark.parametrize("tolerance", [0.02, 0.2])
@pytest.mark.parametrize("field, bias, group", [("opaque", -40.0, 1), ("translucent", 0.0, 1),
                                                ("translucent", 0.0, 3)])
def test_early_termination_changes_a_pixel_by_less_than_the_tolerance(parts, tolerance, field, bias, group):
    """On an opaque hand (occupancy ~1 at the first sample inside) and on a translucent one (each sample lets most
    light through, 16 samples per ray: the transmittance falls step by step), stopping rays early changes no value
    by more than the tolerance (a ray stopped at transmittance 0.5 changes pixels by ~0.4 here)."""
    hand, sample = parts
    exact = _avatar(hand, tolerance=0.0, samples=16)
    early = _avatar(hand, tolerance=tolerance, group=group, samples=16)
    reference = _avatar(hand, renderer="reference", samples=16)  # returns every sample's occupancy, ray-major
    for avatar in (exact, early, reference):  # the decoder's last bias sets how opaque the random field is
        avatar.load_state_dict({**exact.state_dict(), "field.decoder.layers.4.bias": torch.tensor([bias])})
    with torch.no_grad():
        a = exact.render_rays(*_rays(exact, sample))
        b = early.render_rays(*_rays(early, sample))
        every = reference.render_rays(*_rays(reference, sample))
    hit = every["alpha"] > 0.5
    sharpest = every["occupancy"].view(-1, 16)[hit].amax(1).median()  # the most opaque sample of a typical ray
    assert (sharpest > 0.99) if field == "opaque" else (sharpest < 0.5)
    assert b["points"].shape[0] < a["points"].shape[0]  # some rays stopped early
    for name in ("rgb", "albedo", "shading", "alpha"):
        assert (a[name] - b[name]).abs().max() <= tolerance, name


def test_surface_band_evaluates_only_near_the_surface(parts, monkeypatch):
    """With a band, the network only sees samples within it of a posed anchor; a band wider than the boxes draws the
    exact picture."""
    hand, sample = parts
    exact = _avatar(hand, tolerance=0.0)
    banded = _avatar(hand, tolerance=0.0, band=0.05)
    wide = _avatar(hand, tolerance=0.0, band=100.0)
    for avatar in (banded, wide):
        avatar.load_state_dict(exact.state_dict())
    with torch.no_grad():
        reference = exact.render_rays(*_rays(exact, sample))
        rays = _rays(banded, sample)
        queried = []
        real = banded.field.query
        monkeypatch.setattr(banded.field, "query", lambda points, *a, **k: queried.append(points) or real(points, *a,
                                                                                                        **k))
        near = banded.render_rays(*rays)
        far = wide.render_rays(*_rays(wide, sample))
    points = torch.cat([p[0] for p in queried])
    anchors = rays[5].anchors[0]
    assert 0 < points.shape[0] < reference["points"].shape[0]
    assert torch.cdist(points, anchors).amin(1).max() <= 0.05 + 1e-6
    torch.testing.assert_close(far["rgb"], reference["rgb"])
    # (how close the banded picture is depends on the trained field: bench/render.py measures it)
    assert near["alpha"].max() > 0


def test_anchor_index_finds_the_nearest_anchors(parts):
    hand, _ = parts
    field = PairOF.from_layer(hand, part_samples=32, anchors=256)
    generator = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(1, 45, generator=generator)
    posed = hand(global_orient=torch.tensor([[0.3, -0.2, 0.1]]), hand_pose=pose)
    encoding = field.encode(posed.vertices, posed.joints, posed.full_pose)
    points = posed.vertices[:, :500] + 0.05 * torch.randn(1, 500, 3, generator=generator)
    index = AnchorIndex(encoding.anchors[0], 4)
    dists, ids = index.query(points[0])
    brute_dists, brute_ids = field.nearest_anchors(points, encoding)
    torch.testing.assert_close(dists, brute_dists[0])
    assert (ids == brute_ids[0]).float().mean() > 0.99  # ids may differ only between anchors at equal distance
    nearest = brute_dists[0, :, 0]
    radius = float(nearest.sort().values[249:251].mean())  # between two points' distances, not on one
    # one radius per anchor: that of the point's nearest anchor
    radii = 0.1 * torch.rand(encoding.anchors.shape[1], generator=generator)
    expected = nearest <= radii[brute_ids[0, :, 0]]
    assert 0 < expected.sum() < expected.numel()
    # with the anchors' normals, also every point behind its nearest anchor (inside the surface), however far
    normals = torch.nn.functional.normalize(torch.randn(radii.shape[0], 3, generator=generator), dim=-1)
    closest = brute_ids[0, :, 0]
    behind = ((points[0] - encoding.anchors[0, closest]) * normals[closest]).sum(-1) < 0
    assert (behind & ~expected).any()
    index.chunk = 64  # the brute-force search in several blocks
    for tree in (index.tree, None):  # the k-d tree, and CUDA's brute-force search
        index.tree = tree
        found_dists, found_ids = index.query(points[0])
        torch.testing.assert_close(found_dists, dists)
        assert (found_ids == ids).float().mean() > 0.99
        assert torch.equal(index.near(points[0], radius), nearest <= radius)
        assert torch.equal(index.near(points[0], radii), expected)
        assert torch.equal(index.near(points[0], radii, normals), expected | behind)


def test_auto_band_covers_where_the_field_reaches(parts, monkeypatch):
    """band 'auto': every point outside the posed mesh where the field is occupied lies within its nearest anchor's
    measured band (checked on points drawn apart from the measurement's probes); the band is measured once per pose
    and set of weights (again for a pose far from the measured ones, and after a weight changes), and training mode
    uses band_training instead."""
    hand, sample = parts
    avatar = _avatar(hand, band="auto", band_margin=0.02, band_min=0.03).eval()
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    measured = []
    real = avatar.measure_band
    # (this random field reaches far and unevenly: probed as densely as a trained avatar's 4,096 anchors are)
    monkeypatch.setattr(avatar, "measure_band",
                        lambda *a, **k: measured.append(1) or real(*a, probes_per_anchor=128, **k))
    band = avatar.surface_band(posed, encoding)
    anchors = encoding.anchors[0].detach()
    assert band.shape == (anchors.shape[0],) and band.min() >= 0.03 - 1e-7 and band.max() > 0.03
    generator = torch.Generator().manual_seed(5)
    around = anchors[torch.randint(anchors.shape[0], (20000,), generator=generator)]
    points = around + 0.3 * (2 * torch.rand(20000, 3, generator=generator) - 1)
    with torch.no_grad():
        occupied = avatar.field.query(points[None], encoding).occupancy[0] > 1e-3
    outside = ~torch.from_numpy(inside_mesh(points.double().numpy(), posed.vertices[0].detach().double().numpy(),
                                            avatar.field.faces.numpy()))
    reached = points[occupied & outside]
    assert reached.shape[0] > 100
    assert AnchorIndex(anchors, 1).near(reached, band).all()
    assert not AnchorIndex(anchors, 1).near(reached, 0.03).all()  # a fixed band of band_min would not do
    with torch.no_grad():
        avatar.render(sample)
        assert len(measured) == 1 and avatar.band_poses == 1  # the same weights and pose: measured once
        bent = dict(sample, hand_pose=sample["hand_pose"] + 0.35)  # every finger joint turned by ~35 degrees
        avatar.render(bent)
        band_bent = avatar.surface_band(posed, encoding)  # (the first pose: not measured again)
        assert len(measured) == 2 and avatar.band_poses == 2  # a new pose: measured too, the largest reach kept
        assert torch.all(band_bent >= band) and torch.any(band_bent > band)
        slightly = dict(sample, hand_pose=sample["hand_pose"] + 0.1)
        avatar.render(slightly)
        assert len(measured) == 2  # within band_pose_step of a measured pose
        avatar.albedo.codes.add_(0.1)
        avatar.render(sample)
        assert len(measured) == 3 and avatar.band_poses == 1  # new weights: measured again from scratch
        assert avatar.train().surface_band(posed, encoding) == avatar.options.band_training and len(measured) == 3
    with pytest.raises(ValueError, match="band 'wide'"):
        _avatar(hand, band="wide")


def test_measured_band_of_a_field_with_a_known_reach(parts, monkeypatch):
    """`measure_band` on a field whose reach is known in closed form and that only the probes along the anchors'
    normals find: occupancy 2e-3 (above the 1e-3 threshold) on thin needles along each posed anchor's outward normal,
    out to 0.15 dm; 5e-4 (below it) everywhere else. With no margin every band is at most 0.15 dm, and with probes
    every 0.02 dm out to 0.2 dm nearly all reach within a step of it; fewer or shallower probes, or another
    threshold, move the bands out of that window."""
    hand, sample = parts
    avatar = _avatar(hand, band="auto", band_margin=0.0, band_min=0.0).eval()
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    anchors, normals = encoding.anchors[0].detach(), avatar._anchor_face_normals(posed)
    index = AnchorIndex(anchors, 1)

    def query(points, *args, **kwargs):
        nearest = index.query(points[0])[1][:, 0]
        offset = points[0] - anchors[nearest]
        along = (offset * normals[nearest]).sum(-1)
        needle = ((offset - along[:, None] * normals[nearest]).norm(dim=-1) < 0.005) & (along > 0) & (along < 0.15)
        return type("Out", (), {"occupancy": torch.where(needle, 2e-3, 5e-4)[None]})

    monkeypatch.setattr(avatar.field, "query", query)
    band = avatar.measure_band(posed, encoding)
    assert band.max() <= 0.15 and band.median() >= 0.13 and (band >= 0.12).float().mean() > 0.95


def test_auto_band_renders_the_inside_of_the_surface(parts, monkeypatch):
    """With band 'auto' the fast renderer evaluates the samples within their nearest anchor's band and, whatever
    their distance, those behind it (inside the surface: with few samples per ray, a sample can lie deep inside)."""
    hand, sample = parts
    avatar = _avatar(hand, band="auto").eval()
    anchors = avatar.field.anchor_faces.shape[0]
    monkeypatch.setattr(avatar, "measure_band", lambda *a, **k: torch.full((anchors,), 0.03))
    with torch.no_grad():
        out = avatar.render(sample)
    posed = out["posed"]
    index = AnchorIndex(avatar.field.encode(posed.vertices, posed.joints, posed.full_pose).anchors[0], 1)
    assert index.near(out["points"], 0.03, avatar._anchor_face_normals(posed)).all()
    assert not index.near(out["points"], 0.03).all()  # some lie inside, beyond the band


def test_sampling_inside_the_part_boxes(parts):
    """sampling='parts' puts every sample of a ray that meets the boxes inside some part box (occupancy can only be
    non-zero there), and renders the same kind of picture."""
    hand, sample = parts
    avatar = _avatar(hand, sampling="parts", renderer="reference")  # returns every sample, ray-major
    posed = avatar.pose(sample["global_orient"][None], sample["hand_pose"][None])
    encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
    mask = sample["ray_mask"]
    with torch.no_grad():
        out = avatar.render_rays(sample["rays_o"], sample["rays_d"][mask], sample["near"][mask], sample["far"][mask],
                                 posed, encoding, sample["bgcolor"])
        _, inside = avatar.field.part_boxes(out["points"].reshape(1, -1, 3), encoding)
    inside = inside.any(1).view(-1, avatar.options.samples)
    reached = inside.any(1)
    assert reached.float().mean() > 0.5 and torch.all(inside[reached])
    assert torch.all(out["alpha"][~reached] == 0)
    with pytest.raises(ValueError, match="sampling 'grid'"):
        _avatar(hand, sampling="grid")
    with pytest.raises(ValueError, match="renderer 'slow'"):
        _avatar(hand, renderer="slow")


def test_shading_normal_input(parts):
    """With network.shading_normal, SelF also sees the posed normal of the anchors' faces (unit, detached),
    blended over the nearest anchors; the fast renderer still draws the reference's picture."""
    hand, sample = parts
    fast = _avatar(hand, shading_normal=True, tolerance=0.0)
    reference = _avatar(hand, shading_normal=True, renderer="reference")
    reference.load_state_dict(fast.state_dict())
    assert fast.shading.net.layers[0].in_features == _avatar(hand).shading.net.layers[0].in_features + 3
    posed = fast.pose(sample["global_orient"][None], sample["hand_pose"][None])
    normals = fast.anchor_normals(posed)
    corners = posed.vertices[0][fast.field.faces[fast.field.anchor_faces]]
    by_hand = torch.stack([torch.linalg.cross(c[1] - c[0], c[2] - c[0]) for c in corners.detach()])
    torch.testing.assert_close(normals, by_hand / by_hand.norm(dim=-1, keepdim=True))
    assert not normals.requires_grad and _avatar(hand).anchor_normals(posed) is None
    with torch.no_grad():
        a = fast.render_rays(*_rays(fast, sample))
        b = reference.render_rays(*_rays(reference, sample))
    torch.testing.assert_close(a["shading"], b["shading"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="surface normals"):
        fast.shading(torch.zeros(1, 16), torch.zeros(1, fast.anchor_embedding.shape[1]), torch.zeros(48))


@pytest.mark.parametrize("sampling, group, shading, albedo_at", [
    ("box", 3, True, "surface"), ("parts", 8, True, "surface"), ("parts", 3, False, "surface"),
    ("box", 3, True, "plane"), ("parts", 8, False, "plane"), ("parts", 8, True, "mesh"), ("box", 3, False, "mesh")])
def test_fast_renderer_draws_what_the_reference_draws_with_the_albedo_at_the_surface(parts, sampling, group, shading,
                                                                                      albedo_at):
    """network.albedo_at 'surface' and 'plane': both renderers composite the shading and depth and look the albedo
    up once per ray at the same point, so without early termination they draw the same picture with the same
    gradients."""
    hand, sample = parts
    fast = _avatar(hand, sampling=sampling, tolerance=0.0, group=group, albedo_at=albedo_at, shading=shading)
    reference = _avatar(hand, sampling=sampling, renderer="reference", albedo_at=albedo_at, shading=shading)
    # atol: the deformer's last bias sums float32 terms up to ~0.3 (its weight's gradient) that cancel to ~1e-6; the
    # two renderers sum them in other orders
    _fast_and_reference(sample, fast, reference, atol_grad=1e-5)
    learns = fast.texture.logits if albedo_at == "mesh" else fast.albedo.codes
    assert learns.grad.abs().sum() > 0


def _albedo_one_point_by_hand(avatar, point, anchors):
    """The albedo field at one point, written out: the k nearest anchors by sorting every distance, inverse-distance
    weights, the codes' blend, then the MLP layer by layer."""
    dists = torch.stack([(point - anchor).norm() for anchor in anchors])
    order = torch.argsort(dists)[:avatar.field.neighbours]
    inverse = [1.0 / dists[i].clamp_min(1e-4) for i in order]
    h = sum(w * avatar.albedo.codes[i] for w, i in zip(inverse, order)) / sum(inverse)
    for j, layer in enumerate(avatar.albedo.layers):
        h = layer(h)
        h = torch.relu(h) if j < len(avatar.albedo.layers) - 1 else torch.sigmoid(h)
    return h


def _onto_plane_by_hand(point, direction, anchor, normal):
    """The ray o' = point, d = direction meets the plane (x - anchor) . normal = 0 at t = ((anchor - point) . normal)
    / (d . normal) for a unit d; at a grazing angle (|cos| < 0.2), the point's orthogonal projection instead."""
    d = direction / direction.norm()
    if abs(float(d @ normal)) < 0.2:
        return point - ((point - anchor) @ normal) * normal
    return point + d * (((anchor - point) @ normal) / (d @ normal))


def _moller_trumbore(origin, direction, vertices, faces):
    """(t, u, v, hit) of rays against every triangle (Moller-Trumbore, float64): origin and direction (..., 3)
    broadcast against the (F,) triangles to (..., F) each."""
    o, d = origin.double()[..., None, :], direction.double()[..., None, :]
    a, b, c = (vertices.double()[faces[:, i]] for i in range(3))
    e1, e2 = b - a, c - a
    p = torch.linalg.cross(d.expand(*d.shape[:-2], *e2.shape), e2.expand(*d.shape[:-2], *e2.shape), dim=-1)
    det = (e1 * p).sum(-1)
    ok = det.abs() > 1e-12
    inv = 1 / torch.where(ok, det, torch.ones_like(det))
    s = o - a
    u = (s * p).sum(-1) * inv
    q = torch.linalg.cross(s, e1.expand_as(s), dim=-1)
    v = (d * q).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    return t, u, v, ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)


def _first_hit_by_hand(origin, direction, vertices, faces):
    """(t, face, barycentrics) of the ray's first hit among all triangles (Moller-Trumbore, float64), or None."""
    t, u, v, hit = _moller_trumbore(origin, direction, vertices, faces)
    if not hit.any():
        return None
    f = int(torch.argmin(torch.where(hit, t, torch.full_like(t, float("inf")))))
    return float(t[f]), f, torch.stack([1 - u[f] - v[f], u[f], v[f]])


def _escapes_by_hand(origin, directions, vertices, faces):
    """(K,) 1.0 where the ray from `origin` (3,) along each of (K, 3) `directions` meets no triangle, else 0.0."""
    return (~_moller_trumbore(origin.expand_as(directions), directions, vertices, faces)[3].any(-1)).float()


def _mesh_albedo_by_hand(avatar, origin, direction, point, vertices):
    """albedo_at 'mesh' by hand: the ray's first hit on the posed mesh when it lies within mesh_reach of the point
    along the ray (its vertices' colours, barycentrically), else the colour of the point's nearest vertex; and
    whether the hit was used."""
    faces = avatar.hand.output_faces
    colours = torch.sigmoid(avatar.texture.logits)
    first = _first_hit_by_hand(origin, direction, vertices, faces)
    along = float((point - origin) @ direction / (direction @ direction))
    if first is not None and abs(first[0] - along) * float(direction.norm()) <= avatar.mesh_reach:
        return (first[2][:, None].float() * colours[faces[first[1]]]).sum(0), True
    return colours[int(torch.argmin((vertices - point).norm(dim=-1)))], False


@pytest.mark.parametrize("albedo_at", ["surface", "plane", "mesh"])
def test_albedo_at_the_surface_matches_a_per_ray_loop(parts, albedo_at):
    """The fast renderer's albedo_at 'surface' (and 'plane') against a slow reference written ray by ray: the
    published renderer (albedo at the samples) gives each ray's composited shading, depth and alpha; the loop then
    takes the point o + d depth / alpha ('plane': moved along the ray onto the plane of its nearest anchor's face,
    the normal from the face's corners by hand), its nearest anchors among all of them, and the field written out
    by hand ('mesh': the texture at the ray's first hit on the posed mesh by Moller-Trumbore, or at the nearest
    vertex, with random vertex colours)."""
    hand, sample = parts
    surface = _avatar(hand, tolerance=0.0, albedo_at=albedo_at)
    published = _avatar(hand, renderer="reference")
    if albedo_at == "mesh":
        with torch.no_grad():
            surface.texture.logits.normal_(generator=torch.Generator().manual_seed(1))
    published.load_state_dict(surface.state_dict(), strict=albedo_at != "mesh")
    origin, directions, near, far, posed, encoding, background = _rays(surface, sample)
    directions = torch.cat([directions, -directions[:5]])  # and 5 rays that look away from the hand
    near, far = torch.cat([near, near[:5]]), torch.cat([far, far[:5]])
    with torch.no_grad():
        fast = surface.render_rays(origin, directions, near, far, posed, encoding, background)
        every = published.render_rays(origin, directions, near, far, posed, encoding, background)
        anchors = encoding.anchors[0]
        rgb, albedo, used_hit = [], [], []
        for r in range(directions.shape[0]):
            alpha = every["alpha"][r]
            colour = torch.zeros(3)
            if alpha > 0:
                point = origin + directions[r] * every["depth"][r, 0] / alpha
                if albedo_at == "plane":
                    first = int(torch.argmin(torch.stack([(point - anchor).norm() for anchor in anchors])))
                    a, b, c = posed.vertices[0][surface.field.faces[surface.field.anchor_faces[first]]]
                    normal = torch.linalg.cross(b - a, c - a)
                    point = _onto_plane_by_hand(point, directions[r], anchors[first], normal / normal.norm())
                if albedo_at == "mesh":
                    colour, used = _mesh_albedo_by_hand(surface, origin, directions[r], point, posed.vertices[0])
                    used_hit.append(used)
                else:
                    colour = _albedo_one_point_by_hand(surface, point, anchors)
            rgb.append(colour * every["shading"][r] + (1 - alpha) * background)
            albedo.append(alpha * colour + (1 - alpha) * background)
    hit = every["alpha"] > 0
    assert hit.sum() > 10 and (~hit).sum() > 0  # rays on the hand and rays that miss it
    for name in ("shading", "depth", "alpha"):  # the per-sample shading and depth do not change
        torch.testing.assert_close(fast[name], every[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast["rgb"], torch.stack(rgb), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast["albedo"], torch.stack(albedo), rtol=1e-5, atol=1e-6)
    assert (fast["albedo"][hit] - every["albedo"][hit]).abs().max() > 1e-3  # not the published per-sample blend
    if albedo_at == "mesh":  # rays whose hit lies near their surface point, and rays that take the nearest vertex
        assert 0 < sum(used_hit) < len(used_hit)
    with pytest.raises(ValueError, match="albedo_at 'texture'"):
        _avatar(hand, albedo_at="texture")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("renderer, band", [("fast", 0.05), ("fast", "auto"), ("reference", 0.0)])
def test_cuda_renders_what_the_cpu_renders(parts, renderer, band):
    """On CUDA (brute-force anchor search instead of the k-d tree) the picture and gradients are the CPU's; with band
    'auto' (eval mode) the band measured there is the CPU's too."""
    hand, sample = parts
    cpu = _avatar(hand, renderer=renderer, band=band)
    gpu = _avatar(copy.deepcopy(hand), renderer=renderer, band=band).cuda()  # its own hand layer
    gpu.load_state_dict(cpu.state_dict())
    if band == "auto":
        cpu.eval(), gpu.eval()
    cuda_sample = {k: v.cuda() if torch.is_tensor(v) else v for k, v in sample.items()}
    outs = [avatar.render(s) for avatar, s in ((cpu, sample), (gpu, cuda_sample))]
    for out in outs:
        (out["rgb"].sum() + out["alpha"].sum()).backward()
    for name in ("rgb", "albedo", "shading", "alpha"):
        torch.testing.assert_close(outs[1][name].cpu(), outs[0][name], rtol=1e-4, atol=1e-5)
    assert outs[0]["alpha"].max() > 0.2
    if band == "auto":
        assert cpu.band_poses == gpu.band_poses == 1
        torch.testing.assert_close(gpu.bands.band.cpu(), cpu.bands.band)
    # summation orders differ, and some gradients (the deformer's) are sums that nearly cancel: compare them all at once
    on_cpu = torch.cat([a.grad.flatten() for a in cpu.parameters() if a.grad is not None])
    on_gpu = torch.cat([b.grad.flatten().cpu() for b in gpu.parameters() if b.grad is not None])
    assert (on_gpu - on_cpu).norm() <= 1e-3 * on_cpu.norm()


def test_onto_anchor_planes_closed_form():
    """The plane z = 0 through the anchor (0, 0, 0): a ray through (0, 0, -1) along (1, 0, 1) meets it at (1, 0, 0)
    (before or after the point alike); a ray along (1, 0, 0.1) is grazing (cos < 0.2), so the point drops straight
    onto the plane."""
    points = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.5, 2.0, -0.3]], dtype=torch.float64)
    directions = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.1]], dtype=torch.float64)
    anchors = torch.zeros(3, 3, dtype=torch.float64)
    normals = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(3, 3)
    moved = onto_anchor_planes(points, directions, anchors, normals)
    expected = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.5, 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-12)


def test_parameter_groups_are_by_module(parts):
    """Every trainable parameter in exactly one learning-rate group, chosen by the module that holds it (a parameter
    of a new or renamed module goes to 'avatar', never silently elsewhere); frozen encoders in none."""
    hand, _ = parts
    avatar = _avatar(hand)
    avatar.extra = torch.nn.Linear(2, 2)  # a module the groups do not know
    groups = avatar.parameter_groups()
    assert list(groups) == ["avatar", "albedo_codes", "shading", "pairof_decoder"]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in avatar.parameters() if p.requires_grad}
    assert groups["albedo_codes"] == [avatar.albedo.codes]
    assert {id(p) for p in groups["shading"]} == {id(p) for p in avatar.shading.parameters()}
    assert {id(p) for p in groups["pairof_decoder"]} == {id(p) for p in avatar.field.decoder.parameters()}
    assert {id(p) for p in avatar.extra.parameters()} <= {id(p) for p in groups["avatar"]}
    frozen = {id(p) for encoder in (avatar.field.part_encoder, avatar.field.local_encoder) for p in encoder.parameters()}
    assert frozen and not frozen & set(ids)
    assert _avatar(hand, shading=False).parameter_groups()["shading"] == []


def test_vertex_texture_interpolates_its_colours_and_checks_what_it_is_given():
    """VertexTexture: initialise sets the colours (clamped where the sigmoid still moves), the lookup is the
    barycentric blend of its vertices' colours, and colours of the wrong shape or with NaN are refused."""
    from handavatar.model.texture import VertexTexture

    texture = VertexTexture(4)
    colours = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.3, 0.4], [0.9, 0.1, 0.5], [0.6, 0.6, 0.6]])
    texture.initialise(colours)
    torch.testing.assert_close(texture.colours(), colours.clamp(0.02, 0.98))
    ids, weights = torch.tensor([[0, 1, 2], [3, 3, 3]]), torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    expected = torch.stack([0.2 * texture.colours()[0] + 0.3 * colours[1] + 0.5 * colours[2], colours[3]])
    torch.testing.assert_close(texture(ids, weights), expected)
    with pytest.raises(ValueError, match=r"colours of shape \(3, 3\) for a texture of \(4, 3\)"):
        texture.initialise(colours[:3])
    with pytest.raises(ValueError, match="NaN"):
        texture.initialise(colours.clone().fill_(float("nan")))


@pytest.mark.parametrize("albedo_at, sampling", [("surface", "parts"), ("mesh", "box")])
def test_fast_renderer_draws_what_the_reference_draws_with_the_shading_at_the_surface(parts, albedo_at, sampling):
    """network.shading_at 'surface': both renderers take the shading once per ray, from the shadow rays'
    visibility around the ray's point on the posed mesh, so without early termination they draw the same picture
    with the same gradients; SelF learns and sees every shadow ray's visibility."""
    hand, sample = parts
    options = dict(sampling=sampling, albedo_at=albedo_at, shading_at="surface", shadow_rays=32, shading_normal=True)
    fast = _avatar(hand, tolerance=0.0, group=3, **options)
    reference = _avatar(hand, renderer="reference", **options)
    _fast_and_reference(sample, fast, reference, atol_grad=1e-5)
    assert fast.shading.net.layers[0].weight.shape[1] == 32 + fast.anchor_embedding.shape[1] + 48 + 3
    assert any(p.grad.abs().sum() > 0 for p in fast.shading.parameters())
    with pytest.raises(ValueError, match="shading_at 'surface' needs SelF"):
        _avatar(hand, albedo_at="samples", shading_at="surface")
    with pytest.raises(ValueError, match="shading_at 'rays' is not one of"):
        _avatar(hand, albedo_at="surface", shading_at="rays")


def test_learned_lights_draw_alike_in_both_renderers_and_match_a_per_ray_loop(parts):
    """network.lights: both renderers take LightShading once per ray (same pictures and gradients without early
    termination), and a loop written ray by ray gives the same shading: the published renderer's alpha and depth,
    the ray's first hit on the posed mesh however far from the point (`mesh_lookup`), the smoothed vertex normals
    (`smoothed_vertex_normals`, tested in test_mesh) blended there and turned towards the camera, the point lifted
    onto each corner's tangent plane, each light's shadow ray and each of the hit's vertices' sky rays by
    Moller-Trumbore against every triangle, and the closed form (tested in test_avatar_model), times alpha. Learned
    lights replace SelF only with shading_at 'surface'."""
    from smplx.mesh import smoothed_vertex_normals
    from handavatar.render.surface import mesh_lookup

    hand, sample = parts
    options = dict(albedo_at="surface", shading_at="surface", shadow_rays=16, lights=2)
    fast = _avatar(hand, tolerance=0.0, group=3, **options)
    with torch.no_grad():  # one light from the side (a third of these rays face it in the hand's shadow), one ahead
        fast.shading.directions.copy_(torch.tensor([[1.0, 0.07, 0.2], [-0.3, -0.2, -1.0]]))
    _fast_and_reference(sample, fast, _avatar(hand, renderer="reference", **options), atol_grad=1e-5)
    for name, parameter in fast.shading.named_parameters():
        assert parameter.grad.abs().sum() > 0, name
    out, every, points, (origin, directions, posed, _) = _surface_points(fast, _avatar(hand, renderer="reference"),
                                                                         sample)
    with torch.no_grad():
        vertices, faces = posed.vertices[0], hand.output_faces
        normals = smoothed_vertex_normals(vertices, faces, fast.shading.smoothing)
        offset = fast.shading.offset
        lights = torch.nn.functional.normalize(fast.shading.directions, dim=-1)
        expected, shadowed = [], 0
        for r, point in enumerate(points):
            if point is None:
                expected.append(torch.zeros(1))
                continue
            alpha = every["alpha"][r]
            ids, weights = mesh_lookup(origin, point[None], directions[r:r + 1], vertices, faces, reach=math.inf)
            at = (weights[0][:, None] * vertices[ids[0]]).sum(0)
            at = at - sum(w * min(0.0, float((at - vertices[v]) @ normals[v])) * normals[v]
                          for w, v in zip(weights[0], ids[0]))  # lifted onto the corners' tangent planes
            normal = torch.nn.functional.normalize((weights[0][:, None] * normals[ids[0]]).sum(0), dim=0)
            normal = -normal if normal @ directions[r] > 0 else normal
            sky = torch.stack([_escapes_by_hand(vertices[v] + offset * normals[v], fast.shadow_directions, vertices,
                                                faces) for v in ids[0]])
            lit = _escapes_by_hand(at + offset * normal, lights, vertices, faces)
            shadowed += int(lit[0] == 0 and normal @ lights[0] > 0.1)
            expected.append(alpha * fast.shading(normal[None], (weights[0][:, None] * sky).sum(0)[None],
                                                 fast.shadow_directions, lit[None])[0])
    expected = torch.stack(expected)
    assert (every["alpha"] > 0).sum() > 5 and shadowed > 0  # a light faced by the surface, blocked by the hand
    torch.testing.assert_close(out["shading"], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs shading_at 'surface' \\(got 'samples'\\)"):
        _avatar(hand, albedo_at="surface", lights=2)


def test_learned_lights_stay_in_the_world_whatever_the_camera(parts):
    """The lights live in the capture's world frame: the same hand seen through a camera turned by Q (pose, rays and
    origin turned by Q, the sample's world_rotation Q) is drawn alike, while lights held in the camera frame (the
    rotation left out) draw it otherwise. The ambient occlusion term is off: its directions are fixed in the model
    frame."""
    from scipy.spatial.transform import Rotation

    hand, sample = parts
    avatar = _avatar(hand, albedo_at="surface", shading_at="surface", shadow_rays=16, lights=2).eval()
    with torch.no_grad():
        avatar.shading.directions.copy_(torch.tensor([[1.0, 0.07, 0.2], [-0.3, -0.2, -1.0]]))
        avatar.shading.strengths.copy_(torch.tensor([1.5, 0.5]))
        avatar.shading.ambient[1] = -60.0  # a = softplus(-60): no ambient occlusion
    turn = Rotation.from_rotvec([0.3, -0.5, 0.2])
    q = torch.tensor(turn.as_matrix(), dtype=torch.float32)
    turned = dict(sample, rays_o=sample["rays_o"] @ q.T, rays_d=sample["rays_d"] @ q.T, Th=sample["Th"] @ q.T,
                  world_rotation=q, global_orient=torch.tensor(
                      (turn * Rotation.from_rotvec(sample["global_orient"].double().numpy())).as_rotvec(),
                      dtype=torch.float32))
    with torch.no_grad():
        out = avatar.render(dict(sample, world_rotation=torch.eye(3)))
        same = avatar.render(turned)
        held = avatar.render(dict(turned, world_rotation=torch.eye(3)))  # the lights turned with the camera
    hit = out["alpha"] > 0.5
    assert hit.sum() > 10 and out["shading"][hit].std() > 0.05
    torch.testing.assert_close(same["alpha"], out["alpha"], atol=1e-3, rtol=0)
    differ = (same["shading"] - out["shading"]).abs()[hit]
    assert differ.median() < 1e-4 and (differ < 1e-2).float().mean() > 0.95  # a grazing shadow ray may flip
    assert (held["shading"] - out["shading"]).abs()[hit].mean() > 0.05


def test_shading_at_the_surface_matches_a_per_ray_loop(parts):
    """shading_at 'surface' against a loop written ray by ray: the published renderer gives each ray's alpha and
    depth; the loop takes the point o + d depth / alpha, its mesh hit or nearest vertex (`mesh_lookup`, tested
    above), each of those vertices' shadow rays by Moller-Trumbore against every triangle, their barycentric
    blend, and SelF on it with the anchors' blended embedding and normal, times alpha."""
    from handavatar.model.albedo import blend_anchors
    from smplx.mesh import vertex_normals
    from handavatar.render.surface import mesh_lookup

    hand, sample = parts
    avatar = _avatar(hand, tolerance=0.0, albedo_at="surface", shading_at="surface", shadow_rays=24,
                     shading_normal=True)
    with torch.no_grad():  # a SelF whose output moves with its inputs (the geometric init is nearly constant)
        for layer in avatar.shading.net.layers:
            layer.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    fast, every, points, (origin, directions, posed, encoding) = _surface_points(
        avatar, _avatar(hand, renderer="reference"), sample)
    with torch.no_grad():
        vertices, faces = posed.vertices[0], hand.output_faces
        normals = vertex_normals(vertices, faces)
        face_normals = avatar.anchor_normals(posed)
        expected, mixed = [], 0
        for r, point in enumerate(points):
            if point is None:
                expected.append(torch.zeros(1))
                continue
            alpha = every["alpha"][r]
            ids, weights = mesh_lookup(origin, point[None], directions[r:r + 1], vertices, faces)
            each = torch.stack([_escapes_by_hand(vertices[v] + 2e-3 * normals[v], avatar.shadow_directions, vertices,
                                                 faces) for v in ids[0]])
            visible = (weights[0][:, None] * each).sum(0)
            mixed += int((weights[0] > 0.05).sum() > 1 and (each != each[:1]).any())
            dists, near_ids = avatar.field.nearest_anchors(point[None, None], encoding)
            embedding = blend_anchors(avatar.anchor_embedding, dists[0], near_ids[0])
            normal = torch.nn.functional.normalize(blend_anchors(face_normals, dists[0], near_ids[0]), dim=-1)
            expected.append(alpha * avatar.shading(visible[None], embedding, posed.full_pose[0], normal)[0])
    expected = torch.stack(expected)
    hit = every["alpha"] > 0
    assert hit.sum() > 5 and expected[hit].std() > 1e-3
    assert mixed > 0  # rays whose vertices see differently: the blend matters
    torch.testing.assert_close(fast["shading"], expected, rtol=1e-4, atol=1e-5)
