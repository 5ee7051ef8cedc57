"""The hand avatar (reference §4.2-4.3): MANO-HD deformed and posed for a frame, PairOF's occupancy as opacity, the
albedo field and SelF's shading at every ray sample, composited front to back.

    avatar = HandAvatar(mano_hd, pairof)                 # MANO-HD with its skinning weights, a (pretrained) field
    out = avatar.render(sample)                          # a dataset sample (handavatar.data), one frame
    out["rgb"], out["alpha"], out["albedo"], out["shading"], out["depth"]      # (P, h, w, C) pixel grids

Each branch can be switched off for ablations: without the deformer the template is used as is; without SelF the
shading is 1 (colour = albedo).

Two renderers draw the same samples: 'reference', the naive published one (every sample, every part pair, every
anchor), and 'fast' (the default), which leaves out the work that cannot change the picture (see `_march`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smplx import MANO, MANOOutput
from smplx.joint_names import NUM_JOINTS
from pairof import PairOF, PairOFEncoding
from handavatar.model.albedo import AlbedoField, blend_anchors
from handavatar.model.deformer import Deformer
from handavatar.model.embedder import positional_encoding
from handavatar.model.shading import SelF
from handavatar.render.anchors import AnchorIndex
from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.volume import composite, sample_depths

__all__ = ["HandAvatar", "RENDERERS"]

RENDERERS = ("fast", "reference")


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
        samples: samples per ray.
        sampling: 'box': evenly between near and far, where the ray crosses the posed hand's 3D box (published);
            'parts': evenly over the stretches of the ray inside the posed part boxes, the only places with
            non-zero occupancy (the same samples budget, all where the hand can be).
        renderer: 'fast' (`_march`: skips what cannot change the picture) or 'reference' (`_render_reference`:
            the naive published renderer); both draw the same samples.
        group: samples per ray marched at once by the fast renderer.
        tolerance: the fast renderer stops a ray once its transmittance is below this (0: never).
        band: the fast renderer evaluates only samples within this distance (dm) of the posed surface anchors (0:
            everywhere in the part boxes, exactly as the reference).
    """

    def __init__(self, hand: MANO, field: PairOF, *, deformer: bool = True, shading: bool = True,
                 shading_normal: bool = False, code_dim: int = 128, anchor_levels: int = 3, samples: int = 64,
                 sampling: str = "box", renderer: str = "fast", group: int = 8, tolerance: float = 1e-3,
                 band: float = 0.0):
        super().__init__()
        self.hand = hand.requires_grad_(False)
        self.field = field
        for encoder in (field.part_encoder, field.local_encoder):
            encoder.requires_grad_(False)
        self.deformer = Deformer(hand.v_template, hand.j_regressor[4]) if deformer else None
        anchors = field.anchor_faces.shape[0]
        self.albedo = AlbedoField(anchors=anchors, code_dim=code_dim)
        # the published anchor embedding: gamma_L(10 x canonical anchor relative to joint 4), i.e. of decimetres
        self.register_buffer("anchor_embedding", positional_encoding(10 * field.anchor_canonical, anchor_levels))
        self.shading = SelF(anchor_dim=self.anchor_embedding.shape[1], normal=shading_normal) if shading else None
        if sampling not in ("box", "parts"):
            raise ValueError(f"sampling {sampling!r} is not 'box' or 'parts'")
        if renderer not in RENDERERS:
            raise ValueError(f"renderer {renderer!r} is not one of {RENDERERS}")
        self.samples, self.sampling = samples, sampling
        self.renderer, self.group, self.tolerance, self.band = renderer, group, tolerance, band

    def pose(self, global_orient: Tensor, hand_pose: Tensor) -> MANOOutput:
        """The posed MANO-HD of (B, 3) camera-frame global rotations and (B, 45) hand poses (betas are zero: the
        identity shape comes from the deformer, as the published code)."""
        shaped = self.deformer(hand_pose) if self.deformer is not None else None
        return self.hand(global_orient=global_orient, hand_pose=hand_pose, shaped_verts=shaped)

    def render_rays(self, origin: Tensor, directions: Tensor, near: Tensor, far: Tensor, posed: MANOOutput,
                    encoding: PairOFEncoding, background: Tensor, *, stratified: bool = False,
                    generator: torch.Generator | None = None, anchor_index: AnchorIndex | None = None
                    ) -> dict[str, Tensor]:
        """Render R rays of one posed hand with the avatar's renderer.

        Args:
            origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1. near, far: (R,) depths.
            posed: the posed hand (B = 1); encoding: the field's encoding of it.
            background: (3,) colour behind the hand.
            stratified: jitter the samples (training).
            anchor_index: the pose's nearest-anchor index (fast renderer; built here when omitted).

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
        return self._march(origin, directions, z, (leave > enter).any(1), posed, encoding, background, anchor_index)

    def anchor_normals(self, posed: MANOOutput) -> Tensor | None:
        """(A, 3) unit normals of the faces the posed anchors lie on (model frame, which is oriented as the camera),
        detached (shading never pushes on the geometry); None when SelF does not use them."""
        if self.shading is None or not self.shading.normal:
            return None
        corners = posed.vertices[0].detach()[self.field.faces[self.field.anchor_faces]]  # (A, 3, 3)
        return torch.nn.functional.normalize(torch.linalg.cross(corners[:, 1] - corners[:, 0],
                                                                corners[:, 2] - corners[:, 0], dim=-1), dim=-1)

    def appearance(self, anchor_dists: Tensor, anchor_ids: Tensor, occlusion: Tensor, pose: Tensor,
                   normals: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Albedo (N, 3) and shading (N, 1) of N samples from their (N, k) nearest posed anchors, their (N, 16)
        SelF occlusion (running maximum of the soft part occupancies along the ray), the (48,) pose and the pose's
        (A, 3) `anchor_normals`."""
        albedo = self.albedo(anchor_dists, anchor_ids)
        if self.shading is None:
            return albedo, torch.ones_like(albedo[:, :1])
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
        albedo, shading = albedo.view(rays, samples, 3), shading.view(rays, samples, 1)
        result = composite(occupancy, {"rgb": albedo * shading, "albedo": albedo, "shading": shading,
                                       "depth": z[..., None]}, background)
        return {**result, "occupancy": occupancy.reshape(-1), "points": points[0]}

    def _march(self, origin: Tensor, directions: Tensor, z: Tensor, crosses: Tensor, posed: MANOOutput,
               encoding: PairOFEncoding, background: Tensor, anchor_index: AnchorIndex) -> dict[str, Tensor]:
        """The fast renderer: the same samples and the same picture as `_render_reference`, with the work that
        cannot change it left out.

        - Rays that cross no part box stay background: the network is never asked about them.
        - Samples outside every part box have occupancy and soft part occupancies exactly 0 (no opacity, no
          contribution to SelF's running maximum): they are not evaluated.
        - Inside, only the pairs whose boxes hold the point are evaluated (PairOF's sparse query).
        - With `band` > 0, only samples within `band` of a posed surface anchor are evaluated: the rest of space is
          taken as empty (an approximation: the reference evaluates the whole part boxes).
        - Rays are marched `group` samples at a time; a ray stops once its transmittance falls below tolerance / 2,
          and albedo and shading are evaluated only at samples whose compositing weight is at least
          tolerance / (2 S) (with tolerance 0: wherever it is not zero). Together these change the composited
          rgb, albedo, shading and alpha of a ray by less than `tolerance`.
        """
        rays, samples = z.shape
        alive = crosses.nonzero()[:, 0]  # (R,) crosses: the ray crosses some part box
        passed = z.new_ones(alive.shape[0])  # transmittance of the alive rays
        carried = z.new_zeros(alive.shape[0], NUM_JOINTS)  # SelF's running maximum so far
        totals = {name: z.new_zeros(rays, width) for name, width in (("rgb", 3), ("albedo", 3), ("shading", 1),
                                                                     ("depth", 1), ("alpha", 1))}
        evaluated_points, evaluated_occupancy = [z.new_zeros(0, 3)], [z.new_zeros(0)]
        pose, normals = posed.full_pose[0], self.anchor_normals(posed)
        for start in range(0, samples, self.group):
            if alive.numel() == 0:
                break
            depth = z[alive, start:start + self.group]  # (r, g)
            points = origin + depth[..., None] * directions[alive, None]
            local, in_part = self.field.part_boxes(points.reshape(1, -1, 3), encoding)
            inside = in_part[0].any(0).view(depth.shape)
            if self.band > 0:
                inside[inside.clone()] = anchor_index.near(points[inside], self.band).to(inside.device)
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
            albedo = depth.new_zeros(*depth.shape, 3)
            shading = depth.new_zeros(*depth.shape, 1)
            if active.any():
                dists, ids = anchor_index.query(points[active])
                a, s = self.appearance(dists, ids, occlusion[active], pose, normals)
                albedo, shading = albedo.index_put((active,), a), shading.index_put((active,), s)
            weights = part["weights"][..., None]
            part.update(rgb=(weights * albedo * shading).sum(1), albedo=(weights * albedo).sum(1),
                        shading=(weights * shading).sum(1), alpha=part["alpha"][:, None])
            totals = {name: value.index_add(0, alive, part[name]) for name, value in totals.items()}
            keep = part["transmittance"] >= self.tolerance / 2
            alive, passed, carried = alive[keep], part["transmittance"][keep], occlusion[keep, -1]
        alpha = totals.pop("alpha")[:, 0]
        totals["rgb"] = totals["rgb"] + (1 - alpha)[:, None] * background
        totals["albedo"] = totals["albedo"] + (1 - alpha)[:, None] * background
        return {**totals, "alpha": alpha, "occupancy": torch.cat(evaluated_occupancy),
                "points": torch.cat(evaluated_points)}

    def forward(self, sample: dict, **options) -> dict[str, Tensor]:
        """`render` (the module's forward, so that DistributedDataParallel can wrap the avatar)."""
        return self.render(sample, **options)

    def render(self, sample: dict, *, stratified: bool = False, chunk: int = 4096,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Render a dataset sample (handavatar.data; one frame, unbatched tensors).

        Only pixels whose ray meets the hand's 3D box (`ray_mask`) are rendered, in chunks of rays; the rest get the
        background (alpha 0).

        Returns:
            'rgb', 'albedo' (P, h, w, 3); 'shading', 'depth' (P, h, w, 1); 'alpha' (P, h, w); 'occupancy' (N,)
            and 'points' (N, 3) of the N samples the renderer evaluated (see `render_rays`); and 'posed'.
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
        index = AnchorIndex(encoding.anchors[0], self.field.neighbours) if self.renderer == "fast" else None
        parts = [self.render_rays(sample["rays_o"], directions[s:s + chunk], near[s:s + chunk], far[s:s + chunk],
                                  posed, encoding, background, stratified=stratified, generator=generator,
                                  anchor_index=index)
                 for s in range(0, directions.shape[0], chunk)]
        for name in outputs:
            if parts:
                outputs[name] = outputs[name].index_put((mask,), torch.cat([p[name] for p in parts]))
        for name, empty in (("occupancy", (0,)), ("points", (0, 3))):  # for the 3D occupancy loss
            outputs[name] = torch.cat([p[name] for p in parts]) if parts else background.new_zeros(empty)
        outputs["posed"] = posed
        return outputs
