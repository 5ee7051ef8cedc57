"""Free-pose animation and rendering of a trained avatar (the published README's render modes; reference §7).

    python -m handavatar.run --config configs/synthetic/demo.yaml run.mode=freepose [key.sub=value ...]
    scripts/run_hand.sh configs/synthetic/demo.yaml run.mode=freeview run.views=12

Loads <out_root>/<experiment>/latest.tar (or run.ckpt) and renders `run.mode`:

- test: every data.eval_skip-th frame of data.eval_subject as albedo | shading | rgb | target, with PSNR/SSIM/LPIPS
  per frame (the paper's protocol, as phase: val; PSNR/SSIM also on the hand's pixels);
- freeview: frame run.frame_idx of data.subject from run.views cameras on a circle about run.axis (model frame)
  through the hand's centre, radius the frame camera's distance to it, each looking at it;
- freepose: the run.joint_rot ranges (degrees) swept over run.frames frames, all joints together (poses.py);
- tpose: the flat hand (zero finger pose) with the frame's global rotation (orbiting with run.tpose_orbit);
- movement: the poses of another sequence (run.motion_subject or run.motion_file) on this avatar;

freepose, tpose and movement are seen from the frame's camera. Writes into <checkpoint dir>/<mode>/ (a rerun
replaces its frames): frames/NNNNNN.png (RGBA, alpha = rendered opacity: run.layer rgb, albedo = shading off, or
shading = shading only; the test strips give the target alpha 255), <mode>.mp4 and <mode>.gif (run.fps, black
background), albedo/ and shading/ (run.save_layers), meshes/NNNNNN_pairof.<fmt> and NNNNNN_manohd.<fmt>
(run.export_mesh: the PairOF surface and the posed MANO-HD, model frame, dm) and metrics.csv (test).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from smplx.utils.cli import cli_main
from smplx.utils.config import ConfigError, parse_config_command, resolve_device
from smplx.utils.fileio import atomic_write, write_csv
from pairof.mesh import extract_mesh
from segment.preprocess import load_cache
from handavatar.cameras import Camera, camera_sample, frame_camera, orbit_cameras
from handavatar.data import to_tensors
from handavatar.lpips import load_lpips
from handavatar.model import HandAvatar
from handavatar.poses import Motion, freepose_angles, freepose_poses, load_motion_file, load_motion_subject
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.validate import evaluation_dataset, frame_metrics
from handavatar.video import to_uint8, write_gif, write_mp4, write_png

__all__ = ["Shot", "load_avatar", "plan_shots", "render_shot", "run"]

@dataclass
class Shot:
    """One frame to render: a pose seen by a camera."""

    global_orient: np.ndarray  # (3,) camera-frame axis-angle, radians
    hand_pose: np.ndarray  # (45,) axis-angle, radians, the model's mean pose included
    camera: Camera
    # (3, 3) world-to-camera rotation of the data frame whose model frame the shot is in (places the learned lights)
    world_rotation: np.ndarray | None = None  # None: the identity


def _resolution(config: AvatarConfig) -> int:
    return config.run.resolution or config.data.resolution


def _margin(config: AvatarConfig) -> float:
    """The posed box's margin for the rays (dm): the dataset's bbox_offset + box_padding."""
    return config.data.bbox_offset + config.data.box_padding


def _posed_box(avatar: HandAvatar, global_orient: np.ndarray, hand_pose: np.ndarray, margin: float):
    """The posed hand of one pose and its 3D box (M frame, dm) grown by margin."""
    ref = avatar.hand.v_template
    posed = avatar.pose(torch.as_tensor(global_orient, dtype=ref.dtype, device=ref.device)[None],
                        torch.as_tensor(hand_pose, dtype=ref.dtype, device=ref.device)[None])
    vertices = posed.vertices[0].double().cpu().numpy()
    return posed, vertices.min(0) - margin, vertices.max(0) + margin


def reference_frame(config: AvatarConfig) -> Shot:
    """Frame run.frame_idx of data.subject (its usable frames, no skip): its pose and cropped camera."""
    d = config.data
    cache = load_cache(d.root, d.subject, hand=d.hand, model=config.smpl_cfg.model_path, bbox_offset=d.bbox_offset)
    i = config.run.frame_idx
    if not 0 <= i < len(cache):
        raise ConfigError(f"run.frame_idx={i} but subject {d.subject} has {len(cache)} usable frames "
                          f"(0..{len(cache) - 1})")
    camera = frame_camera(cache.K[i], cache.bbox[i], cache.Th[i], crop_scale=d.crop_scale, size=_resolution(config))
    return Shot(cache.global_orient[i], cache.hand_pose[i], camera, cache.camrot[i])


def driving_motion(config: AvatarConfig) -> Motion:
    """The movement mode's driving sequence (run.motion_subject or run.motion_file), every run.motion_skip-th frame."""
    run = config.run
    if bool(run.motion_subject) == bool(run.motion_file):
        raise ConfigError("run.mode=movement needs exactly one of run.motion_subject (an InterHand2.6M-layout "
                          f"subject) and run.motion_file (.npz or .json); found motion_subject={run.motion_subject!r}, "
                          f"motion_file={run.motion_file!r}")
    if run.motion_skip < 1:
        raise ConfigError(f"run.motion_skip must be at least 1, got {run.motion_skip}")
    motion = load_motion_file(run.motion_file) if run.motion_file else load_motion_subject(
        run.motion_root or config.data.root, run.motion_subject, hand=config.data.hand,
        model=config.smpl_cfg.model_path)
    orient = None if motion.global_orient is None else motion.global_orient[::run.motion_skip]
    return Motion(motion.hand_pose[::run.motion_skip], orient, motion.source)


def plan_shots(avatar: HandAvatar, config: AvatarConfig) -> list[Shot]:
    """The shots of the freeview, freepose, tpose and movement modes (see the module docstring)."""
    run, frame = config.run, reference_frame(config)
    mode = run.mode

    def orbit(hand_pose: np.ndarray) -> list[Shot]:
        _, low, high = _posed_box(avatar, frame.global_orient, hand_pose, 0.0)
        cameras = orbit_cameras(frame.camera, (low + high) / 2, run.axis, run.views)
        return [Shot(frame.global_orient, hand_pose, camera, frame.world_rotation) for camera in cameras]

    if mode == "freeview":
        return orbit(frame.hand_pose)
    if mode == "tpose":
        flat = np.zeros_like(frame.hand_pose)
        return orbit(flat) if run.tpose_orbit else [Shot(frame.global_orient, flat, frame.camera,
                                                          frame.world_rotation)]
    if mode == "freepose":
        orients, poses = freepose_poses(freepose_angles(run.joint_rot, run.frames), avatar.hand.pose_frames(),
                                        frame.global_orient)
        return [Shot(o, p, frame.camera, frame.world_rotation) for o, p in zip(orients, poses)]
    if mode == "movement":
        motion = driving_motion(config)
        own = run.motion_orient == "frame" or motion.global_orient is None
        orients = np.repeat(frame.global_orient[None], len(motion), 0) if own else motion.global_orient
        return [Shot(o, p, frame.camera, frame.world_rotation) for o, p in zip(orients, motion.hand_pose)]
    raise ConfigError(f"run.mode={mode!r} has no shots to plan")


@torch.no_grad()
def render_shot(avatar: HandAvatar, shot: Shot, *, margin: float, chunk: int | str = "auto") -> dict:
    """Render one shot (no gradients; black background). Returns avatar.render's outputs."""
    _, low, high = _posed_box(avatar, shot.global_orient, shot.hand_pose, margin)
    device = avatar.hand.v_template.device
    sample = to_tensors(camera_sample(shot.camera, low, high), device)
    sample.update(global_orient=torch.as_tensor(shot.global_orient, dtype=torch.float32, device=device),
                  hand_pose=torch.as_tensor(shot.hand_pose, dtype=torch.float32, device=device),
                  bgcolor=torch.zeros(3, device=device))
    if shot.world_rotation is not None:
        sample["world_rotation"] = torch.as_tensor(shot.world_rotation, dtype=torch.float32, device=device)
    return avatar.render(sample, chunk=chunk)


def _panels(out: dict) -> dict[str, np.ndarray]:
    """(h, w, 3) rgb, albedo and shading (replicated) over the black background, and (h, w) alpha, in [0, 1]."""
    image = {name: out[name][0].float().cpu().numpy() for name in ("rgb", "albedo", "shading", "alpha")}
    image["shading"] = np.repeat(image["shading"], 3, -1)  # its weighted sum: 0 where nothing is hit
    return image


class _Writer:
    """Writes one mode's frames, layers, meshes and videos into its folder (see the module docstring)."""

    def __init__(self, avatar: HandAvatar, config: AvatarConfig, folder: Path):
        self.avatar, self.run, self.folder = avatar, config.run, folder
        self.margin = _margin(config)
        for sub in ("frames", "albedo", "shading", "meshes"):  # a rerun replaces what an earlier one wrote
            shutil.rmtree(folder / sub, ignore_errors=True)
        self.video: list[np.ndarray] = []
        self.meshes = 0

    def frame(self, index: int, rgba: np.ndarray, panels: dict, posed) -> None:
        name = f"{index:06d}.png"
        write_png(self.folder / "frames" / name, to_uint8(rgba))
        self.video.append(to_uint8(rgba[..., :3]))
        if self.run.save_layers:
            for layer in ("albedo", "shading"):
                write_png(self.folder / layer / name, to_uint8(np.dstack([panels[layer], panels["alpha"]])))
        if self.run.export_mesh:
            self._meshes(index, posed)

    def _meshes(self, index: int, posed) -> None:
        field, fmt = self.avatar.field, self.run.mesh_format
        vertices = posed.vertices[0].double().cpu().numpy()
        with torch.no_grad():
            encoding = field.encode(posed.vertices, posed.joints, posed.full_pose)
        surface = extract_mesh(field, encoding, vertices.min(0) - self.margin, vertices.max(0) + self.margin,
                               resolution=self.run.mesh_resolution)
        hand = trimesh.Trimesh(vertices, self.avatar.hand.output_faces.cpu().numpy(), process=False)
        for kind, mesh in (("pairof", surface), ("manohd", hand)):
            data = mesh.export(file_type=fmt)
            atomic_write(self.folder / "meshes" / f"{index:06d}_{kind}.{fmt}",
                         lambda f, data=data: f.write(data.encode() if isinstance(data, str) else data))
            self.meshes += 1

    def finish(self, mode: str) -> list[str]:
        """Write the videos; returns the summary lines."""
        mp4 = write_mp4(self.folder / f"{mode}.mp4", self.video, self.run.fps)
        gif = write_gif(self.folder / f"{mode}.gif", self.video, self.run.fps)
        lines = [f"  {self.folder / 'frames'}/  {len(self.video)} RGBA PNG frames",
                 f"  {mp4}, {gif}  ({self.run.fps} fps)"]
        if self.run.save_layers:
            lines.append(f"  {self.folder / 'albedo'}/, {self.folder / 'shading'}/  layers of every frame")
        if self.run.export_mesh:
            lines.append(f"  {self.folder / 'meshes'}/  {self.meshes} {self.run.mesh_format.upper()} meshes "
                         "(PairOF surface and posed MANO-HD per frame, model frame, dm)")
        return lines


def _render_test(avatar: HandAvatar, config: AvatarConfig, writer: _Writer) -> list[str]:
    """The test mode: strips and metrics of the evaluation frames; returns summary lines."""
    sized = replace(config, data=replace(config.data, resolution=_resolution(config)))
    dataset = evaluation_dataset(sized)
    names = ["psnr", "ssim", "psnr_masked", "ssim_masked", "lpips"]
    lpips = load_lpips(config.lpips.vgg, config.lpips.heads, device=avatar.hand.v_template.device)
    rows = []
    for index in tqdm(range(len(dataset)), desc="test", unit="frame"):
        sample = to_tensors(dataset[index], avatar.hand.v_template.device)
        out = avatar.render(sample, chunk=config.chunk)
        metrics = frame_metrics(out["rgb"], sample, lpips)  # the paper's protocol, as phase: val
        rows.append([sample["key"]] + [metrics[name] for name in names])
        panels = _panels(out)
        target = sample["target_rgb"][0].float().cpu().numpy()
        strip = np.concatenate([np.dstack([panels[k], panels["alpha"]]) for k in ("albedo", "shading", "rgb")]
                               + [np.dstack([target, np.ones_like(panels["alpha"])])], 1)
        writer.frame(index, strip, panels, out["posed"])
    csv = write_csv(writer.folder / "metrics.csv", ["key"] + names, rows)
    means = np.mean([row[1:] for row in rows], 0)
    return [f"  {csv}  PSNR {means[0]:.2f} dB, SSIM {means[1]:.4f} over {len(rows)} frames of "
            f"{config.data.eval_subject} (paper protocol), LPIPS {means[4]:.4f} ({lpips.name}); hand pixels: PSNR "
            f"{means[2]:.2f} dB, SSIM {means[3]:.4f}"]


def run(config: AvatarConfig) -> Path:
    """Render `config.run.mode` (see the module docstring); returns the mode's output folder."""
    run_cfg = config.run
    for key, value, low in (("views", run_cfg.views, 1), ("frames", run_cfg.frames, 1), ("fps", run_cfg.fps, 1),
                            ("mesh_resolution", run_cfg.mesh_resolution, 2), ("resolution", run_cfg.resolution, 0)):
        if value < low:
            raise ConfigError(f"run.{key} must be at least {low}, got {value}")
    device = resolve_device(config.device)
    avatar, path, iteration = load_avatar(config, device)
    folder = path.parent / run_cfg.mode
    writer = _Writer(avatar, config, folder)
    start = time.perf_counter()
    with torch.no_grad():
        if run_cfg.mode == "test":
            lines = _render_test(avatar, config, writer)
        else:
            lines = []
            for index, shot in enumerate(tqdm(plan_shots(avatar, config), desc=run_cfg.mode, unit="frame")):
                out = render_shot(avatar, shot, margin=_margin(config), chunk=config.chunk)
                panels = _panels(out)
                writer.frame(index, np.dstack([panels[run_cfg.layer], panels["alpha"]]), panels, out["posed"])
    lines = writer.finish(run_cfg.mode) + lines
    seconds = time.perf_counter() - start
    print(f"{run_cfg.mode}: {len(writer.video)} frames of {path} (iteration {iteration}) in {seconds:.0f} s "
          f"({seconds / max(len(writer.video), 1):.2f} s per frame), layer {run_cfg.layer}; wrote\n" + "\n".join(lines))
    return folder


@cli_main
def main(argv: list[str] | None = None) -> None:
    config, _ = parse_config_command(AvatarConfig, DEFAULTS, argv, description=__doc__)
    run(config)


if __name__ == "__main__":
    main()
