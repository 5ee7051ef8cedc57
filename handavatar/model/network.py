"""The hand avatar (reference §4.2-4.3): MANO-HD deformed and posed for a frame, PairOF's occupancy as opacity, the
albedo field and SelF's shading at every ray sample, composited front to back.

    avatar = HandAvatar(mano_hd, pairof)                 # MANO-HD with its skinning weights, a (pretrained) field
    out = avatar.render(sample)                          # a dataset sample (handavatar.data), one frame
    out["rgb"], out["alpha"], out["albedo"], out["shading"], out["depth"]      # (P, h, w, C) pixel grids

Each branch can be switched off for ablations: without the deformer the template is used as is; without SelF the
shading is 1 (colour = albedo). With `albedo_at='surface'` (not in the paper) the albedo is looked up once per ray,
at its expected surface point, instead of at every sample (`handavatar.render.surface`); with `albedo_at='mesh'`,
in a texture on MANO-HD's vertices where the ray meets the posed mesh (`handavatar.model.texture`).

Two renderers draw the same samples: 'reference', the naive published one (every sample, every part pair, every
anchor), and 'fast' (the default), which leaves out the work that cannot change the picture (see `_march`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smplx import MANO, MANOOutput
from smplx.joint_names import NUM_JOINTS
from smplx.lbs import batch_rodrigues
from pairof import PairOF, PairOFEncoding
from smplx.utils.inside import inside_mesh
from handavatar.model.albedo import AlbedoField, blend_anchors
from handavatar.model.deformer import Deformer
from handavatar.model.embedder import positional_encoding
from handavatar.model.shading import SelF
from handavatar.model.texture import VertexTexture
from handavatar.render.anchors import AnchorIndex
from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.surface import composite_surface_albedo, mesh_lookup, onto_anchor_planes
from handavatar.render.volume import composite, sample_depths

__all__ = ["HandAvatar", "RENDERERS", "ALBEDO_AT"]

RENDERERS = ("fast", "reference")
ALBEDO_AT = ("samples", "surface", "plane", "mesh")


class HandAvatar(nn.Module):
    """The avatar's model.

    Args:
        hand: the MANO-HD layer (center_id 4, scale 10, seal, distal), carrying the skinning weights the field was
            built for; its parameters are buffers and stay fixed.
        field: PairOF for that layer. Its part and pair encoders are frozen; its decoder trains.
        deformer: use the pose-conditioned template offsets.
        shading: use SelF (otherwise shading = 1).
        shading_normal: SelF also sees the posed surface normal (camera frame), blended over the nearest anchors
            (not in the paper; see `SelF`).
        code_dim: albedo code width; anchor_levels: positional-encoding frequencies of the anchor positions.
        albedo_at: 'samples': the albedo at every ray sample, composited (published); 'surface': once per ray, at
            the ray's expected surface point, times the composited shading (`handavatar.render.surface`);
            'plane': as 'surface', with the point moved along its ray onto the plane of its nearest posed anchor's
            face; 'mesh': as 'surface', the albedo from a texture on MANO-HD's vertices (`texture`, a
            `VertexTexture`, instead of the albedo field), interpolated where the ray meets the posed mesh within
            `mesh_reach` (dm) of that point (`mesh_lookup`).
        samples: samples per ray.
        sampling: 'box': evenly between near and far, where the ray crosses the posed hand's 3D box (published);
            'parts': evenly over the stretches of the ray inside the posed part boxes, the only places with
            non-zero occupancy (the same samples budget, all where the hand can be).
        renderer: 'fast' (`_march`: skips what cannot change the picture) or 'reference' (`_render_reference`:
            the naive published renderer); both draw the same samples.
        group: samples per ray marched at once by the fast renderer.
        tolerance: the fast renderer stops a ray once its transmittance is below this (0: never).
        band: the fast renderer evaluates only samples near the posed surface: within this distance (dm) of a posed
            anchor (0: everywhere in the part boxes, exactly as the reference), or 'auto' (eval mode): outside the
            surface within a distance per anchor measured on the field (`measure_band`), inside it at any distance;
            in training mode, `band_training` around every anchor.
        band_margin, band_min: 'auto' adds this margin (dm) to each anchor's measured reach and takes at least
            band_min.
        band_training: the band of 'auto' in training mode, where the weights change at every step.
        band_pose_step: 'auto' measures the band again on a pose whose finger joints differ by more than this
            (degrees) from every pose measured with the current weights, and keeps the largest reach.
    """

    def __init__(self, hand: MANO, field: PairOF, *, deformer: bool = True, shading: bool = True,
                 shading_normal: bool = False, code_dim: int = 128, anchor_levels: int = 3,
                 albedo_at: str = "samples", samples: int = 64,
                 sampling: str = "box", renderer: str = "fast", group: int = 8, tolerance: float = 1e-3,
                 band: float | str = 0.0, band_margin: float = 0.03, band_min: float = 0.06,
                 band_training: float = 0.1, band_pose_step: float = 30.0, mesh_reach: float = 0.05):
        super().__init__()
        self.hand = hand.requires_grad_(False)
        self.field = field
        for encoder in (field.part_encoder, field.local_encoder):
            encoder.requires_grad_(False)
        self.deformer = Deformer(hand.v_template, hand.j_regressor[4]) if deformer else None
        anchors = field.anchor_faces.shape[0]
        self.albedo = AlbedoField(anchors=anchors, code_dim=code_dim) if albedo_at != "mesh" else None
        self.texture = VertexTexture(hand.num_vertices) if albedo_at == "mesh" else None
        self.mesh_reach = mesh_reach
        # the published anchor embedding: gamma_L(10 x canonical anchor relative to joint 4), i.e. of decimetres
        self.register_buffer("anchor_embedding", positional_encoding(10 * field.anchor_canonical, anchor_levels))
        self.shading = SelF(anchor_dim=self.anchor_embedding.shape[1], normal=shading_normal) if shading else None
        if sampling not in ("box", "parts"):
            raise ValueError(f"sampling {sampling!r} is not 'box' or 'parts'")
        if albedo_at not in ALBEDO_AT:
            raise ValueError(f"albedo_at {albedo_at!r} is not one of {ALBEDO_AT}")
        self.albedo_at = albedo_at
        if renderer not in RENDERERS:
            raise ValueError(f"renderer {renderer!r} is not one of {RENDERERS}")
        if band != "auto" and not (isinstance(band, (int, float)) and band >= 0):
            raise ValueError(f"band {band!r} is not a distance >= 0 (dm) or 'auto'")
        self.samples, self.sampling = samples, sampling
        self.renderer, self.group, self.tolerance, self.band = renderer, group, tolerance, band
        self.band_margin, self.band_min, self.band_training = band_margin, band_min, band_training
        self.band_pose_step = band_pose_step
        self._measured_band = None  # band 'auto': (the weights' versions, [measured finger rotations], (A,) band)

    def pose(self, global_orient: Tensor, hand_pose: Tensor) -> MANOOutput:
        """The posed MANO-HD of (B, 3) camera-frame global rotations and (B, 45) hand poses (betas are zero: the
        identity shape comes from the deformer, as the published code)."""
        shaped = self.deformer(hand_pose) if self.deformer is not None else None
        return self.hand(global_orient=global_orient, hand_pose=hand_pose, shaped_verts=shaped)

    def render_rays(self, origin: Tensor, directions: Tensor, near: Tensor, far: Tensor, posed: MANOOutput,
                    encoding: PairOFEncoding, background: Tensor, *, stratified: bool = False,
                    generator: torch.Generator | None = None, anchor_index: AnchorIndex | None = None,
                    band: float | Tensor | None = None) -> dict[str, Tensor]:
        """Render R rays of one posed hand with the avatar's renderer.

        Args:
            origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1. near, far: (R,) depths.
            posed: the posed hand (B = 1); encoding: the field's encoding of it.
            background: (3,) colour behind the hand.
            stratified: jitter the samples (training).
            anchor_index: the pose's nearest-anchor index (fast renderer; built here when omitted).
            band: the pose's `surface_band` (fast renderer; found here when omitted).

        Returns:
            'rgb', 'albedo' (R, 3) with the background behind; 'shading' (R, 1) and 'depth' (R, 1) weighted sums;
            'alpha' (R,) accumulated opacity; 'occupancy' (N,) and 'points' (N, 3) of the N samples the renderer
            evaluated (reference: all R x S, ray-major; fast: those inside a part box before the ray stopped).
        """
        if self.sampling == "parts" or self.renderer == "fast":  # (R, K) where each ray crosses each part box
            enter, leave = part_box_intervals(origin, directions, encoding.rotations[0], encoding.joints[0],
                                              encoding.box_centre[0], encoding.box_half[0])
        if self.sampling == "parts":
            z, _ = sample_in_intervals(enter, leave, self.samples, stratified=stratified, generator=generator)
        else:
            z = sample_depths(near, far, self.samples, stratified=stratified, generator=generator)  # (R, S)
        if self.renderer == "reference":
            return self._render_reference(origin, directions, z, posed, encoding, background)
        if anchor_index is None:
            anchor_index = AnchorIndex(encoding.anchors[0], self.field.neighbours)
        if band is None:
            band = self.surface_band(posed, encoding)
        return self._march(origin, directions, z, (leave > enter).any(1), posed, encoding, background, anchor_index,
                           band)

    def surface_band(self, posed: MANOOutput, encoding: PairOFEncoding) -> float | Tensor:
        """The fast renderer's band for this pose: a distance (dm; 0: none), or with band 'auto' in eval mode (A,)
        distances, one per posed anchor: the largest of `measure_band` over the poses measured with the current
        weights, measuring this pose too when its finger joints differ by more than `band_pose_step` degrees from
        each of them (the field's reach changes with the pose: a fist's fingers press on the palm). So a validation
        or a video measures a few poses, not every frame."""
        if self.band != "auto":
            return self.band
        if self.training:
            return self.band_training
        version = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._measured_band is None or self._measured_band[0] != version:
            self._measured_band = (version, [], None)
        _, measured, band = self._measured_band
        fingers = batch_rodrigues(posed.full_pose[0, 3:].detach().reshape(-1, 3))  # (15, 3, 3)
        cosine = ((torch.stack(measured).transpose(-1, -2) @ fingers).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2 \
            if measured else None
        if cosine is None or (cosine.clamp(-1, 1).acos().amax(-1).rad2deg() > self.band_pose_step).all():
            reach = self.measure_band(posed, encoding)
            band = reach if band is None else torch.maximum(band, reach)
            self._measured_band = (version, measured + [fingers], band)
        return band

    @property
    def band_poses(self) -> int:
        """How many poses band 'auto' has measured (with the weights of its last measurement)."""
        return 0 if self._measured_band is None else len(self._measured_band[1])

    def measure_band(self, posed: MANOOutput, encoding: PairOFEncoding, *, steps: int = 10, depth: float = 0.2,
                     probes_per_anchor: int = 8, threshold: float = 1e-3) -> Tensor:
        """(A,) how far outside the posed MANO-HD mesh the field is occupied near each posed anchor, plus
        `band_margin`, at least `band_min` (dm): the band 'auto' of the fast renderer.

        The trained field does not end where the mesh does: on the demo avatar it is occupied up to ~0.045 dm outside
        the anchors of the fingers, and up to ~0.15 dm beyond the wrist's cap (README). The field is probed along
        each anchor's outward normal (`steps` points, evenly out to `depth` dm) and at `probes_per_anchor` x A
        points drawn uniformly in the part boxes; every probe outside the mesh (winding number) with occupancy above
        `threshold` stretches its nearest anchor's reach to its distance; each anchor then takes the largest reach
        among its 8 nearest anchors (the probes are sparse). About 1 s on a 2-core CPU for 4,096 anchors.
        """
        anchors, rotations, joints, centre, half = (t[0].detach() for t in (
            encoding.anchors, encoding.rotations, encoding.joints, encoding.box_centre, encoding.box_half))
        device = anchors.device
        along = torch.arange(1, steps + 1, dtype=anchors.dtype, device=device) * (depth / steps)
        normal_probes = anchors[:, None] + self._anchor_face_normals(posed)[:, None] * along[:, None]
        generator, probes = torch.Generator().manual_seed(0), probes_per_anchor * anchors.shape[0]
        part = torch.multinomial((2 * half).prod(-1).cpu(), probes, replacement=True, generator=generator).to(device)
        unit = (2 * torch.rand(probes, 3, generator=generator, dtype=anchors.dtype) - 1).to(device)
        box_probes = torch.einsum("nij,nj->ni", rotations[part], centre[part] + half[part] * unit) + joints[part]
        points = torch.cat([normal_probes.reshape(-1, 3), box_probes])  # box probes: uniform in each part's box
        outside = ~torch.from_numpy(inside_mesh(points.cpu().double().numpy(),
                                                posed.vertices[0].detach().cpu().double().numpy(),
                                                self.field.faces.cpu().numpy())).to(device)
        points = points[outside]  # the field is queried only where it can stretch a reach
        with torch.no_grad():
            occupied = self.field.query(points[None], encoding).occupancy[0] > threshold
        index = AnchorIndex(anchors, 8)
        dists, ids = index.query(points[occupied])
        reach = torch.zeros_like(anchors[:, 0]).scatter_reduce(0, ids[:, 0], dists[:, 0], "amax")
        reach = reach[index.query(anchors)[1]].amax(1)
        return (reach + self.band_margin).clamp_min(self.band_min)

    def anchor_normals(self, posed: MANOOutput) -> Tensor | None:
        """(A, 3) unit normals of the faces the posed anchors lie on (model frame, which is oriented as the camera),
        detached (shading never pushes on the geometry); None when SelF does not use them."""
        if self.shading is None or not self.shading.normal:
            return None
        return self._anchor_face_normals(posed)

    def _anchor_face_normals(self, posed: MANOOutput) -> Tensor:
        corners = posed.vertices[0].detach()[self.field.faces[self.field.anchor_faces]]  # (A, 3, 3)
        return torch.nn.functional.normalize(torch.linalg.cross(corners[:, 1] - corners[:, 0],
                                                                corners[:, 2] - corners[:, 0], dim=-1), dim=-1)

    def appearance(self, anchor_dists: Tensor, anchor_ids: Tensor, occlusion: Tensor, pose: Tensor,
                   normals: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Albedo (N, 3) and shading (N, 1) of N samples from their (N, k) nearest posed anchors, their (N, 16)
        SelF occlusion (running maximum of the soft part occupancies along the ray), the (48,) pose and the pose's
        (A, 3) `anchor_normals`. With albedo_at 'surface' or 'plane' the samples have no albedo (None): the renderers look it
        up once per ray (`surface_albedo`)."""
        albedo = self.albedo(anchor_dists, anchor_ids) if self.albedo_at == "samples" else None
        if self.shading is None:
            return albedo, anchor_dists.new_ones(anchor_dists.shape[0], 1)
        embedding = blend_anchors(self.anchor_embedding, anchor_dists, anchor_ids)
        normal = None
        if normals is not None:
            normal = torch.nn.functional.normalize(blend_anchors(normals, anchor_dists, anchor_ids), dim=-1)
        return albedo, self.shading(occlusion, embedding, pose, normal)

    def _render_reference(self, origin: Tensor, directions: Tensor, z: Tensor, posed: MANOOutput,
                          encoding: PairOFEncoding, background: Tensor) -> dict[str, Tensor]:
        """The naive renderer, as the published code: every sample of every ray, every part pair at every sample,
        the nearest anchors of every sample among all anchors, albedo and shading everywhere."""
        rays, samples = z.shape
        points = (origin + z[..., None] * directions[:, None]).reshape(1, -1, 3)
        out = self.field.query(points, encoding, intermediate=True, dense=True, anchors=False)
        occupancy = out.occupancy.view(rays, samples)
        occlusion = SelF.occlusion(out.soft_part_occupancy[0].transpose(0, 1).reshape(rays, samples, -1))
        dists, ids = self.field.nearest_anchors(points, encoding)
        albedo, shading = self.appearance(dists[0], ids[0], occlusion.reshape(rays * samples, -1),
                                          posed.full_pose[0], self.anchor_normals(posed))
        values = {"shading": shading.view(rays, samples, 1), "depth": z[..., None]}
        if albedo is not None:
            albedo = albedo.view(rays, samples, 3)
            values.update(rgb=albedo * values["shading"], albedo=albedo)
        result = composite(occupancy, values, background)
        if albedo is None:
            result.update(self.surface_albedo(origin, directions, result, background,
                                              lambda p: self.field.nearest_anchors(p[None], encoding), posed,
                                              encoding.anchors[0]))
        in_box = self.field.part_boxes(points, encoding)[1][0].any(0)  # the published `~all_out`
        return {**result, "occupancy": occupancy.reshape(-1), "points": points[0], "in_box": in_box}

    def surface_albedo(self, origin: Tensor, directions: Tensor, totals: dict[str, Tensor], background: Tensor,
                       nearest, posed: MANOOutput, anchors: Tensor) -> dict[str, Tensor]:
        """albedo_at 'surface', 'plane' or 'mesh': 'rgb' and 'albedo' (R, 3) of rays from their composited 'shading',
        'depth' (R, 1) and 'alpha' (R,), with the albedo looked up once per ray at its expected surface point
        ('plane': moved onto its nearest anchor's face plane; 'mesh': the texture where the ray meets the posed
        mesh); `nearest`: (H, 3) points -> their nearest posed
        anchors' distances and ids, (H, k) each (or (1, H, k)); `anchors`: (A, 3) the posed anchors."""
        def albedo_of(points: Tensor, directions: Tensor) -> Tensor:
            if self.albedo_at == "mesh":
                return self.texture(*mesh_lookup(origin, points, directions, posed.vertices[0],
                                                 self.hand.output_faces, reach=self.mesh_reach))
            if self.albedo_at == "plane":
                first = nearest(points)[1].reshape(points.shape[0], -1)[:, 0]
                points = onto_anchor_planes(points, directions, anchors.detach()[first],
                                            self._anchor_face_normals(posed)[first])
            dists, ids = nearest(points)
            return self.albedo(dists.reshape(points.shape[0], -1), ids.reshape(points.shape[0], -1))
        return composite_surface_albedo(albedo_of, origin, directions, totals["shading"], totals["depth"],
                                        totals["alpha"], background)

    def _march(self, origin: Tensor, directions: Tensor, z: Tensor, crosses: Tensor, posed: MANOOutput,
               encoding: PairOFEncoding, background: Tensor, anchor_index: AnchorIndex, band: float | Tensor
               ) -> dict[str, Tensor]:
        """The fast renderer: the same samples and the same picture as `_render_reference`, with the work that
        cannot change it left out.

        - Rays that cross no part box stay background: the network is never asked about them.
        - Samples outside every part box have occupancy and soft part occupancies exactly 0 (no opacity, no
          contribution to SelF's running maximum): they are not evaluated.
        - Inside, only the pairs whose boxes hold the point are evaluated (PairOF's sparse query).
        - With a `band` (`surface_band`), only samples whose nearest posed anchor lies within it are evaluated
          (band 'auto': and those behind that anchor's face, inside the surface): the rest of space is taken as
          empty (an approximation: the reference evaluates the whole part boxes).
        - Rays are marched `group` samples at a time; a ray stops once its transmittance falls below tolerance / 2,
          and albedo and shading are evaluated only at samples whose compositing weight is at least
          tolerance / (2 S) (with tolerance 0: wherever it is not zero). Together these change the composited
          rgb, albedo, shading and alpha of a ray by less than `tolerance`.
        """
        rays, samples = z.shape
        alive = crosses.nonzero()[:, 0]  # (R,) crosses: the ray crosses some part box
        passed = z.new_ones(alive.shape[0])  # transmittance of the alive rays
        carried = z.new_zeros(alive.shape[0], NUM_JOINTS)  # SelF's running maximum so far
        widths = (("shading", 1), ("depth", 1), ("alpha", 1)) + ((("rgb", 3), ("albedo", 3))
                                                                 if self.albedo_at == "samples" else ())
        totals = {name: z.new_zeros(rays, width) for name, width in widths}
        evaluated_points, evaluated_occupancy = [z.new_zeros(0, 3)], [z.new_zeros(0)]
        pose, normals = posed.full_pose[0], self.anchor_normals(posed)
        behind = None
        if torch.is_tensor(band):  # 'auto': the inside too, behind the anchors' faces (the normals SelF has, if any)
            behind = normals if normals is not None else self._anchor_face_normals(posed)
        for start in range(0, samples, self.group):
            if alive.numel() == 0:
                break
            depth = z[alive, start:start + self.group]  # (r, g)
            points = origin + depth[..., None] * directions[alive, None]
            local, in_part = self.field.part_boxes(points.reshape(1, -1, 3), encoding)
            inside = in_part[0].any(0).view(depth.shape)
            if torch.is_tensor(band) or band > 0:
                inside[inside.clone()] = anchor_index.near(points[inside], band, normals=behind).to(inside.device)
            occupancy = depth.new_zeros(depth.shape)
            soft = depth.new_zeros(*depth.shape, carried.shape[1])
            if inside.any():
                flat, inner = inside.reshape(-1), points[inside]
                out = self.field.query(inner[None], encoding, intermediate=True, anchors=False,
                                       boxes=(local[:, :, flat], in_part[:, :, flat]))
                occupancy = occupancy.index_put((inside,), out.occupancy[0])
                soft = soft.index_put((inside,), out.soft_part_occupancy[0].transpose(0, 1))
                evaluated_points.append(inner)
                evaluated_occupancy.append(out.occupancy[0])
            occlusion = SelF.occlusion(torch.cat([carried[:, None], soft], 1))[:, 1:]
            part = composite(occupancy, {"depth": depth[..., None]}, transmittance=passed)
            # appearance only where its compositing weight can matter: the samples left out weigh less than
            # tolerance / (2 S) each, so together they change a value in [0, 1] by less than tolerance / 2
            active = part["weights"] > (self.tolerance / (2 * samples) if self.tolerance > 0 else 0.0)
            albedo = depth.new_zeros(*depth.shape, 3) if self.albedo_at == "samples" else None
            shading = depth.new_zeros(*depth.shape, 1)
            if active.any():
                dists, ids = anchor_index.query(points[active])
                a, s = self.appearance(dists, ids, occlusion[active], pose, normals)
                shading = shading.index_put((active,), s)
                if albedo is not None:
                    albedo = albedo.index_put((active,), a)
            weights = part["weights"][..., None]
            part.update(shading=(weights * shading).sum(1), alpha=part["alpha"][:, None])
            if albedo is not None:
                part.update(rgb=(weights * albedo * shading).sum(1), albedo=(weights * albedo).sum(1))
            totals = {name: value.index_add(0, alive, part[name]) for name, value in totals.items()}
            keep = part["transmittance"] >= self.tolerance / 2
            alive, passed, carried = alive[keep], part["transmittance"][keep], occlusion[keep, -1]
        totals["alpha"] = totals["alpha"][:, 0]
        alpha = totals["alpha"]
        if self.albedo_at != "samples":
            totals.update(self.surface_albedo(origin, directions, totals, background, anchor_index.query, posed,
                                              anchor_index.anchors))
        else:
            totals["rgb"] = totals["rgb"] + (1 - alpha)[:, None] * background
            totals["albedo"] = totals["albedo"] + (1 - alpha)[:, None] * background
        return {**totals, "occupancy": torch.cat(evaluated_occupancy),
                "points": torch.cat(evaluated_points)}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by the module that holds them, for the optimiser's learning rates: 'avatar'
        (everything not below: the albedo MLP, the deformer, any new module), 'albedo_codes' (the codebook, or the
        vertex texture of albedo_at 'mesh'),
        'shading' (SelF) and 'pairof_decoder' (PairOF's decoder; its encoders are frozen). Each trainable parameter
        is in exactly one group, in `parameters()` order within it."""
        special = {"albedo_codes": [self.albedo.codes] if self.albedo is not None else [self.texture.logits],
                   "shading": list(self.shading.parameters()) if self.shading is not None else [],
                   "pairof_decoder": list(self.field.decoder.parameters())}
        taken = {id(p) for params in special.values() for p in params}
        groups = {"avatar": [p for p in self.parameters() if id(p) not in taken], **special}
        return {name: [p for p in params if p.requires_grad] for name, params in groups.items()}

    def forward(self, sample: dict, **options) -> dict[str, Tensor]:
        """`render` (the module's forward, so that DistributedDataParallel can wrap the avatar)."""
        return self.render(sample, **options)

    def render(self, sample: dict, *, stratified: bool = False, chunk: int | str = "auto",
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Render a dataset sample (handavatar.data; one frame, unbatched tensors).

        Only pixels whose ray meets the hand's 3D box (`ray_mask`) are rendered, in chunks of `chunk` rays ('auto':
        4,096 on the CPU; 65,536 on CUDA, where each chunk's kernel launches and synchronisations, not arithmetic,
        bound the time); the rest get the background (alpha 0).

        Returns:
            'rgb', 'albedo' (P, h, w, 3); 'shading', 'depth' (P, h, w, 1); 'alpha' (P, h, w); 'occupancy' (N,)
            and 'points' (N, 3) of the N samples the renderer evaluated (see `render_rays`; the reference renderer
            adds 'in_box' (N,), the samples inside some part box); and 'posed'.
        """
        posed = self.pose(sample["global_orient"][None], sample["hand_pose"][None])
        encoding = self.field.encode(posed.vertices, posed.joints, posed.full_pose)
        mask = sample["ray_mask"]
        background = sample["bgcolor"]
        grid = mask.shape
        outputs = {"rgb": background.expand(*grid, 3).clone(), "albedo": background.expand(*grid, 3).clone(),
                   "shading": torch.zeros(*grid, 1), "depth": torch.zeros(*grid, 1), "alpha": torch.zeros(grid)}
        outputs = {k: v.to(background) for k, v in outputs.items()}
        directions, near, far = sample["rays_d"][mask], sample["near"][mask], sample["far"][mask]
        if chunk == "auto":
            chunk = 65536 if directions.device.type == "cuda" else 4096
        elif isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk {chunk!r} is not a number of rays >= 1 or 'auto'")
        index = band = None
        if self.renderer == "fast":  # once per frame
            index, band = AnchorIndex(encoding.anchors[0], self.field.neighbours), self.surface_band(posed, encoding)
        parts = [self.render_rays(sample["rays_o"], directions[s:s + chunk], near[s:s + chunk], far[s:s + chunk],
                                  posed, encoding, background, stratified=stratified, generator=generator,
                                  anchor_index=index, band=band)
                 for s in range(0, directions.shape[0], chunk)]
        for name in outputs:
            if parts:
                outputs[name] = outputs[name].index_put((mask,), torch.cat([p[name] for p in parts]))
        for name, empty in (("occupancy", (0,)), ("points", (0, 3))):  # for the 3D occupancy loss
            outputs[name] = torch.cat([p[name] for p in parts]) if parts else background.new_zeros(empty)
        if parts and "in_box" in parts[0]:
            outputs["in_box"] = torch.cat([p["in_box"] for p in parts])
        outputs["posed"] = posed
        return outputs
