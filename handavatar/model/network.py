"""The hand avatar (reference §4.2-4.3): MANO-HD deformed and posed for a frame, PairOF's occupancy as opacity, the
albedo field and SelF's shading at every ray sample, composited front to back.

    avatar = HandAvatar(mano_hd, pairof)                 # MANO-HD with its skinning weights, a (pretrained) field
    out = avatar.render(sample)                          # a dataset sample (handavatar.data), one frame
    out["rgb"], out["alpha"], out["albedo"], out["shading"], out["depth"]      # (P, h, w, C) pixel grids

Each branch can be switched off for ablations: without the deformer the template is used as is; without SelF the
shading is 1 (colour = albedo). With `albedo_at='surface'` (not in the paper) the albedo is looked up once per ray,
at its expected surface point, instead of at every sample (`handavatar.render.surface`); with `albedo_at='mesh'`,
in a texture on MANO-HD's vertices where the ray meets the posed mesh (`handavatar.model.texture`). With
`shading_at='surface'` (not in the paper) SelF too runs once per ray, at that point, and sees the visibility of
shadow rays traced on the posed mesh instead of the part occupancies along the camera ray
(`handavatar.render.shadows`); with `lights=K` (not in the paper) an explicit model of K learned directional lights,
their cast shadows and the ambient occlusion there replaces SelF (`handavatar.model.shading.LightShading`).

The renderers live in `handavatar.render` and see the avatar through `pose_field` (callables over its networks);
its `options` (a `RenderOptions`: renderer, samples, sampling, band, ...) choose how it is drawn, and
`render(sample, options=...)` draws it otherwise for one call.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from smplx import MANO, MANOOutput
from smplx.mesh import smoothed_vertex_normals
from smplx.joint_names import NUM_JOINTS
from smplx.utils.raycast import EmbreeMesh
from pairof import PairOF, PairOFEncoding
from handavatar.model.albedo import AlbedoField, blend_anchors
from handavatar.model.deformer import Deformer
from handavatar.model.embedder import positional_encoding
from handavatar.model.shading import LightShading, SelF
from handavatar.model.texture import VertexTexture
from handavatar.render.anchors import AnchorIndex
from handavatar.render.band import BandCache, measure_band
from handavatar.render.field import PartBoxes, PoseField
from handavatar.render.options import RenderOptions
from handavatar.render.rays import render_rays
from handavatar.render.shadows import interpolated_visibility, mesh_points, sphere_directions, visibility
from handavatar.render.surface import mesh_lookup, onto_anchor_planes

__all__ = ["HandAvatar", "ALBEDO_AT", "SHADING_AT"]

ALBEDO_AT = ("samples", "surface", "plane", "mesh")
SHADING_AT = ("samples", "surface")


def _blended_normal(normals: Tensor | None, anchor_dists: Tensor, anchor_ids: Tensor) -> Tensor | None:
    """(A, 3) anchor normals blended over (N, k) nearest anchors and normalised -> (N, 3); None stays None (SelF
    without normals)."""
    if normals is None:
        return None
    return torch.nn.functional.normalize(blend_anchors(normals, anchor_dists, anchor_ids), dim=-1)


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
        mesh_reach: albedo_at 'mesh' and shading_at 'surface': how far (dm) along the ray the mesh hit may lie from
            the expected surface point.
        shading_at: 'samples': SelF at every ray sample, composited (published); 'surface': SelF once per ray, at
            its expected surface point (needs an albedo_at other than 'samples'), its part-occupancy input replaced
            by the visibility of `shadow_rays` directions (`sphere_directions`) from the posed mesh's vertices
            around the point (`mesh_lookup`), interpolated (`interpolated_visibility`).
        lights: with shading_at 'surface', 0: SelF; K > 0: `LightShading` with K learned directional lights instead
            (at the point where the ray meets the posed mesh, its smooth normal, one shadow ray per light traced
            from there, and the ambient occlusion of the `shadow_rays` directions).
        options: how the avatar is rendered (renderer, samples per ray, sampling, the fast renderer's group,
            tolerance and band); `render` and `render_rays` take others for one call.
    """

    def __init__(self, hand: MANO, field: PairOF, *, deformer: bool = True, shading: bool = True,
                 shading_normal: bool = False, code_dim: int = 128, anchor_levels: int = 3,
                 albedo_at: str = "samples", mesh_reach: float = 0.05, shading_at: str = "samples",
                 shadow_rays: int = 64, lights: int = 0, options: RenderOptions = RenderOptions()):
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
        if albedo_at not in ALBEDO_AT:
            raise ValueError(f"albedo_at {albedo_at!r} is not one of {ALBEDO_AT}")
        if shading_at not in SHADING_AT:
            raise ValueError(f"shading_at {shading_at!r} is not one of {SHADING_AT}")
        if shading_at == "surface" and (albedo_at == "samples" or not shading):
            raise ValueError("shading_at 'surface' needs SelF (shading) and an albedo looked up once per ray "
                             "(albedo_at surface, plane or mesh)")
        if lights and (shading_at != "surface" or shading_normal):
            raise ValueError(f"lights={lights} (shading from learned lights instead of SelF) needs shading_at "
                             f"'surface' (got {shading_at!r}) and shading_normal false (got {shading_normal}): the "
                             "lights take the mesh's normals themselves")
        self.albedo_at, self.shading_at = albedo_at, shading_at
        parts = shadow_rays if shading_at == "surface" else NUM_JOINTS  # SelF's occlusion input: one per part
        if not shading:
            self.shading = None
        elif lights:
            self.shading = LightShading(lights)
        else:
            self.shading = SelF(parts, anchor_dim=self.anchor_embedding.shape[1], normal=shading_normal)
        self.register_buffer("shadow_directions", sphere_directions(shadow_rays), persistent=False)
        self.options = options
        self.bands = BandCache()  # band 'auto': the measured band of the current weights

    def pose(self, global_orient: Tensor, hand_pose: Tensor) -> MANOOutput:
        """The posed MANO-HD of (B, 3) camera-frame global rotations and (B, 45) hand poses (betas are zero: the
        identity shape comes from the deformer, as the published code)."""
        shaped = self.deformer(hand_pose) if self.deformer is not None else None
        return self.hand(global_orient=global_orient, hand_pose=hand_pose, shaped_verts=shaped)

    def render_rays(self, origin: Tensor, directions: Tensor, near: Tensor, far: Tensor, posed: MANOOutput,
                    encoding: PairOFEncoding, background: Tensor, *, stratified: bool = False,
                    generator: torch.Generator | None = None, anchor_index: AnchorIndex | None = None,
                    band: float | Tensor | None = None, options: RenderOptions | None = None,
                    world_rotation: Tensor | None = None) -> dict[str, Tensor]:
        """Render R rays of one posed hand (`handavatar.render.rays.render_rays` of its `pose_field`).

        Args:
            origin: (3,) ray origin, model frame (dm). directions: (R, 3), camera z = 1. near, far: (R,) depths.
            posed: the posed hand (B = 1); encoding: the field's encoding of it.
            background: (3,) colour behind the hand.
            stratified: jitter the samples (training).
            anchor_index: the pose's nearest-anchor index (fast renderer; built here when omitted).
            band: the pose's `surface_band` (fast renderer; found here when omitted).
            options: how to render (omitted: the avatar's `options`).
            world_rotation: (3, 3) the frame camera's world-to-camera rotation (`pose_field`).

        Returns:
            'rgb', 'albedo' (R, 3) with the background behind; 'shading' (R, 1) and 'depth' (R, 1) weighted sums;
            'alpha' (R,) accumulated opacity; 'occupancy' (N,) and 'points' (N, 3) of the N samples the renderer
            evaluated (reference: all R x S, ray-major; fast: those inside a part box before the ray stopped).
        """
        options = options or self.options
        if options.renderer == "fast" and band is None:
            band = self.surface_band(posed, encoding, options)
        return render_rays(origin, directions, near, far, self.pose_field(posed, encoding, world_rotation), background,
                           options, stratified=stratified, generator=generator, anchor_index=anchor_index, band=band)

    def pose_field(self, posed: MANOOutput, encoding: PairOFEncoding, world_rotation: Tensor | None = None
                   ) -> PoseField:
        """The posed hand as the renderers see it: PairOF's part boxes and occupancy, its anchors, and the
        appearance (albedo field or vertex texture, SelF or the lights) at them (`handavatar.render.field.PoseField`).
        `world_rotation`: (3, 3) the frame camera's world-to-camera rotation, which turns the learned lights (world
        frame) into the model frame (None: the identity)."""
        pose, normals = posed.full_pose[0], self.anchor_normals(posed)

        def part_boxes(points: Tensor) -> tuple[Tensor, Tensor]:
            local, inside = self.field.part_boxes(points[None], encoding)
            return local[0], inside[0]

        def occupancy(points: Tensor, boxes: tuple[Tensor, Tensor] | None, dense: bool) -> tuple[Tensor, Tensor]:
            out = self.field.query(points[None], encoding, intermediate=True, dense=dense, anchors=False,
                                   boxes=None if boxes is None else (boxes[0][None], boxes[1][None]))
            return out.occupancy[0], out.soft_part_occupancy[0].transpose(0, 1)

        def nearest_anchors(points: Tensor) -> tuple[Tensor, Tensor]:
            dists, ids = self.field.nearest_anchors(points[None], encoding)
            return dists[0], ids[0]

        def appearance(anchor_dists: Tensor, anchor_ids: Tensor, occlusion: Tensor) -> tuple[Tensor | None, Tensor]:
            return self.appearance(anchor_dists, anchor_ids, occlusion, pose, normals)

        def surface_albedo(origin: Tensor, points: Tensor, directions: Tensor, nearest) -> Tensor:
            return self.surface_albedo(origin, points, directions, nearest, posed, encoding.anchors[0],
                                       world_rotation=world_rotation)

        boxes = PartBoxes(encoding.rotations[0], encoding.joints[0], encoding.box_centre[0], encoding.box_half[0])
        return PoseField(boxes, encoding.anchors[0], self._anchor_face_normals(posed), self.field.neighbours,
                         part_boxes, occupancy, nearest_anchors, appearance,
                         surface_albedo if self.albedo_at != "samples" else None)

    def surface_band(self, posed: MANOOutput, encoding: PairOFEncoding, options: RenderOptions | None = None
                     ) -> float | Tensor:
        """The fast renderer's band for this pose: a distance (dm; 0: none), or with band 'auto' in eval mode (A,)
        distances, one per posed anchor: the largest of `measure_band` over the poses measured with the current
        weights, measuring this pose too when its finger joints differ by more than `band_pose_step` degrees from
        each of them (`handavatar.render.band.BandCache`)."""
        options = options or self.options
        if options.band != "auto":
            return options.band
        if self.training:
            return options.band_training
        key = tuple((p.data_ptr(), p._version) for p in self.parameters()) + (options.band_margin, options.band_min)
        return self.bands.get(key, posed.full_pose[0, 3:], options.band_pose_step,
                              lambda: self.measure_band(posed, encoding, options=options))

    @property
    def band_poses(self) -> int:
        """How many poses band 'auto' has measured (with the weights of its last measurement)."""
        return self.bands.poses

    def measure_band(self, posed: MANOOutput, encoding: PairOFEncoding, *, options: RenderOptions | None = None,
                     probes_per_anchor: int = 8) -> Tensor:
        """(A,) band 'auto' of this pose: `handavatar.render.band.measure_band` of the field, with the options'
        band_margin and band_min."""
        options = options or self.options
        boxes = PartBoxes(encoding.rotations[0], encoding.joints[0], encoding.box_centre[0], encoding.box_half[0])
        return measure_band(lambda points: self.field.query(points[None], encoding).occupancy[0],
                            encoding.anchors[0], self._anchor_face_normals(posed), boxes, posed.vertices[0],
                            self.field.faces, margin=options.band_margin, minimum=options.band_min,
                            probes_per_anchor=probes_per_anchor)

    def anchor_normals(self, posed: MANOOutput) -> Tensor | None:
        """(A, 3) unit normals of the faces the posed anchors lie on (model frame, which is oriented as the camera),
        detached (shading never pushes on the geometry); None when SelF does not use them."""
        if not isinstance(self.shading, SelF) or not self.shading.normal:
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
        (A, 3) `anchor_normals`. With albedo_at 'surface', 'plane' or 'mesh' the samples have no albedo (None): the
        renderers look it up once per ray (`surface_albedo`)."""
        albedo = self.albedo(anchor_dists, anchor_ids) if self.albedo_at == "samples" else None
        if self.shading is None or self.shading_at == "surface":  # 'surface': SelF runs in `surface_albedo`
            return albedo, anchor_dists.new_ones(anchor_dists.shape[0], 1)
        embedding = blend_anchors(self.anchor_embedding, anchor_dists, anchor_ids)
        return albedo, self.shading(occlusion, embedding, pose, _blended_normal(normals, anchor_dists, anchor_ids))

    def surface_albedo(self, origin: Tensor, points: Tensor, directions: Tensor, nearest, posed: MANOOutput,
                       anchors: Tensor, *, world_rotation: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """albedo_at 'surface', 'plane' or 'mesh': (H, 3) albedo of rays looked up once, at (H, 3) points on them
        (their expected surface points), model frame (dm); 'plane': moved onto their nearest anchor's face plane;
        'mesh': the texture where the ray from `origin` (3,) along `directions` (H, 3) meets the posed mesh.
        `nearest`: (H, 3) points -> their nearest posed anchors' distances and ids, (H, k) each; `anchors`: (A, 3)
        the posed anchors. With shading_at 'surface', also (H, 1) SelF's (or the lights') shading at the points;
        `world_rotation`: (3, 3) the frame camera's world-to-camera rotation, for the lights (None: the identity)."""
        lookup = scene = None
        vertices, faces = posed.vertices[0], self.hand.output_faces
        if self.albedo_at == "mesh" or self.shading_at == "surface":
            scene = EmbreeMesh(vertices.detach().cpu().double().numpy(), faces.cpu().numpy())  # once for all
        if self.albedo_at == "mesh" or isinstance(self.shading, SelF) and self.shading_at == "surface":
            lookup = mesh_lookup(origin, points, directions, vertices, faces, reach=self.mesh_reach, mesh=scene)
        shading = None
        if isinstance(self.shading, LightShading):
            light = self.shading
            # where the ray first meets the posed mesh, however far from the point (the nearest vertex only where it
            # misses the mesh): a nearest vertex elsewhere may lie on another finger or the hand's far side
            first = mesh_lookup(origin, points, directions, vertices, faces, reach=math.inf, mesh=scene)
            table = smoothed_vertex_normals(vertices.detach(), faces, light.smoothing)
            at, normals = mesh_points(vertices, faces, *first, towards=directions, lift=True, normals=table)
            sky = interpolated_visibility(vertices, faces, *first, self.shadow_directions, mesh=scene, normals=table,
                                          offset=light.offset)
            lit = visibility(vertices, faces, at, normals, light.light_directions(world_rotation).detach(), mesh=scene,
                             offset=light.offset)
            shading = self.shading(normals, sky, self.shadow_directions, lit, world_rotation)
        elif self.shading_at == "surface":
            dists, ids = (t.reshape(points.shape[0], -1) for t in nearest(points))
            visible = interpolated_visibility(vertices, faces, *lookup, self.shadow_directions, mesh=scene)
            shading = self.shading(visible, blend_anchors(self.anchor_embedding, dists, ids), posed.full_pose[0],
                                   _blended_normal(self.anchor_normals(posed), dists, ids))
        albedo = self._albedo_once(points, directions, nearest, posed, anchors, lookup)
        return albedo if shading is None else (albedo, shading)

    def _albedo_once(self, points: Tensor, directions: Tensor, nearest, posed: MANOOutput, anchors: Tensor,
                     lookup: tuple[Tensor, Tensor] | None) -> Tensor:
        if self.albedo_at == "mesh":
            return self.texture(*lookup)
        if self.albedo_at == "plane":
            first = nearest(points)[1].reshape(points.shape[0], -1)[:, 0]
            points = onto_anchor_planes(points, directions, anchors.detach()[first],
                                        self._anchor_face_normals(posed)[first])
        dists, ids = nearest(points)
        return self.albedo(dists.reshape(points.shape[0], -1), ids.reshape(points.shape[0], -1))

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

    def forward(self, sample: dict, *, stratified: bool = False, chunk: int | str = "auto",
                generator: torch.Generator | None = None, options: RenderOptions | None = None) -> dict[str, Tensor]:
        """`render` (the module's forward, so that DistributedDataParallel can wrap the avatar)."""
        return self.render(sample, stratified=stratified, chunk=chunk, generator=generator, options=options)

    def render(self, sample: dict, *, stratified: bool = False, chunk: int | str = "auto",
               generator: torch.Generator | None = None, options: RenderOptions | None = None) -> dict[str, Tensor]:
        """Render a dataset sample (handavatar.data; one frame, unbatched tensors).

        Only pixels whose ray meets the hand's 3D box (`ray_mask`) are rendered, in chunks of `chunk` rays ('auto':
        4,096 on the CPU; 65,536 on CUDA, where each chunk's kernel launches and synchronisations, not arithmetic,
        bound the time); the rest get the background (alpha 0). `options`: how to render (omitted: the avatar's
        `options`); the pose's field, band and nearest-anchor index are found once per frame. The sample's optional
        'world_rotation', the frame camera's (3, 3) world-to-camera rotation, places the learned lights (`network.
        lights`; the identity without it).

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
        options = options or self.options
        field, index, band = self.pose_field(posed, encoding, sample.get("world_rotation")), None, None
        if options.renderer == "fast":  # once per frame
            index = AnchorIndex(encoding.anchors[0], self.field.neighbours)
            band = self.surface_band(posed, encoding, options)
        parts = [render_rays(sample["rays_o"], directions[s:s + chunk], near[s:s + chunk], far[s:s + chunk], field,
                             background, options, stratified=stratified, generator=generator, anchor_index=index,
                             band=band)
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
