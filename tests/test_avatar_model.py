"""The avatar's networks: positional encoding, inverse-distance anchor blending, SelF's running maximum, the
deformer's centring, and that their gradients reach what they should."""

import numpy as np
import pytest
import torch

import smplx
from handavatar.losses import dilate, point_silhouette, silhouette_loss
from handavatar.model import AlbedoField, Deformer, SelF, inverse_distance_weights, positional_encoding
from handavatar.model.shading import LightShading


def test_positional_encoding_closed_form():
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    out = positional_encoding(x, 3)
    assert out.shape == (1, 21)
    expected = [0.5, -1.0, 2.0]
    for k in range(3):
        expected += list(np.sin(2.0 ** k * np.array([0.5, -1.0, 2.0]))) + list(np.cos(2.0 ** k * np.array(
            [0.5, -1.0, 2.0])))
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-12)


def test_albedo_blends_the_nearest_anchor_codes_by_inverse_distance():
    torch.manual_seed(0)
    field = AlbedoField(anchors=10, code_dim=8, hidden=16, layers=2).double()
    dists = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    ids = torch.tensor([[3, 7, 1]])
    np.testing.assert_allclose(inverse_distance_weights(dists).numpy(), [[4 / 7, 2 / 7, 1 / 7]], rtol=1e-12)
    expected = (4 * field.codes[3] + 2 * field.codes[7] + field.codes[1]) / 7
    torch.testing.assert_close(field.features(dists, ids)[0], expected)
    colour = field(dists, ids)
    assert colour.shape == (1, 3) and torch.all((colour > 0) & (colour < 1))
    colour.sum().backward()
    touched = field.codes.grad.abs().sum(1) > 0
    assert touched.tolist() == [i in (1, 3, 7) for i in range(10)]  # only the blended anchors learn


def test_self_sees_the_running_maximum_of_part_occupancy():
    torch.manual_seed(0)
    shading = SelF(parts=2, anchor_dim=3, pose_dim=4, dims=(16, 16, 16, 16)).double()
    occupancy = torch.tensor([[[0.1, 0.0], [0.7, 0.2], [0.3, 0.9], [0.0, 0.5]]], dtype=torch.float64,
                             requires_grad=True)
    np.testing.assert_allclose(SelF.occlusion(occupancy)[0].numpy(),
                               [[0.1, 0.0], [0.7, 0.2], [0.7, 0.9], [0.7, 0.9]])
    out = shading(SelF.occlusion(occupancy), torch.zeros(1, 4, 3, dtype=torch.float64),
                  torch.zeros(4, dtype=torch.float64))
    assert out.shape == (1, 4, 1) and torch.all((out > 0) & (out < 1))
    assert torch.equal(out[0, 2], out[0, 3])  # same running maximum, same inputs: same shading
    out.sum().backward()
    assert occupancy.grad is None  # shading never pushes on the geometry


def test_light_shading_is_ambient_occlusion_plus_shadowed_lambert_lights_through_the_response():
    """LightShading against its closed form, written out per point: linear = a0 + a AO + sum_k s_k V_k max(0, n.l_k),
    AO the cosine-weighted share of the visible sky directions; shading = linear ** (1 / gamma). Its starting
    values (0.02 + 0.3 + 0.7 for a lit point that sees the whole sky, gamma 2.2); a light behind the normal or in
    shadow adds nothing; gradients reach every parameter."""
    shading = LightShading(2).double()
    assert shading.light_directions().shape == (2, 3) and (shading.light_directions()[:, 2] < 0).all()
    torch.testing.assert_close(shading.gamma(), torch.tensor(2.2, dtype=torch.float64))
    with torch.no_grad():
        shading.directions.copy_(torch.tensor([[0.0, 0.0, -2.0], [0.6, -0.8, 0.0]]))
    sky = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.8, 0.0, -0.6], [0.0, 1.0, 0.0]], dtype=torch.float64)
    normals = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.6, -0.8], [1.0, 0.0, 0.0]], dtype=torch.float64)
    sky_visible = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0]], dtype=torch.float64)
    lit = torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=torch.float64)
    out = shading(normals, sky_visible, sky, lit)
    lights = np.array([[0.0, 0.0, -1.0], [0.6, -0.8, 0.0]])
    for h in range(3):
        cos_sky = np.clip(sky.numpy() @ normals[h].numpy(), 0, None)
        ao = (sky_visible[h].numpy() * cos_sky).sum() / cos_sky.sum()
        direct = sum(0.35 * lit[h, k].item() * max(0.0, float(normals[h].numpy() @ lights[k])) for k in range(2))
        np.testing.assert_allclose(out[h, 0].item(), (0.02 + 0.3 * ao + direct) ** (1 / 2.2), rtol=1e-6)  # float32 start
    np.testing.assert_allclose(out[0, 0].item(), (0.02 + 0.3 + 0.35) ** (1 / 2.2), rtol=1e-6)  # light 1 grazes
    out.sum().backward()
    for name, parameter in shading.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="at least one light"):
        LightShading(0)


def test_deformer_keeps_the_centre_joint_and_starts_near_the_template():
    torch.manual_seed(0)
    base = smplx.create("open_hand", dtype=torch.float64)
    deformer = Deformer(base.v_template, base.j_regressor[4]).double()
    hand_pose = torch.randn(2, 45, dtype=torch.float64) * 0.3
    deformed = deformer(hand_pose)
    assert deformed.shape == (2, base.v_template.shape[0], 3)
    torch.testing.assert_close(base.j_regressor[4] @ deformed, (base.j_regressor[4] @ base.v_template).expand(2, 3))
    assert (deformed - base.v_template).abs().max() < 5e-3  # metres: small offsets at initialisation
    assert not torch.allclose(deformed[0], deformed[1])  # pose-conditioned
    posed = base(hand_pose=hand_pose, shaped_verts=deformed)
    posed.vertices.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in deformer.parameters())


@pytest.mark.parametrize("levels", [0, 2])
def test_positional_encoding_width(levels):
    assert positional_encoding(torch.zeros(5, 3), levels).shape == (5, 3 + 6 * levels)


def test_point_silhouette_weights_and_union():
    K = torch.tensor([[10.0, 0, 10], [0, 10.0, 10], [0, 0, 1]], dtype=torch.float64)
    point = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)  # projects to pixel (10, 10)
    s = point_silhouette(point, K, 21, radius=3.0)[0]
    assert s[10, 10] == pytest.approx(1 - 1e-6) and s[10, 12] == pytest.approx(1 - 4 / 9)
    assert s[10, 13] == 0 and s[12, 12] == pytest.approx(1 - 8 / 9)
    two = torch.tensor([[[0.0, 0.0, 1.0], [0.2, 0.0, 1.0]]], dtype=torch.float64)  # pixels (10, 10) and (12, 10)
    s2 = point_silhouette(two, K, 21, radius=3.0)[0]
    assert s2[10, 11] == pytest.approx(1 - (1 - 8 / 9) * (1 - 8 / 9))  # 1 - prod(1 - alpha)


def test_point_silhouette_default_radius_is_three_pixels():
    """The trainer calls `point_silhouette` with its default radius: 3 px (the published pytorch3d radius 0.025 in
    NDC is 3.2 px on the 256 px crop). A changed default would change every silhouette loss silently."""
    K = torch.tensor([[10.0, 0, 10], [0, 10.0, 10], [0, 0, 1]], dtype=torch.float64)
    point = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    s = point_silhouette(point, K, 21)[0]
    assert s[10, 12] == pytest.approx(1 - 4 / 9) and s[12, 12] == pytest.approx(1 - 8 / 9) and s[10, 13] == 0


def test_point_silhouette_matches_a_per_pixel_loop():
    """A batch of two clouds with points on the image border, partly off it, and behind the camera, against a loop
    over pixels and points: every pixel's 1 - prod(1 - alpha) over the points in front of the camera within reach."""
    g = torch.Generator().manual_seed(0)
    size, radius = 12, 2.5
    K = torch.tensor([[[12.0, 0, 5.5], [0, 12.0, 5.5], [0, 0, 1]], [[9.0, 0, 6.0], [0, 9.0, 5.0], [0, 0, 1]]],
                     dtype=torch.float64)
    xy = (torch.rand(2, 30, 2, generator=g, dtype=torch.float64) - 0.5) * 1.4  # some project past the border
    z = torch.rand(2, 30, 1, generator=g, dtype=torch.float64) + 0.8
    z[:, :4] *= -1  # behind the camera
    points = torch.cat([xy * z.abs(), z], -1)
    points[0, 4] = torch.tensor([-5.5 / 12, -5.5 / 12, 1.0])  # exactly on pixel (0, 0)
    points[1, 5] = torch.tensor([5.0 / 9, 6.0 / 9, 1.0])  # exactly on pixel (11, 11)
    got = point_silhouette(points, K, size, radius=radius)
    want = torch.zeros(2, size, size, dtype=torch.float64)
    for b in range(2):
        for y in range(size):
            for x in range(size):
                clear = 1.0
                for p in points[b]:
                    if p[2] <= 0:
                        continue
                    u, v, w = K[b] @ p
                    d2 = (x - u / w) ** 2 + (y - v / w) ** 2
                    clear *= 1 - min(max(1 - d2 / radius ** 2, 0.0), 1 - 1e-6)
                want[b, y, x] = 1 - clear
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert want[0, 0, 0] > 0.99 and want[1, 11, 11] > 0.99 and (want == 0).any()


def test_mask_dilation_square_and_disc():
    mask = torch.zeros(1, 15, 15)
    mask[0, 7, 7] = 1
    square, disc = dilate(mask, 3), dilate(mask, 3, shape="disc")
    assert square.sum() == 49 and square[0, 4:11, 4:11].all()
    ys, xs = torch.meshgrid(torch.arange(15.0), torch.arange(15.0), indexing="ij")
    assert torch.equal(disc[0], (((ys - 7) ** 2 + (xs - 7) ** 2) <= 9).float())  # the 29 pixels within 3 px
    edge = torch.zeros(1, 40, 40)
    edge[0, :20] = 1  # a straight edge: both grow it by exactly 3 rows
    assert torch.equal(dilate(edge, 3), dilate(edge, 3, shape="disc")) and dilate(edge, 3)[0, :23].all()
    with pytest.raises(ValueError, match="'hexagon' is not"):
        dilate(mask, 3, shape="hexagon")


def test_silhouette_loss_pulls_points_onto_the_mask():
    """A grid of points half off a square mask: gradient steps on the silhouette loss move them onto it (as the
    published IoU loss, it pulls on points whose discs touch the mask; far-away points get no pull)."""
    K = torch.tensor([[64.0, 0, 31.5], [0, 64.0, 31.5], [0, 0, 1]], dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.linspace(-0.1, 0.1, 9), torch.linspace(-0.1, 0.1, 9), indexing="ij")
    grid = torch.stack([xs.reshape(-1) + 0.1, ys.reshape(-1), torch.ones(81)], -1).double()[None]
    mask = torch.zeros(1, 64, 64)
    mask[:, 25:39, 25:39] = 1  # centred: the points start 6.4 px to the right
    points = grid.clone().requires_grad_(True)
    losses = []
    optimizer = torch.optim.Adam([points], lr=0.01)
    for _ in range(60):
        loss = silhouette_loss(point_silhouette(points, K, 64), mask)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]
    assert abs(points[0, :, 0].mean().item()) < 0.3 * 0.1  # moved most of the way towards the mask centre
    perfect = 1 - 196 / (196 + 1e-5 * 64 * 64)  # the 1e-5 per pixel of the published union
    assert silhouette_loss(mask.double(), mask, dilation=0).item() == pytest.approx(perfect, rel=1e-9)
    # against the mask dilated by hand: the 14 x 14 square grows to 20 x 20 (square, the default) or loses the
    # corners that lie farther than 3 px from it (disc)
    s = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for shape, grown in (("square", dilate(mask, 3)), ("disc", dilate(mask, 3, shape="disc"))):
        by_hand = 1 - (s * grown).sum() / (1e-5 + s + grown - s * grown).abs().sum()
        kwargs = {} if shape == "square" else {"shape": shape}
        assert silhouette_loss(s, mask, **kwargs).item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert dilate(mask, 3).sum() == 400 and dilate(mask, 3, shape="disc").sum() < 400
    pair = torch.cat([s, mask.double()])  # a batch: the mean of each image's own loss
    both = silhouette_loss(pair, torch.cat([mask, mask]))
    assert both.item() == pytest.approx((silhouette_loss(s, mask) + silhouette_loss(mask.double(), mask)).item() / 2,
                                        rel=1e-12)
