"""Render a synthetic capture of the hand model, written exactly as InterHand2.6M (5 fps) lays out its files, with the
ground truth InterHand lacks: masks, albedo, shading and depth images.

    python -m segment.synthetic --out data/synthetic --train-frames 300 --eval-frames 60 --cameras 1 --seed 0

A subject (shape and skin) performs a training sequence (ROM04_RT_Occlusion: the named self-shadowing poses and poses
from the model's prior, with wrist rotations) and a held-out evaluation sequence (ROM03_RT_No_Occlusion: other
poses from the prior), seen by one or more pinhole cameras and lit by one light, ray-traced with Embree (cast
shadows, ambient occlusion). Point the data configs at --out instead of data/InterHand/5 to use it. The same seed
gives the same bytes; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import smplx
from smplx.model_file import HandModelData
from smplx.utils.cli import UserError
from smplx.utils.fileio import atomic_write, remove_stale_temporaries, to_uint8, write_json, write_png
from smplx.hand_pose import build_pose_prior, prior_poses
from segment.annotations import BORDER_PX
from segment.interhand import DATA_FOLDER, HAND_TYPES, annotation_path, camera_matrix, image_file_name
from segment.synthetic.manifest import (DEPTH_UNIT_MM, SEQUENCES, PosedFrame, SyntheticCaptureError,
                                        annotation_files, capture_manifest, frame_paths, preview_picture)
from segment.synthetic.motion import make_motion
from segment.synthetic.raytrace import Light, PinholeCamera, ShadingModel, render
from segment.synthetic.skin import SKIN_TONES, SkinTexture

__all__ = ["CaptureSettings", "make_capture"]

FIRST_FRAME = 10000  # frame_idx of the first training frame; InterHand's 5 fps frames are 6 apart
FRAME_STEP = 6


@dataclass(frozen=True)
class CaptureSettings:
    """Everything that decides the bytes of a capture."""

    model: str = "mano"  # MANO-format file, folder with MANO_RIGHT/LEFT.pkl (else the open hand), or "open_hand"
    hand: str = "right"
    train_frames: int = 300
    eval_frames: int = 60
    cameras: int = 1
    seed: int = 0
    split: str = "test"
    capture: int = 0
    width: int = 334  # InterHand2.6M image size, pixels
    height: int = 512
    focal: float = 1200.0  # pixels
    distance: float = 1000.0  # camera to hand centre, mm
    supersample: int = 2  # rays per pixel along each axis
    skin: str = "medium"
    light: str = "directional"  # or "point"
    light_direction: tuple[float, float, float] = (0.6, -0.6, -0.5)  # towards the light, world (y down, z away)
    light_distance: float = 600.0  # mm from the hand centre, for a point light
    ambient: float = 0.2  # share of ambient (occluded) light; the rest is the light's
    ao_rays: int = 64
    ao_distance: float = 25.0  # mm
    specular: float = 0.0  # Blinn-Phong strength (0: off; try 0.08)
    shadows: bool = True
    background: tuple[float, float, float] = (0.07, 0.075, 0.09)
    jpeg_quality: int = 95
    key_every: int = 6  # frames between key poses

    def check(self) -> None:
        """Raise SyntheticCaptureError naming the first impossible value."""
        problems = [(self.hand not in HAND_TYPES, f"--hand {self.hand!r} is not one of {HAND_TYPES}"),
                    (self.skin not in SKIN_TONES, f"--skin {self.skin!r} is not one of {sorted(SKIN_TONES)}"),
                    (self.light not in ("directional", "point"), f"--light {self.light!r} is not directional/point"),
                    (self.train_frames < 1 or self.eval_frames < 0,
                     "--train-frames must be at least 1 and --eval-frames at least 0"),
                    (self.cameras < 1, "--cameras must be at least 1"),
                    (min(self.width, self.height) < 2 * BORDER_PX + 16, "--width/--height are too small"),
                    (self.focal <= 0 or self.supersample < 1 or self.key_every < 1,
                     "--focal, --supersample and --key-every must be positive"),
                    (not 0 <= self.ambient <= 1, "--ambient must lie in [0, 1]"),
                    (not 1 <= self.jpeg_quality <= 100, "--jpeg-quality must lie in 1..100")]
        for bad, message in problems:
            if bad:
                raise SyntheticCaptureError(message)


def _cameras(settings: CaptureSettings) -> list[tuple[str, PinholeCamera]]:
    """Cameras on an arc around the world origin (the hand's mean position), camera 0 straight in front of it."""
    K = camera_matrix((settings.focal, settings.focal), ((settings.width - 1) / 2, (settings.height - 1) / 2))
    out = []
    for k in range(settings.cameras):
        azimuth = 0.0 if settings.cameras == 1 else np.radians(-60 + 120 * k / (settings.cameras - 1))
        elevation = 0.0 if settings.cameras == 1 else np.radians(15.0 * (-1) ** k)
        ca, sa, ce, se = np.cos(azimuth), np.sin(azimuth), np.cos(elevation), np.sin(elevation)
        to_world = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]]) @ np.array([[1, 0, 0], [0, ce, -se], [0, se, ce]])
        campos = to_world @ np.array([0.0, 0.0, -settings.distance])
        out.append((str(400262 + k), PinholeCamera(K, to_world.T, campos, settings.width, settings.height)))
    return out


def _pose_frames(settings: CaptureSettings, model: smplx.MANO, data: HandModelData
                 ) -> tuple[list[PosedFrame], np.ndarray]:
    """The posed world meshes of every frame of both sequences, and the subject's shape (betas); `data` holds the
    model's arrays (model.to_model_data())."""
    is_rhand = settings.hand == "right"
    rest_joints = data.j_regressor @ data.v_template
    frames_ = model.pose_frames()
    if data.hands_coeffs is not None:
        prior = prior_poses(data.hands_mean, data.hands_coeffs, data.hands_components)
    else:
        components, mean, coeffs = build_pose_prior(frames_, seed=settings.seed)
        prior = prior_poses(mean, coeffs, components)
    hands_mean = np.zeros(45) if data.hands_mean is None else data.hands_mean
    betas = np.clip(np.random.default_rng([settings.seed, 0]).normal(scale=0.6, size=model.num_betas), -1.5, 1.5)

    out, first = [], FIRST_FRAME
    for stream, (seq_name, role) in enumerate(SEQUENCES, start=1):
        count = settings.train_frames if role == "train" else settings.eval_frames
        if count == 0:
            continue
        motion = make_motion(count, rest_joints=rest_joints, pose_frames=frames_, prior=prior,
                             seed=(settings.seed, stream), named=role == "train",
                             key_every=settings.key_every, is_rhand=is_rhand)
        dtype = model.v_template.dtype
        with torch.no_grad():
            posed = model(betas=torch.tensor(np.tile(betas, (count, 1)), dtype=dtype),
                          global_orient=torch.tensor(motion.global_orient, dtype=dtype),
                          hand_pose=torch.tensor(motion.hand_pose, dtype=dtype))
        vertices, joints = posed.vertices.double().numpy(), posed.joints.double().numpy()
        trans = motion.position / 1000 - joints.mean(1)  # metres
        for i in range(count):
            out.append(PosedFrame(seq_name, first + FRAME_STEP * i, 1000 * (vertices[i] + trans[i]),
                                  1000 * (joints[i] + trans[i]), motion.global_orient[i],
                                  motion.hand_pose[i] - hands_mean, trans[i]))
        first += FRAME_STEP * (count + 100)
    return out, betas


def _check_cameras(frames: list[PosedFrame], cameras: list[tuple[str, PinholeCamera]]) -> tuple[float, float]:
    """Every frame in front of every camera and inside its image; returns the smallest and largest hand box (px)."""
    sizes = []
    for cam_id, cam in cameras:
        for f in frames:
            uv, depth = cam.project(f.vertices)
            if depth.min() < 1.0:
                raise SyntheticCaptureError(
                    f"the hand is behind camera {cam_id} in frame {f.frame_idx} ({f.seq_name}): its nearest point is "
                    f"{depth.min():.0f} mm in front of it; raise --distance")
            lo, hi = uv.min(0), uv.max(0)
            if lo.min() < BORDER_PX or hi[0] > cam.width - 1 - BORDER_PX or hi[1] > cam.height - 1 - BORDER_PX:
                raise SyntheticCaptureError(
                    f"the hand leaves the {cam.width}x{cam.height} image of camera {cam_id} in frame {f.frame_idx} "
                    f"({f.seq_name}): box x {lo[0]:.0f}..{hi[0]:.0f}, y {lo[1]:.0f}..{hi[1]:.0f} px, but it must "
                    f"stay {BORDER_PX} px inside; raise --distance or lower --focal")
            sizes.append((hi - lo).max())
    return float(min(sizes)), float(max(sizes))


# ---------------------------------------------------------------------------------------------------------------
# Rendering, in worker processes

_WORKER: dict = {}


def _init_worker(state: dict) -> None:
    _WORKER.update(state)
    torch.set_num_threads(1)


def _save_image(path: Path, array: np.ndarray, **options) -> None:
    image = Image.fromarray(array)
    atomic_write(path, lambda f: image.save(f, format="JPEG" if path.suffix == ".jpg" else "PNG", **options))


def _render_task(task: tuple[np.ndarray, int, dict[str, Path]]) -> None:
    vertices, cam_index, paths = task
    w = _WORKER
    settings: CaptureSettings = w["settings"]
    cam = w["cameras"][cam_index][1]
    uv, _ = cam.project(vertices)
    window = (int(np.floor(uv[:, 0].min())) - 2, int(np.floor(uv[:, 1].min())) - 2,
              int(np.ceil(uv[:, 0].max())) + 3, int(np.ceil(uv[:, 1].max())) + 3)
    fb = render(vertices, w["faces"], cam, w["light"], w["shading"], w["texture"],
                supersample=settings.supersample, background=settings.background, window=window)

    mask = np.repeat(np.where(fb.coverage >= 0.5, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    _save_image(paths["image"], to_uint8(fb.image), quality=settings.jpeg_quality, subsampling=0)
    _save_image(paths["mask"], mask)
    _save_image(paths["albedo"], to_uint8(fb.albedo))
    _save_image(paths["shading"], to_uint8(fb.shading))
    _save_image(paths["depth"], np.round(fb.depth / DEPTH_UNIT_MM).astype(np.uint16))
    if "specular" in paths:
        _save_image(paths["specular"], to_uint8(fb.specular))


def _light(settings: CaptureSettings) -> Light:
    direction = np.asarray(settings.light_direction, dtype=float)
    if np.linalg.norm(direction) == 0:
        raise SyntheticCaptureError("--light-direction must not be zero")
    if settings.light == "directional":
        return Light("directional", tuple(direction))
    return Light("point", tuple(settings.light_distance * direction / np.linalg.norm(direction)))


def _prepare_output(out: Path, settings: CaptureSettings, overwrite: bool) -> None:
    """Create `out` or fail clearly; refuse to mix captures with different settings unless overwrite."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise SyntheticCaptureError(f"cannot write to the output folder {out}: {error.strerror or error}; choose "
                                    "another --out") from error
    remove_stale_temporaries(out, tree=True)  # of the writes of an interrupted run
    manifest = out / "capture.json"
    if not manifest.exists():
        return
    try:
        previous = json.loads(manifest.read_text())["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise SyntheticCaptureError(f"{manifest} is not a capture manifest ({error}); remove it or choose another "
                                    "--out") from error
    if previous != json.loads(json.dumps(asdict(settings))) and not overwrite:
        changed = sorted(k for k, v in json.loads(json.dumps(asdict(settings))).items() if previous.get(k) != v)
        raise SyntheticCaptureError(f"{out} holds a capture made with other settings ({', '.join(changed)}); pass "
                                    "--overwrite to replace it, or choose another --out")
    if overwrite:
        for name in ("annotations", DATA_FOLDER, "capture.json", "preview.png"):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def make_capture(settings: CaptureSettings, out: str | Path, *, workers: int = 2, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Render and write a capture (see the module docstring). Returns a summary dict (counts, timings, paths).

    Raises:
        SyntheticCaptureError: an impossible setting, an unknown model file, a camera that cannot see the hand, or
            an unwritable --out; all before rendering starts.
    """
    start = time.perf_counter()
    settings.check()
    out = Path(out)
    try:
        model = smplx.create(settings.model, is_rhand=settings.hand == "right", seal=True, distal=True,
                             dtype=torch.float64)
    except UserError as error:
        raise SyntheticCaptureError(f"cannot load the hand model --model {settings.model}: {error}") from error
    data = model.to_model_data()
    frames, betas = _pose_frames(settings, model, data)
    cameras = _cameras(settings)
    box_range = _check_cameras(frames, cameras)
    light = _light(settings)
    _prepare_output(out, settings, overwrite)

    annotations = annotation_files(settings, frames, cameras, betas)
    write_json(out / "capture.json", capture_manifest(settings, model, frames, cameras, betas, complete=False))
    tasks, skipped = [], 0
    for f in frames:
        for index, (cam_id, _) in enumerate(cameras):
            paths = frame_paths(out, settings, image_file_name(settings.capture, f.seq_name, cam_id, f.frame_idx))
            if all(p.exists() for p in paths.values()):
                skipped += 1
            else:
                tasks.append((f.vertices, index, paths))

    faces = model.output_faces.numpy()
    loop = model.seal_loop.numpy()

    def sealed(per_vertex: np.ndarray) -> np.ndarray:  # the seal vertex takes the mean of the wrist rim
        return np.concatenate([per_vertex, per_vertex[loop].mean(0, keepdims=True)])

    texture = SkinTexture(sealed(data.v_template), faces, sealed(data.lbs_weights), data.j_regressor @ data.v_template,
                          data.v_template[data.fingertip_vertex_ids], model.pose_frames(),
                          is_rhand=settings.hand == "right", tone=settings.skin, seed=settings.seed)
    shading = ShadingModel(ambient=settings.ambient, diffuse=1 - settings.ambient, specular=settings.specular,
                           shadows=settings.shadows, ao_rays=settings.ao_rays, ao_distance=settings.ao_distance)
    state = {"settings": settings, "cameras": cameras, "faces": faces, "light": light, "shading": shading,
             "texture": texture}
    render_start = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="rendering", unit="frame", disable=not progress)
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(state)
        for task in tasks:
            _render_task(task)
            bar.update()
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers, _init_worker, (state,)) as pool:
            for _ in pool.imap_unordered(_render_task, tasks):
                bar.update()
    bar.close()
    render_time = time.perf_counter() - render_start

    for kind, content in annotations.items():
        write_json(annotation_path(out, settings.split, kind), content)
    preview = write_png(out / "preview.png", preview_picture(out, settings, annotations["data"]))
    write_json(out / "capture.json", capture_manifest(settings, model, frames, cameras, betas, complete=True))
    return {"out": str(out), "images": len(frames) * len(cameras), "rendered": len(tasks), "skipped": skipped,
            "render_seconds": render_time, "seconds_per_image": render_time / max(len(tasks), 1) * max(
                min(workers, len(tasks)), 1), "total_seconds": time.perf_counter() - start, "box_px": box_range,
            "model": model.source, "preview": str(preview)}
