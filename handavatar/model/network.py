"""The hand avatar (reference §4.2-4.3): MANO-HD deformed and posed for a frame, PairOF's occupancy as opacity, the
albedo field and SelF's shading at every ray sample, composited front to back.

    avatar = HandAvatar(mano_hd, pairof)                 # MANO-HD with its skinning weights, a (pretrained) field
    out = avatar.render(sample)                          # a dataset sample (handavatar.data), one frame
    out["rgb"], out["alpha"], out["albedo"], out["shading"], out["depth"]      # (P, h, w, C) pixel grids

Each branch can be switched off for ablations: without the deformer the template is used as is; without SelF the
shading is 1 (colour = albedo).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smplx import MANO, MANOOutput
from pairof import PairOF, PairOFEncoding
from handavatar.model.albedo import AlbedoField, blend_anchors
from handavatar.model.deformer import Deformer
from handavatar.model.embedder import positional_encoding
from handavatar.model.shading import SelF
from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.volume import composite, sample_depths

__all__ = ["HandAvatar"]


class HandAvatar(nn.Module):
    """The avatar's model.

    Args:
        hand: the MANO-HD layer (center_id 4, scale 10, seal, distal), carrying the skinning weights the field was
            built for; its parameters are buffers and stay fixed.
        field: PairOF for that layer. Its part and pair encoders are frozen; its decoder trains.
        deformer: use the pose-conditioned template offsets.
        shading: use SelF (otherwise shading = 1).
        code_dim: albedo code width; anchor_levels: positional-encoding frequencies of the anchor positions.
        samples: samples per ray.
        sampling: 'box': evenly between near and far, where the ray crosses the posed hand's 3D box (published);
            'parts': evenly over the stretches of the ray inside the posed part boxes, the only places with
            non-zero occupancy (the same samples budget, all where the hand can be).
    """

    def __init__(self, hand: MANO, field: PairOF, *, deformer: bool = True, shading: bool = True,
                 code_dim: int = 128, anchor_levels: int = 3, samples: int = 64, sampling: str = "box"):
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
        self.shading = SelF(anchor_dim=self.anchor_embedding.shape[1]) if shading else None
        if sampling not in ("box", "parts"):
            raise ValueError(f"sampling {sampling!r} is not 'box' or 'parts'")
        self.samples, self.sampling = samples, sampling

    def pose(self, global_orient: Tensor, hand_pose: Tensor) -> MANOOutput:
        """The posed MANO-HD of (B, 3) camera-frame global rotations and (B, 45) hand poses (betas are zero: the
        identity shape comes from the deformer, as the published code)."""
        shaped = self.deformer(hand_pose) if self.deformer is not None else None
        return self.hand(global_orient=global_orient, hand_pose=hand_pose, shaped_verts=shaped)

    def render_rays(self, origin: Tensor, directions: Tensor, near: Tensor, far: Tensor, posed: MANOOutput,
                    encoding: PairOFEncoding, background: Tensor, *, stratified: bool = False,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Render R rays of one posed hand.

        Args:
            origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1. near, far: (R,) depths.
            posed: the posed hand (B = 1); encoding: the field's encoding of it.
            background: (3,) colour behind the hand.
            stratified: jitter the samples (training).

        Returns:
            'rgb', 'albedo' (R, 3) with the background behind; 'shading' (R, 1) and 'depth' (R, 1) weighted sums;
            'alpha' (R,) accumulated opacity; 'occupancy' (R, S) and 'points' (R, S, 3) of the samples.
        """
        rays = directions.shape[0]
        if self.sampling == "parts":
            enter, leave = part_box_intervals(origin, directions, encoding.rotations[0], encoding.joints[0],
                                              encoding.box_centre[0], encoding.box_half[0])
            z, _ = sample_in_intervals(enter, leave, self.samples, stratified=stratified, generator=generator)
        else:
            z = sample_depths(near, far, self.samples, stratified=stratified, generator=generator)  # (R, S)
        points = origin + z[..., None] * directions[:, None]
        out = self.field.query(points.reshape(1, -1, 3), encoding, intermediate=True, anchors=False)
        occupancy = out.occupancy.view(rays, self.samples)
        # albedo and shading only where the opacity is not zero: elsewhere their compositing weight is exactly 0
        active = occupancy > 0
        dists, ids = self.field.nearest_anchors(points[active][None], encoding)
        albedo = occupancy.new_zeros(rays, self.samples, 3).index_put((active,), self.albedo(dists[0], ids[0]))
        if self.shading is not None:
            embedding = blend_anchors(self.anchor_embedding, dists[0], ids[0])
            soft = out.soft_part_occupancy[0].transpose(0, 1).reshape(rays, self.samples, -1)
            occlusion = SelF.occlusion(soft)[active]  # running maximum along the whole ray, then the active samples
            shading = occupancy.new_zeros(rays, self.samples, 1).index_put(
                (active,), self.shading(occlusion, embedding, posed.full_pose[0]))
        else:
            shading = torch.ones_like(albedo[..., :1])
        result = composite(occupancy, {"rgb": albedo * shading, "albedo": albedo, "shading": shading,
                                       "depth": z[..., None]}, background)
        result.update(occupancy=occupancy, points=points)
        return result

    def render(self, sample: dict, *, stratified: bool = False, chunk: int = 4096,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Render a dataset sample (handavatar.data; one frame, unbatched tensors).

        Only pixels whose ray meets the hand's 3D box (`ray_mask`) are rendered, in chunks of rays; the rest get the
        background (alpha 0).

        Returns:
            'rgb', 'albedo' (P, h, w, 3); 'shading', 'depth' (P, h, w, 1); 'alpha' (P, h, w); 'occupancy' (N, S)
            and 'points' (N, S, 3) of the N rendered rays' samples; and 'posed'.
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
        parts = [self.render_rays(sample["rays_o"], directions[s:s + chunk], near[s:s + chunk], far[s:s + chunk],
                                  posed, encoding, background, stratified=stratified, generator=generator)
                 for s in range(0, directions.shape[0], chunk)]
        for name in outputs:
            if parts:
                outputs[name] = outputs[name].index_put((mask,), torch.cat([p[name] for p in parts]))
        for name in ("occupancy", "points"):  # of the rendered rays' samples, for the 3D occupancy loss
            outputs[name] = torch.cat([p[name] for p in parts]) if parts else torch.zeros(0, self.samples)
        outputs["posed"] = posed
        return outputs
