"""The renderer functions (handavatar.render) on an analytic field, without any network: a sphere of constant
opacity inside two part boxes, anchors on its surface. Both renderers against a closed form (the samples inside a
sphere from the roots of a quadratic) and against a per-ray, per-sample loop; early stop, bands and the band 'auto'
measurement against what the sphere's geometry allows."""

import math

import numpy as np
import pytest
import torch
import trimesh

from handavatar.render import BandCache, PartBoxes, PoseField, RenderOptions, measure_band, render_rays
from handavatar.render.surface import expected_surface_points

CENTRE = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
RADIUS = 0.5
ALBEDO = torch.tensor([0.8, 0.4, 0.2], dtype=torch.float64)
BACKGROUND = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)


def _anchors(count: int = 200) -> torch.Tensor:
    """(A, 3) points spread evenly over the sphere (Fibonacci lattice)."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    polar, azimuth = torch.acos(1 - 2 * i / count), math.pi * (1 + 5 ** 0.5) * i
    unit = torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], -1)
    return CENTRE + RADIUS * unit


def _boxes() -> PartBoxes:
    """Two boxes around the sphere's upper and lower halves (overlapping at the equator), the lower one turned by
    90 degrees about y (its frame differs from the model frame)."""
    turned = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    rotations = torch.stack([torch.eye(3, dtype=torch.float64), turned])
    joints = CENTRE.expand(2, 3)
    centre = torch.tensor([[0.0, 0.25, 0.0], [0.0, -0.25, 0.0]], dtype=torch.float64)
    half = torch.tensor([[0.55, 0.3, 0.55], [0.55, 0.3, 0.55]], dtype=torch.float64)
    return PartBoxes(rotations, joints, centre, half)


def _sphere(opacity: float, *, shading: str = "constant", surface: bool = False) -> PoseField:
    """The sphere as a PoseField: occupancy `opacity` inside, 0 outside; soft part occupancies: 1 - distance / radius
    (0 outside) in the boxes that hold the point, 0 in the others. shading 'constant': 0.6 everywhere; 'occlusion': 0.3 + 0.6 x the first part's
    occlusion (then the running maximum matters). Albedo: ALBEDO at every sample, or (surface) the colour of the
    lookup point's direction from the centre, once per ray."""
    boxes, anchors = _boxes(), _anchors()

    def part_boxes(points):
        local = torch.einsum("kji,knj->kni", boxes.rotations, points[None] - boxes.joints[:, None])
        return local, ((local - boxes.centre[:, None]).abs() < boxes.half[:, None]).all(-1)

    def occupancy(points, given, dense):
        in_part = (given if given is not None else part_boxes(points))[1]
        distance = (points - CENTRE).norm(dim=-1)
        soft = (1 - distance / RADIUS).clamp_min(0.0)  # peaks at the centre: its running maximum lags behind it
        return opacity * (distance < RADIUS).to(points.dtype), soft[:, None] * in_part.T.to(points.dtype)

    def nearest_anchors(points):
        dists = torch.cdist(points, anchors)
        ids = dists.topk(4, dim=-1, largest=False).indices
        return (points[:, None] - anchors[ids]).norm(dim=-1).clamp_min(1e-4), ids

    def appearance(dists, ids, occlusion):
        shade = 0.6 * torch.ones_like(occlusion[:, :1]) if shading == "constant" else 0.3 + 0.6 * occlusion[:, :1]
        return (None if surface else ALBEDO.expand(dists.shape[0], 3)), shade

    def surface_albedo(origin, points, directions, nearest):
        return 0.5 + 0.5 * torch.nn.functional.normalize(points - CENTRE, dim=-1)

    normals = (anchors - CENTRE) / RADIUS
    return PoseField(boxes, anchors, normals, 4, part_boxes, occupancy, nearest_anchors, appearance,
                     surface_albedo if surface else None)


def _rays(count: int = 9):
    """(3,) origin at 0 and (count^2, 3) directions (camera z = 1) over [-0.22, 0.22]^2: rays that meet the sphere
    (radius 0.5 at distance 3 subtends tan ~0.169) and rays that miss it."""
    side = torch.linspace(-0.22, 0.22, count, dtype=torch.float64)
    x, y = torch.meshgrid(side, side, indexing="ij")
    directions = torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(count * count, dtype=torch.float64)], -1)
    near = torch.full((count * count,), 2.0, dtype=torch.float64)
    return torch.zeros(3, dtype=torch.float64), directions, near, near + 2.0


def _closed_form(directions, near, far, samples, opacity, shading=0.6):
    """alpha, rgb and depth of each ray by formula: the samples z_k = near + (far - near) k / (S - 1) inside the
    sphere are those between the roots of |z d - c|^2 = r^2; the i-th of them weighs a (1 - a + e)^i (1 + e)^m, m
    samples lie before them (e = 1e-10, which keeps the compositing's transmittance above 0)."""
    rgb, alpha, depth = [], [], []
    for d, lo, hi in zip(directions, near, far):
        a2, b, c2 = float(d @ d), float(d @ CENTRE), float(CENTRE @ CENTRE) - RADIUS ** 2
        disc = b * b - a2 * c2
        z = [float(lo) + (float(hi) - float(lo)) * k / (samples - 1) for k in range(samples)]
        inside = [] if disc <= 0 else [t for t in z if (b - disc ** 0.5) / a2 < t < (b + disc ** 0.5) / a2]
        before = sum(t < inside[0] for t in z) if inside else 0
        weights = [opacity * (1 - opacity + 1e-10) ** i * (1 + 1e-10) ** before for i in range(len(inside))]
        total = sum(weights)
        alpha.append(total)
        depth.append(sum(w * t for w, t in zip(weights, inside)))
        rgb.append(ALBEDO * shading * total + (1 - total) * BACKGROUND)
    return torch.tensor(alpha, dtype=torch.float64), torch.stack(rgb), torch.tensor(depth, dtype=torch.float64)


def _loop(field, origin, directions, z):
    """Both renderers written ray by ray and sample by sample: transmittance, the running maximum of the soft part
    occupancies, per-sample or once-per-ray albedo."""
    out = {"rgb": [], "alpha": [], "depth": [], "shading": []}
    for d, depths in zip(directions, z):
        passed, running = 1.0, torch.zeros(2, dtype=torch.float64)
        rgb, alpha, depth, shade = torch.zeros(3, dtype=torch.float64), 0.0, 0.0, 0.0
        for t in depths:
            point = (origin + t * d)[None]
            occupancy, soft = field.occupancy(point, None, True)
            running = torch.maximum(running, soft[0])
            dists, ids = field.nearest_anchors(point)
            albedo, shading = field.appearance(dists, ids, running[None])
            weight = float(occupancy[0]) * passed
            alpha, depth, shade = alpha + weight, depth + weight * float(t), shade + weight * float(shading[0, 0])
            if albedo is not None:
                rgb = rgb + weight * albedo[0] * shading[0, 0]
            passed *= 1 - float(occupancy[0]) + 1e-10
        if field.surface_albedo is not None and alpha > 0:
            at = (origin + d * depth / alpha)[None]
            rgb = field.surface_albedo(origin, at, d[None], field.nearest_anchors)[0] * shade
        out["rgb"].append(rgb + (1 - alpha) * BACKGROUND)
        for name, value in (("alpha", alpha), ("depth", depth), ("shading", shade)):
            out[name].append(value)
    return {name: torch.stack(v) if name == "rgb" else torch.tensor(v, dtype=torch.float64) for name, v in out.items()}


@pytest.mark.parametrize("opacity", [1.0, 0.3])
def test_both_renderers_draw_the_closed_form_of_a_sphere(opacity):
    """An opaque sphere (the first sample inside takes all the weight) and a translucent one (each sample inside
    lets 70% through): alpha, rgb and depth of both renderers are the closed form's; the fast one evaluates fewer
    samples (only those inside a part box)."""
    origin, directions, near, far = _rays()
    alpha, rgb, depth = _closed_form(directions, near, far, 16, opacity)
    assert (alpha > 0.2).sum() > 10 and (alpha == 0).sum() > 10  # rays that meet the sphere, and rays that miss it
    field = _sphere(opacity)
    outs = {renderer: render_rays(origin, directions, near, far, field, BACKGROUND,
                                  RenderOptions(renderer=renderer, samples=16, group=3, tolerance=0.0))
            for renderer in ("fast", "reference")}
    for out in outs.values():  # float64; only summation order differs
        torch.testing.assert_close(out["alpha"], alpha, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["rgb"], rgb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["depth"][:, 0], depth, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["shading"][:, 0], 0.6 * alpha, rtol=1e-12, atol=1e-12)
    assert outs["reference"]["points"].shape == (directions.shape[0] * 16, 3)
    assert 0 < outs["fast"]["points"].shape[0] < 0.5 * outs["reference"]["points"].shape[0]


@pytest.mark.parametrize("sampling, group, surface", [("box", 1, False), ("box", 3, True), ("parts", 8, False),
                                                      ("parts", 5, True)])
def test_fast_renderer_matches_the_reference_and_a_per_ray_loop(sampling, group, surface):
    """Shading that depends on the running maximum of the soft part occupancies (carried from group to group) and
    the albedo at every sample or once per ray, at the expected surface point: the fast renderer (no early stop, no
    band) draws the reference's picture, and both are the per-sample loop's."""
    origin, directions, near, far = _rays(7)
    field = _sphere(0.4, shading="occlusion", surface=surface)
    options = RenderOptions(samples=12, sampling=sampling, group=group, tolerance=0.0)
    fast = render_rays(origin, directions, near, far, field, BACKGROUND, options)
    reference = render_rays(origin, directions, near, far, field, BACKGROUND,
                            RenderOptions(renderer="reference", samples=12, sampling=sampling))
    z = reference["points"][:, 2].view(-1, 12)  # the samples' depths: origin 0, directions with z = 1
    loop = _loop(field, origin, directions, z)
    assert loop["alpha"].max() > 0.8 and loop["alpha"].min() == 0
    for name in ("rgb", "alpha", "depth", "shading"):
        for out in (fast, reference):  # float64; only summation order differs
            torch.testing.assert_close(out[name].reshape(loop[name].shape), loop[name], rtol=1e-12, atol=1e-12)
    if surface:  # not the per-sample colour: the direction of each ray's expected surface point
        points, hit = expected_surface_points(origin, directions, fast["depth"], fast["alpha"])
        expected = (0.5 + 0.5 * torch.nn.functional.normalize(points - CENTRE, dim=-1)) * fast["shading"][hit]
        torch.testing.assert_close(fast["rgb"][hit] - ((1 - fast["alpha"][hit])[:, None] * BACKGROUND), expected)


@pytest.mark.parametrize("tolerance", [0.01, 0.1])
def test_early_stop_changes_a_pixel_by_less_than_the_tolerance(tolerance):
    """A sphere that lets 40% through per sample: stopping each ray once its transmittance is below tolerance / 2
    evaluates fewer samples and moves no value by more than the tolerance (tolerance 0: the exact picture)."""
    origin, directions, near, far = _rays()
    field = _sphere(0.6, shading="occlusion")
    exact = render_rays(origin, directions, near, far, field, BACKGROUND, RenderOptions(samples=32, tolerance=0.0))
    early = render_rays(origin, directions, near, far, field, BACKGROUND,
                        RenderOptions(samples=32, tolerance=tolerance, group=2))
    assert early["points"].shape[0] < exact["points"].shape[0]
    for name in ("rgb", "shading", "alpha"):
        difference = (exact[name] - early[name]).abs().max()
        assert 0 < difference <= tolerance, name


def test_bands_evaluate_only_near_the_surface():
    """A band of 0.05 dm evaluates only samples within it of an anchor; a band per anchor (band 'auto') also every
    sample behind its nearest anchor's face, so on a field that is empty outside the sphere it draws the exact
    picture; band 'auto' must come with the pose's measured band."""
    origin, directions, near, far = _rays()
    field = _sphere(0.3)
    options = RenderOptions(samples=32, tolerance=0.0)
    exact = render_rays(origin, directions, near, far, field, BACKGROUND, options)
    near_surface = render_rays(origin, directions, near, far, field, BACKGROUND, options, band=0.05)
    assert 0 < near_surface["points"].shape[0] < exact["points"].shape[0]
    assert torch.cdist(near_surface["points"], field.anchors).amin(1).max() <= 0.05
    per_anchor = torch.full((field.anchors.shape[0],), 0.05, dtype=torch.float64)
    auto = render_rays(origin, directions, near, far, field, BACKGROUND, options, band=per_anchor)
    torch.testing.assert_close(auto["rgb"], exact["rgb"], rtol=1e-12, atol=1e-12)
    assert auto["points"].shape[0] < exact["points"].shape[0]  # the band left out the empty space around it
    with pytest.raises(ValueError, match="band 'auto' is measured per pose"):
        render_rays(origin, directions, near, far, field, BACKGROUND, RenderOptions(band="auto"))


def test_measured_band_of_a_sphere_whose_field_reaches_past_its_mesh():
    """The field is occupied up to 0.08 dm outside an icosphere mesh of the sphere (anchors at its face centroids,
    normals the faces'): every band lies between the last normal probe inside that reach (0.06 or 0.08: probes every
    0.02 dm) and the farthest a point within the reach can lie from the anchor of the face below it; the margin
    adds, the minimum clamps."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    vertices = torch.from_numpy(np.asarray(mesh.vertices)) + CENTRE
    faces = torch.from_numpy(np.asarray(mesh.faces, dtype=np.int64))
    corners = vertices[faces]
    anchors = corners.mean(1)
    normals = torch.from_numpy(np.array(mesh.face_normals))
    reach = 0.08
    calls = []

    def occupancy(points):
        calls.append(points.shape[0])
        return ((points - CENTRE).norm(dim=-1) < RADIUS + reach).to(points.dtype)

    options = dict(steps=10, depth=0.2)
    band = measure_band(occupancy, anchors, normals, _boxes(), vertices, faces, margin=0.0, minimum=0.0, **options)
    below = RADIUS - (anchors - CENTRE).norm(dim=-1).min()  # how far inside the sphere a centroid lies
    circumradius = (corners - anchors[:, None]).norm(dim=-1).max()
    assert band.shape == (anchors.shape[0],) and len(calls) == 1
    assert band.min() >= reach - 0.02 - 1e-9
    assert band.max() <= math.hypot(reach + below, circumradius) + 1e-9
    with_margin = measure_band(occupancy, anchors, normals, _boxes(), vertices, faces, margin=0.01, minimum=0.0,
                               **options)
    torch.testing.assert_close(with_margin, band + 0.01)  # the same probes: seeded
    clamped = measure_band(occupancy, anchors, normals, _boxes(), vertices, faces, margin=0.0, minimum=0.5, **options)
    assert torch.all(clamped == 0.5)


def test_measured_reach_spreads_to_the_anchors_that_have_it_among_their_8_nearest():
    """A field occupied only on a thin needle along one anchor's normal (out to 0.07 dm): the normal probes at 0.02,
    0.04 and 0.06 dm find it, so that anchor reaches 0.06 dm; every anchor that has it among its 8 nearest (by brute
    force; the centroids are jittered so that no two distances tie) takes that reach, every other anchor none."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS)
    vertices = torch.from_numpy(np.asarray(mesh.vertices)) + CENTRE
    faces = torch.from_numpy(np.asarray(mesh.faces, dtype=np.int64))
    generator = torch.Generator().manual_seed(0)
    anchors = vertices[faces].mean(1) + 1e-4 * torch.randn(len(faces), 3, generator=generator, dtype=torch.float64)
    normals = torch.from_numpy(np.array(mesh.face_normals))

    def occupancy(points):
        offset = points - anchors[0]
        along = offset @ normals[0]
        across = (offset - along[:, None] * normals[0]).norm(dim=-1)
        return ((across < 0.003) & (along > 0) & (along < 0.07)).to(points.dtype)

    band = measure_band(occupancy, anchors, normals, _boxes(), vertices, faces, margin=0.0, minimum=0.0, steps=10,
                        depth=0.2)
    holds = (torch.cdist(anchors, anchors).topk(8, largest=False).indices == 0).any(1)
    assert 8 <= holds.sum() < 20
    torch.testing.assert_close(band[holds], torch.full((int(holds.sum()),), 0.06, dtype=torch.float64))
    assert torch.all(band[~holds] == 0)


def test_band_cache_measures_a_new_pose_or_new_weights_only():
    """BandCache: the same key and pose measure once; a pose whose finger joints all turned by ~35 degrees (more
    than the 30-degree step) measures again and keeps the larger reach per anchor; one within the step does not; a
    new key starts again."""
    cache, calls = BandCache(), []

    def measure(value):
        return lambda: calls.append(value) or value

    pose = torch.zeros(45)
    first = cache.get(("w", 1), pose, 30.0, measure(torch.tensor([0.1, 0.3])))
    again = cache.get(("w", 1), pose, 30.0, measure(torch.tensor([9.0, 9.0])))
    assert len(calls) == 1 and torch.equal(first, again) and cache.poses == 1
    bent = torch.full((45,), math.radians(35) / 3 ** 0.5)  # each joint turned by 35 degrees about (1, 1, 1)
    band = cache.get(("w", 1), bent, 30.0, measure(torch.tensor([0.2, 0.2])))
    assert len(calls) == 2 and torch.equal(band, torch.tensor([0.2, 0.3])) and cache.poses == 2
    cache.get(("w", 1), bent * 0.9, 30.0, measure(torch.tensor([5.0, 5.0])))  # 3.5 degrees from the bent pose
    assert len(calls) == 2
    renewed = cache.get(("w", 2), pose, 30.0, measure(torch.tensor([0.05, 0.05])))
    assert len(calls) == 3 and torch.equal(renewed, torch.tensor([0.05, 0.05])) and cache.poses == 1


def test_render_options_name_what_is_wrong():
    for options, message in (({"renderer": "slow"}, "renderer 'slow' is not one of"),
                             ({"sampling": "grid"}, "sampling 'grid' is not 'box' or 'parts'"),
                             ({"band": -0.1}, "band -0.1 is not a distance >= 0"),
                             ({"band": "wide"}, "band 'wide' is not a distance")):
        with pytest.raises(ValueError, match=message):
            RenderOptions(**options)
