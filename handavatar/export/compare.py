"""How faithful an export is (docs/export.md): the web viewer against our renderer, and the baked texture against the
avatar's own albedo on held-out frames.

    python -m handavatar.export.compare --checkpoint handavatar/out/handavatar/synthetic_demo/latest.tar \
        --viewer out/viewer --out docs/export [key.sub=value ...]

1. Viewer vs renderer (needs Chromium and the viewer written by `python -m handavatar.export ... --viewer DIR`): at
   the first and last pose of the free-pose clip, from a camera in front of the hand (`front_camera`), the viewer's
   hand pixels against our renderer's alpha > 0.5 (IoU), and its albedo look against our albedo render on the
   pixels both cover (PSNR). To tell the viewer's error from the choice of surface, the avatar's posed MANO-HD and
   PairOF's 0.5 level set at that pose are ray-cast (Embree) from the same camera and compared with the renderer's
   alpha too. Picture: renderer rgb | renderer albedo | viewer albedo | viewer shaded, a row a pose.
2. The bake on the held-out frames (every data.eval_skip-th frame of data.eval_subject, a synthetic capture): the
   exported surface (4-weight rig) ray-cast by Embree with the baked texture, and the avatar's albedo render, each
   against the capture's ground-truth albedo on the hand's pixels (PSNR, no scale alignment: both share the
   avatar's albedo scale), and against each other.

Writes <out>/viewer_vs_renderer.png and <out>/figures.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from smplx.utils.cli import MissingFileError, cli_main
from smplx.utils.raycast import EmbreeMesh
from pairof.mesh import extract_mesh
from handavatar.cameras import camera_sample
from handavatar.data import to_tensors
from handavatar.export.avatar import BakedAvatar, bake_avatar, clip_motion, load_export_avatar
from handavatar.export.rig import dense_weights, joint_transforms, local_rotations, skin
from handavatar.export.browser import Chromium
from handavatar.export.viewer import front_camera, screenshot
from handavatar.model import HandAvatar
from handavatar.run import Shot, render_shot
from handavatar.validate import evaluation_dataset
from handavatar.video import to_uint8, write_png

__all__ = ["viewer_vs_renderer", "bake_on_heldout"]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two (N, C) arrays in [0, 1]."""
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


@torch.no_grad()
def viewer_vs_renderer(avatar: HandAvatar, config, page: Path, browser: Chromium, *, size: int = 256
                       ) -> tuple[list[dict], np.ndarray]:
    """Silhouette IoU and albedo PSNR of the viewer against our renderer at the clip's first and last pose.

    Returns:
        per pose {'frame', 'iou', 'albedo_psnr', 'pixels', 'iou_mesh_vs_renderer' (how far the exported surface's
        own silhouette, an Embree ray cast of the avatar's posed MANO-HD, is from the renderer's),
        'iou_pairof_vs_renderer' (the same for PairOF's 0.5 level set extracted at that pose: the best a PairOF
        surface re-meshed and re-skinned could do), 'iou_viewer_vs_mesh'}, and the (2 size, 4 size, 3) uint8
        picture.
    """
    poses = clip_motion(avatar, "freepose", config.run.joint_rot, config.run.frames)
    margin = config.data.bbox_offset + config.data.box_padding
    rows, figures = [], []
    for frame in (0, len(poses) - 1):
        orient, pose = poses.global_orient[frame], poses.hand_pose[frame]
        ref = avatar.hand.v_template
        posed = avatar.pose(torch.as_tensor(orient[None], dtype=ref.dtype), torch.as_tensor(pose[None],
                                                                                             dtype=ref.dtype))
        camera = front_camera(posed.vertices[0].double().cpu().numpy(), size)
        out = render_shot(avatar, Shot(orient, pose, camera), margin=margin, chunk=config.chunk)
        alpha, albedo = out["alpha"][0].float().cpu().numpy(), out["albedo"][0].float().cpu().numpy()
        time = frame / config.run.fps
        flat = screenshot(browser, page, camera, time=time, layer="albedo")
        lit = screenshot(browser, page, camera, time=time, layer="shaded")
        theirs, ours = flat.max(-1) > 10, alpha > 0.5
        both = theirs & ours
        vertices = posed.vertices[0].double().cpu().numpy()
        low, high = vertices.min(0) - margin, vertices.max(0) + margin
        rays = camera_sample(camera, low, high)["rays_d"][0].reshape(-1, 3)
        encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
        surfaces = {"mesh": (vertices, avatar.hand.output_faces.cpu().numpy()),  # the avatar's posed MANO-HD
                    "pairof": extract_mesh(avatar.field, encoding, low, high, resolution=160)}  # PairOF's 0.5 level
        cast = {}
        for name, surface in surfaces.items():
            points, faces = surface if isinstance(surface, tuple) else (surface.vertices, surface.faces)
            face, _, _ = EmbreeMesh(points, faces).intersect(np.repeat(camera.centre[None], len(rays), 0), rays)
            cast[name] = (face >= 0).reshape(ours.shape)
        rows.append({"frame": frame, "iou": _iou(theirs, ours), "albedo_psnr": _psnr(flat[both] / 255.0, albedo[both]),
                     "pixels": int(both.sum()), "iou_mesh_vs_renderer": _iou(cast["mesh"], ours),
                     "iou_pairof_vs_renderer": _iou(cast["pairof"], ours),
                     "iou_viewer_vs_mesh": _iou(theirs, cast["mesh"])})
        figures.append(np.concatenate([to_uint8(out["rgb"][0].float().cpu().numpy()), to_uint8(albedo), flat,
                                       lit], 1))
    return rows, np.concatenate(figures, 0)


def _sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, 2) texture coordinates -> (N, 3) bilinear samples in [0, 1] (texel centres at (i + 1/2) / size)."""
    size = texture.shape[0]
    maps = (uv * size - 0.5).astype(np.float32).reshape(-1, 1, 2)
    sampled = cv2.remap(texture, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(-1, 3) / 255.0


@torch.no_grad()
def bake_on_heldout(avatar: HandAvatar, config, baked: BakedAvatar) -> dict:
    """Hand-pixel PSNR of the baked texture on the exported surface and of the avatar's albedo render against the
    ground-truth albedo of the held-out frames, and of the two against each other (means over frames)."""
    dataset = evaluation_dataset(config)
    dataset.config.layers = True
    rig, atlas = baked.rig, baked.atlas
    weights = dense_weights(baked.joint_ids, baked.weights)
    scores = {"baked": [], "avatar": [], "baked_vs_avatar": []}
    device = avatar.hand.v_template.device
    for index in tqdm(range(len(dataset)), desc="held-out frames", unit="frame"):
        raw = dataset[index]
        out = avatar.render(to_tensors(raw, device), chunk=config.chunk)
        rendered = out["albedo"][0].float().cpu().numpy().reshape(-1, 3)
        rotations = local_rotations(raw["global_orient"][None].astype(float), raw["hand_pose"][None].astype(float),
                                    rig.pose_mean)
        surface = skin(rig, weights, joint_transforms(rig, rotations))[0] * avatar.hand.scale  # model frame, dm
        directions = raw["rays_d"][0].reshape(-1, 3)
        face, bary, _ = EmbreeMesh(surface, rig.faces).intersect(np.repeat(raw["rays_o"][None], len(directions), 0),
                                                                 directions)
        image = np.zeros_like(rendered)
        hit = face >= 0
        uv = np.einsum("nk,nkc->nc", bary[hit], atlas.uvs[atlas.faces[face[hit]]])
        image[hit] = _sample_texture(baked.texture, uv)
        hand = raw["target_alpha"][0].reshape(-1) > 0
        truth = raw["target_albedo"][0].reshape(-1, 3)
        scores["baked"].append(_psnr(image[hand], truth[hand]))
        scores["avatar"].append(_psnr(rendered[hand], truth[hand]))
        scores["baked_vs_avatar"].append(_psnr(image[hand], rendered[hand]))
    return {name: float(np.mean(values)) for name, values in scores.items()} | {"frames": len(dataset)}


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m handavatar.export.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="default: config.yaml beside the checkpoint")
    parser.add_argument("--viewer", type=Path, required=True, help="the folder written by export --viewer")
    parser.add_argument("--out", type=Path, required=True, help="folder for the picture and figures.json")
    parser.add_argument("--texture", type=int, default=1024, help="texture side of the bake, px")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    if not (args.viewer / "index.html").is_file():
        raise MissingFileError(f"--viewer {args.viewer} holds no index.html: write it with python -m "
                               "handavatar.export --checkpoint ... --out ... --viewer DIR")
    avatar, config, path, iteration = load_export_avatar(args.checkpoint, args.config, args.overrides)
    with Chromium() as browser:
        rows, picture = viewer_vs_renderer(avatar, config, args.viewer / "index.html", browser)
    bake = bake_on_heldout(avatar, config, bake_avatar(avatar, args.texture))
    args.out.mkdir(parents=True, exist_ok=True)
    write_png(args.out / "viewer_vs_renderer.png", picture)
    figures = {"checkpoint": str(path), "iteration": iteration, "viewer_vs_renderer": rows,
               "bake_psnr_hand_pixels": bake, "texture": args.texture}
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    for row in rows:
        print(f"viewer vs renderer, clip frame {row['frame']}: silhouette IoU {row['iou']:.4f}, albedo PSNR "
              f"{row['albedo_psnr']:.2f} dB on {row['pixels']} hand pixels; IoU of the posed MANO-HD's ray cast vs "
              f"the renderer {row['iou_mesh_vs_renderer']:.4f} (PairOF's level set at that pose "
              f"{row['iou_pairof_vs_renderer']:.4f}), viewer vs the MANO-HD ray cast {row['iou_viewer_vs_mesh']:.4f}")
    print(f"held-out frames ({bake['frames']}), hand-pixel PSNR against the true albedo: baked texture on the "
          f"exported surface {bake['baked']:.2f} dB, avatar's albedo render {bake['avatar']:.2f} dB; baked vs avatar "
          f"{bake['baked_vs_avatar']:.2f} dB\nwrote {args.out / 'viewer_vs_renderer.png'}, {args.out / 'figures.json'}")


if __name__ == "__main__":
    main()
