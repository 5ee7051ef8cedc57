"""Export a trained avatar as one binary glTF: the rig (rig.py), the baked albedo (bake.py), an animation clip of
a pose sequence and its pose-corrective morph targets (correctives.py), written by gltf.py.

    report = export_avatar(avatar, Path("avatar.glb"), poses=freepose_motion(avatar, config.run), texture=1024)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import trimesh

from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.config import load_config, resolve_device
from smplx.utils.fileio import atomic_write
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.export.bake import UVAtlas, bake_albedo, uv_atlas
from handavatar.export.correctives import Correctives, corrective_keys, pose_correctives
from handavatar.export.gltf import Clip, GlbMesh, glb_bytes
from handavatar.export.rig import (Rig, RigError, avatar_rig, dense_weights, local_rotations, pose_sequence_error,
                                   root_translation, truncate_weights)
from handavatar.model import HandAvatar
from handavatar.poses import Motion, freepose_angles, freepose_poses, load_motion_file

__all__ = ["BakedAvatar", "ExportReport", "bake_avatar", "clip_motion", "export_avatar", "load_export_avatar"]


@dataclass
class ExportReport:
    """What `export_avatar` wrote and measured."""

    path: Path
    size: int  # bytes
    seconds: float
    vertices: int  # atlas vertices in the file (the seams split some)
    faces: int
    frames: int
    texture: int  # texture side, px
    error: RigError  # the exported rig's vertex error over the clip's poses (without the correctives)
    correctives: Correctives  # the pose-corrective morph targets written (none: zero keys)
    corrective_seconds: float  # time spent finding them


def load_export_avatar(checkpoint: Path, config_file: Path | None, overrides: list[str]
                       ) -> tuple[HandAvatar, AvatarConfig, Path, int]:
    """The trained avatar of `checkpoint`, rebuilt from the config it was trained with (`config_file`, default
    config.yaml beside it) and `key.sub=value` overrides; with its config, path and iteration.

    Raises:
        FileNotFoundError: no checkpoint or no config. ValueError: not an avatar checkpoint, or one of another
            configuration (handavatar.run.load_avatar names the tensors and keys).
    """
    if not checkpoint.is_file():
        raise MissingFileError(f"--checkpoint {checkpoint} does not exist: train the avatar first "
                                "(scripts/train_hand.sh) or give the path of its latest.tar")
    config_file = config_file or checkpoint.parent / "config.yaml"
    if not config_file.is_file():
        raise MissingFileError(f"no config {config_file} beside the checkpoint: pass --config with the experiment "
                                "YAML the avatar was trained with")
    config = load_config(AvatarConfig, [DEFAULTS, config_file], [*overrides, f"run.ckpt={checkpoint}"])
    avatar, path, iteration = load_avatar(config, resolve_device(config.device))
    return avatar, config, path, iteration


def clip_motion(avatar: HandAvatar, motion: str, joint_rot: dict, frames: int) -> Motion:
    """The poses of the clip: 'freepose' (the run.joint_rot sweep over `frames` frames, wrist unturned: global
    rotation zero, so the hand faces the camera as in its model frame), or a motion file (poses.py; without
    'global_orient', the global rotation is zero).

    Raises:
        FileNotFoundError, ValueError: a missing or malformed motion file (poses.load_motion_file).
    """
    if motion == "freepose":
        orient, hand_pose = freepose_poses(freepose_angles(joint_rot, frames), avatar.hand.pose_frames(), np.zeros(3))
        return Motion(hand_pose=hand_pose, global_orient=orient, source="freepose")
    loaded = load_motion_file(motion)
    if loaded.global_orient is None:
        loaded = Motion(loaded.hand_pose, np.zeros((len(loaded), 3)), loaded.source)
    return loaded


def _texture_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok, "OpenCV failed to encode the texture as PNG"
    return data.tobytes()


@dataclass
class BakedAvatar:
    """The exported surface: the rig, its UV atlas, the 4 strongest weights and the albedo texture."""

    rig: Rig
    atlas: UVAtlas
    joint_ids: np.ndarray  # (V, 4) per rig vertex
    weights: np.ndarray  # (V, 4) float32
    texture: np.ndarray  # (size, size, 3) uint8 albedo


def bake_avatar(avatar: HandAvatar, texture: int) -> BakedAvatar:
    """Rig, atlas, truncated weights and the baked albedo of a `texture` x `texture` px texture."""
    if texture < 16:
        raise InputError(f"--texture {texture} is too small: give a side of at least 16 px (e.g. 1024)")
    rig = avatar_rig(avatar)
    atlas = uv_atlas(rig.vertices, rig.faces, size=texture)
    ids, weights = truncate_weights(rig.weights)
    return BakedAvatar(rig, atlas, ids, weights, bake_albedo(avatar, atlas, size=texture))


def export_avatar(avatar: HandAvatar, path: Path, *, poses: Motion, texture: int = 1024, fps: float = 15.0,
                  correctives: int = 6) -> ExportReport:
    """Write the avatar as a .glb at `path` (atomically) and measure what the 4-weight rig loses over `poses`.

    Args:
        poses: the clip's N poses (global rotation and hand pose, axis-angle, radians, as the avatar takes them).
        texture: side of the albedo texture, px. fps: frames per second of the clip.
        correctives: how many frames of the clip, spread evenly from first to last, carry a pose-corrective morph
            target that puts the skin on PairOF's 0.5 level set (correctives.py); 0: a plain skin.
    """
    start = time.perf_counter()
    baked = bake_avatar(avatar, texture)
    rig, atlas, ids, weights = baked.rig, baked.atlas, baked.joint_ids, baked.weights
    normals = trimesh.Trimesh(rig.vertices, rig.faces, process=False).vertex_normals
    started = time.perf_counter()
    morphs = pose_correctives(avatar, rig, dense_weights(ids, weights), poses.global_orient, poses.hand_pose,
                              corrective_keys(len(poses), correctives))
    corrective_seconds = time.perf_counter() - started
    mesh = GlbMesh(positions=rig.vertices[atlas.vertex_map], normals=normals[atlas.vertex_map], uvs=atlas.uvs,
                   faces=atlas.faces, joint_ids=ids[atlas.vertex_map], weights=weights[atlas.vertex_map],
                   rest_joints=rig.joints, texture_png=_texture_png(baked.texture),
                   morph_positions=morphs.offsets[:, atlas.vertex_map] if len(morphs.keys) else None,
                   morph_normals=morphs.normals[:, atlas.vertex_map] if len(morphs.keys) else None)
    rotations = local_rotations(poses.global_orient, poses.hand_pose, rig.pose_mean)
    clip = Clip(times=np.arange(len(poses)) / fps, rotations=rotations, wrist=root_translation(rig, rotations[:, 0]),
                name=Path(poses.source).stem, morph_weights=morphs.weights if len(morphs.keys) else None)
    data = glb_bytes(mesh, clip)
    atomic_write(path, lambda f: f.write(data))
    error = pose_sequence_error(avatar, rig, dense_weights(ids, weights), poses.global_orient, poses.hand_pose)
    return ExportReport(path=path, size=len(data), seconds=time.perf_counter() - start, vertices=len(atlas.uvs),
                        faces=len(atlas.faces), frames=len(poses), texture=texture, error=error, correctives=morphs,
                        corrective_seconds=corrective_seconds)
