"""The avatar's configuration: one typed dataclass per section of `configs/default.yaml`, which holds every key with
its default (the comment after each field is the YAML's). Entry points read the defaults, then an experiment YAML,
then `key.sub=value` overrides, and validate the merged tree into `AvatarConfig` once (`smplx.utils.config`); an
unknown or misspelled key is an error naming the nearest valid one.

`fidelity: published` (the umbrella of docs/fidelity.md's tables) sets every key of `PUBLISHED` to its published
value; an experiment file or override that sets one of them otherwise is an error naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from smplx.utils.config import Count, Fraction, NonNegInt, NonNegative, Positive, Range, Umbrella
from handavatar.data.dataset import DataConfig

__all__ = ["AvatarConfig", "DEFAULTS", "PUBLISHED", "data_config", "DataSection", "PatchSection", "SmplSection",
           "NetworkSection", "LossWeights", "TrainSection", "ValSection", "LpipsSection", "RenderSection", "RunSection"]

DEFAULTS = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"

# fidelity: published. One entry per row of docs/fidelity.md's two tables that has a published value: the key that
# switches a deviation or an option of ours, and the published code's value (the tables say why and the effect).
PUBLISHED: dict[str, object] = {
    "data.eval_order": "published",  # every eval_skip-th frame in data.json's annotation order
    "data.target": "composite",  # the warped composite, blended at the outline
    "render.band": 0.0,  # with tolerance 0: the fast renderer's losses are the reference renderer's
    "render.tolerance": 0.0,
    "train.decay_iters": 0,  # the learning rates fall 10x over decay_epochs x the training images
    "sampling": "box",  # near..far of the hand's 3D box
    "precision": "float32",
    "network.albedo_at": "samples",  # the albedo at every ray sample, composited
    "network.shading_at": "samples",  # SelF at every ray sample, composited
    "network.shading_normal": False,
    "network.lights": 0,  # SelF, not learned lights
    "train.ema": 0.0,
    "train.sil_mask": "square",
    "train.refine_pose": "none",
    "val.refine_steps": 0,
}


@dataclass
class DataSection:
    root: str  # dataset root: data/InterHand/5, or a synthetic capture
    subject: str  # training subject '<split>/Capture<N>/<sequence>[/cam<id>]'
    eval_subject: str  # validation subject (phase: val)
    eval_skip: Count  # validate every eval_skip-th frame of it (published: 200; 160 for val_cap0)
    # the order eval_skip counts frames in: published (data.json's annotation order, as the published loader) or
    # sorted by (frame, camera); the two give the same frames when data.json lists frames in that order
    eval_order: Literal["published", "sorted"]
    hand: Literal["right", "left"]  # right or left
    # targets off the thresholded warped mask: masked (exactly the background, ours) or composite (the warped
    # composite as it is, blended at the outline: published)
    target: Literal["masked", "composite"]
    resolution: Count  # crop size, px
    crop_scale: Positive  # crop side / hand box side
    bbox_offset: NonNegative  # margin of the posed mesh's 3D box, dm
    box_padding: NonNegative  # further margin for the rays' near/far, dm
    skip: Count  # keep every skip-th frame
    max_frames: Annotated[int, Range(ge=-1)]  # at most this many frames (-1: all)


@dataclass
class PatchSection:
    N_patches: Count  # patches per image
    size: Count  # patch side, px
    sample_subject_ratio: Fraction  # chance that a patch is centred on the hand


@dataclass
class SmplSection:
    model_path: str  # MANO file or folder (without MANO: the open hand), or open_hand
    levels: NonNegInt  # MANO-HD subdivision levels
    lbs_weights: str  # MANO-HD skinning weights (scripts/train_lbs.sh); '': the averaged MANO-HD weights
    pairof: str  # the pretrained PairOF checkpoint (scripts/train_pairof.sh)


@dataclass
class NetworkSection:
    deformer: bool  # pose-conditioned template offsets
    shading: bool  # SelF (false: colour = albedo)
    shading_normal: bool  # SelF also sees the posed surface normal, camera frame (not in the paper)
    code_dim: Count  # albedo code per anchor
    anchor_levels: NonNegInt  # positional-encoding frequencies of the anchor positions
    # samples: the albedo at every ray sample, composited (published); surface: once per ray, at its expected
    # surface point (compositing-weighted depth), times the composited shading; plane: as surface, the point moved
    # along its ray onto the plane of its nearest posed anchor's face; mesh: as surface, from a texture on MANO-HD's
    # vertices, interpolated where the ray meets the posed mesh (not in the paper)
    albedo_at: Literal["samples", "surface", "plane", "mesh"]
    # albedo_at mesh: the texture's first colours: the training images unprojected onto the posed meshes (the
    # textured-mesh baseline's per-vertex colours), or grey
    texture_init: Literal["images", "grey"]
    # samples: SelF at every ray sample, composited (published); surface: once per ray, at its expected surface point,
    # seeing the visibility of shadow rays traced on the posed mesh instead of the part occupancies along the camera
    # ray (not in the paper; needs albedo_at surface, plane or mesh)
    shading_at: Literal["samples", "surface"]
    shadow_rays: Count  # shading_at surface: shadow-ray directions (a Fibonacci sphere in the model frame)
    # shading_at surface: 0: SelF; K > 0: instead of SelF, K learned directional lights with shadow rays traced on the
    # posed mesh, ambient occlusion and a learned response (not in the paper)
    lights: NonNegInt


@dataclass
class LossWeights:
    lpips: NonNegative  # LPIPS of the patches (the lpips section's metric; ST-LPIPS: patch.size >= 24)
    l1: NonNegative  # mean |rendered - target| over the patches
    sil: NonNegative  # point silhouette of the posed hand against the dilated mask (IoU)
    iou3d: NonNegative  # occupancy at the ray samples against the inside test of the posed mesh (MSE)


@dataclass
class TrainSection:
    lr: Positive  # Adam learning rate of the albedo MLP and the deformer
    lr_codes: NonNegative  # of the albedo codebook (one code per anchor; each sees few rays per image)
    lr_shading: NonNegative  # of SelF (its sigmoid starts near 1, where gradients are small)
    lr_pairof: NonNegative  # of PairOF's decoder (its encoders stay frozen)
    decay_iters: NonNegInt  # the learning rates fall 10x over this many images (0: decay_epochs x images)
    decay_epochs: Positive  # with decay_iters 0: epochs of the training subject (published 50, 40, 30)
    accum_iter: Count  # images per optimiser step (gradients accumulated)
    maxiter: NonNegInt  # iterations (images per process) to train (0: until the decay is complete)
    # also stop once training has taken this many seconds (resumes counted; 0: no limit), at the end of an
    # optimiser step, saving latest.tar
    max_seconds: NonNegative
    lossweights: LossWeights
    log_every: Count  # iterations between TensorBoard scalars
    save_every: Count  # iterations between latest.tar checkpoints
    progress_every: NonNegInt  # iterations between progress renders and metrics in TensorBoard (0: never)
    progress_frames: Count  # evaluation frames rendered for them
    # keep an exponential moving average of the weights with this decay per optimiser
    ema: Annotated[float, Range(ge=0, lt=1)]
    sil_mask: Literal["square", "disc"]  # the silhouette loss dilates the mask by a square (published) or a disc, which
    # learn a correction of each training frame's pose with the avatar (not in the paper; handavatar.model.pose_refine):
    # none, rigid (global rotation and translation) or full (and the finger joints)
    refine_pose: Literal["none", "rigid", "full"]
    lr_pose: NonNegative  # Adam learning rate of the pose corrections (radians, dm)
    pose_prior: NonNegative  # weight of the squared norm of a frame's correction (an L2 prior toward the fit)


@dataclass
class ValSection:
    # phase val: Adam steps of pose refinement per held-out frame against its image, the avatar frozen, before its
    # metrics are measured again (0: none; not in the paper); the unrefined metrics are reported too
    refine_steps: NonNegInt
    refine_fingers: bool  # refine the finger joints too (else global rotation and translation only)
    refine_lr: Positive  # Adam learning rate of the refinement (radians, dm)
    refine_prior: NonNegative  # weight of the squared norm of the correction (an L2 prior toward the fit)


@dataclass
class LpipsSection:
    vgg: str  # torchvision's VGG16 ImageNet checkpoint (vgg16-397923af.pth) for LPIPS-VGG
    heads: str  # with the lpips package's v0.1 linear heads (weights/v0.1/vgg.pth)


@dataclass
class RenderSection:
    # fast (skips what cannot change the picture), or reference (naive, published)
    renderer: Literal["fast", "reference"]
    group: Count  # fast: samples per ray marched at once
    # fast: stop a ray once its transmittance is below this (0: never): a pixel moves
    tolerance: Annotated[float, Range(ge=0, lt=1)]
    # fast: evaluate only near the posed surface: within this distance (dm) of a posed
    band: Annotated[float | Literal["auto"], Range(ge=0)]
    band_margin: NonNegative  # auto: margin added to each anchor's measured reach, dm
    band_min: NonNegative  # auto: at least this, dm
    band_training: NonNegative  # auto while training (the weights change at every step), dm


@dataclass
class RunSection:
    # test, freeview, freepose, tpose or movement; outputs in <checkpoint dir>/<mode>/
    mode: Literal["test", "freeview", "freepose", "tpose", "movement"]
    ckpt: str  # checkpoint to render ('': <out_root>/<experiment>/latest.tar)
    frame_idx: NonNegInt  # frame of data.subject (its usable frames, no skip) giving camera and pose
    axis: Literal["x", "y", "z"]  # freeview orbit axis in the model frame: x, y (the frame camera's image down) or z
    views: Count  # freeview (and tpose_orbit) views around the full circle
    frames: Count  # freepose frames, from the ranges' starts to their ends
    # freepose, published table: per MANO joint [x, y, z] ranges [from, to], degrees
    joint_rot: dict[str, list[list[float]]]
    tpose_orbit: bool  # tpose: orbit like freeview (true) or only the frame camera (false)
    motion_subject: str  # movement: driving subject '<split>/Capture<N>/<sequence>[/cam<id>]'
    motion_root: str  # movement: dataset root of motion_subject ('': data.root)
    motion_file: str  # movement: .npz or .json of poses instead (see README); one of the two is set
    # movement: global rotation of the driving sequence (motion) or of frame_idx (frame)
    motion_orient: Literal["motion", "frame"]
    motion_skip: Count  # movement: use every motion_skip-th driving frame
    # image of frames and videos: rgb, albedo (shading off) or shading (shading only)
    layer: Literal["rgb", "albedo", "shading"]
    save_layers: bool  # also write albedo/ and shading/ PNGs of every frame
    export_mesh: bool  # write the PairOF surface and the posed MANO-HD mesh of every frame (model frame)
    mesh_format: Literal["obj", "ply"]  # obj or ply
    mesh_resolution: Annotated[int, Range(ge=2)]  # marching-cubes grid points per axis of the PairOF surface
    resolution: NonNegInt  # image side, px (0: data.resolution)
    fps: Count  # frames per second of the MP4 and GIF


@dataclass
class AvatarConfig:
    UMBRELLA: ClassVar[Umbrella] = Umbrella("fidelity", {"published": PUBLISHED, "ours": {}})

    experiment: str  # run name: outputs in <out_root>/<experiment>/
    # published: every key of PUBLISHED takes its published value (setting one otherwise is an error); ours: as set
    fidelity: Literal["published", "ours"]
    out_root: str  # where experiments are written
    phase: Literal["train", "val"]  # train, or val: render the evaluation subject and report the metrics
    resume: bool  # continue from latest.tar when the run folder has one
    device: Literal["auto", "cpu", "cuda"]  # auto (CUDA when present), cpu or cuda
    seed: int  # model initialisation, patches, backgrounds, ray jitter
    N_samples: Count  # samples per ray
    # rays rendered at once (auto: 4,096 on the CPU, 65,536 on CUDA)
    chunk: Annotated[int | Literal["auto"], Range(ge=1)]
    sampling: Literal["box", "parts"]  # box: near..far of the hand's 3D box (published); parts: inside the part boxes
    render: RenderSection  # the renderer's options
    precision: Literal["float32", "bfloat16"]  # float32, or bfloat16 (PairOF's networks under autocast)
    data: DataSection  # the training and validation subjects, crops and boxes
    patch: PatchSection  # the patches drawn from each training image
    smpl_cfg: SmplSection  # the hand model, its skinning weights and the pretrained PairOF
    network: NetworkSection  # the avatar's networks
    train: TrainSection  # learning rates, schedule, loss weights, logging
    val: ValSection  # phase val: held-out pose refinement
    lpips: LpipsSection  # the perceptual loss and metric (handavatar/lpips.py); both empty: ST-LPIPS
    run: RunSection  # free-pose animation and rendering (scripts/run_hand.sh; python -m handavatar.run)


def data_config(config: AvatarConfig, split: Literal["train", "eval"], **changes) -> DataConfig:
    """The dataset settings of a run, in one place: 'train', the training subject's patches as the trainer draws them
    (`data.skip`, `data.max_frames`, random backgrounds); 'eval', the evaluation subject's whole crops on black, every
    `data.eval_skip`-th frame in `data.eval_order` (the paper protocol). `changes` replace fields of the result (e.g.
    mode='image', background='black' for the training frames as whole crops)."""
    d, p = config.data, config.patch
    common = dict(root=d.root, hand=d.hand, model=config.smpl_cfg.model_path, resolution=d.resolution,
                  crop_scale=d.crop_scale, bbox_offset=d.bbox_offset, box_padding=d.box_padding,
                  max_frames=d.max_frames, target=d.target)
    if split == "train":
        settings = DataConfig(subject=d.subject, mode="patch", n_patches=p.N_patches, patch_size=p.size,
                              sample_subject_ratio=p.sample_subject_ratio, background="random", skip=d.skip, **common)
    elif split == "eval":
        settings = DataConfig(subject=d.eval_subject, mode="image", background="black", skip=d.eval_skip,
                              order=d.eval_order, **common)
    else:
        raise ValueError(f"split {split!r} is not 'train' or 'eval'")
    return replace(settings, **changes)
