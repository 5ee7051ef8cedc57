"""The web viewer (viewer/, written by python -m handavatar.export --viewer) in headless Chromium, opened from
file://: at two poses of the clip and a known camera, its silhouette matches an Embree ray cast of the file's surface
at that pose, skinned and morphed here in numpy from the .glb's own accessors (IoU >= 0.95; the export's pose
correctives follow the analytic capsule field of tests/test_export_correctives.py, moving vertices by mm, so a viewer that
dropped the morph targets would match the plain skin instead), and its albedo look shows the avatar's albedo field at
the hit points (PSNR reported)."""

import os

import numpy as np
import pytest
import torch

from smplx.utils.config import load_config
from smplx.utils.raycast import EmbreeMesh
from handavatar.export.__main__ import main as export_main
from handavatar.export.browser import Chromium, find_chromium
from handavatar.export.viewer import VIEWER_DIST, front_camera, screenshot
from handavatar.poses import freepose_angles, freepose_poses
from handavatar.render.anchors import AnchorIndex
from handavatar.checkpoint import load_avatar
from handavatar.config import DEFAULTS, AvatarConfig
from tests.test_export import accessor, read_glb, skinned_positions, tiny_checkpoint
from tests.test_export_correctives import capsule_field

SIZE = 160  # px, square window


def chromium() -> str | None:
    found = find_chromium()
    if (found is None or not (VIEWER_DIST / "viewer.js").is_file()) and os.environ.get("CI"):
        pytest.fail("CI: chromium or the built viewer (make viewer) is missing; .ci/run installs both")
    return found if (VIEWER_DIST / "viewer.js").is_file() else None


def pixel_rays(K: np.ndarray, R: np.ndarray) -> np.ndarray:
    """(SIZE * SIZE, 3) model-frame directions through the pixel centres (integer coordinates), row-major."""
    v, u = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    pixels = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    return pixels @ np.linalg.inv(K).T @ R


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    browser = chromium()
    if browser is None:
        pytest.skip("needs chromium and `make viewer` (Node.js); .ci/run installs them")
    work = tmp_path_factory.mktemp("viewer")
    latest = tiny_checkpoint(work, "right")
    folder = work / "site"
    with capsule_field():  # morph targets at the 5 frames of the clip
        export_main(["--checkpoint", str(latest), "--out", str(work / "avatar.glb"), "--texture", "256",
                     "--viewer", str(folder)])
    config = load_config(AvatarConfig, [DEFAULTS, latest.parent / "config.yaml"], [f"run.ckpt={latest}"])
    with Chromium(browser) as session:
        yield (session, folder / "index.html", load_avatar(config, torch.device("cpu"))[0], config,
               read_glb(work / "avatar.glb"))


def file_surface(doc: dict, blob: bytes, frame: int, *, morphs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(W, 3) vertices (model frame, dm) and (F, 3) faces of the file's mesh at keyframe `frame`."""
    faces = accessor(doc, blob, doc["meshes"][0]["primitives"][0]["indices"]).astype(int).reshape(-1, 3)
    _, posed = skinned_positions(doc, blob, frame, morphs=morphs)
    return posed @ np.diag([1.0, -1.0, -1.0]) * 10, faces


@pytest.mark.parametrize("frame", [0, 4])
def test_viewer_matches_our_surface_and_albedo(page, frame):
    browser, index, avatar, config, (doc, blob) = page
    orients, poses = freepose_poses(freepose_angles(config.run.joint_rot, config.run.frames),
                                    avatar.hand.pose_frames(), np.zeros(3))
    with torch.no_grad():
        posed = avatar.pose(torch.tensor(orients[frame:frame + 1]).float(),
                            torch.tensor(poses[frame:frame + 1]).float())
    vertices, faces = file_surface(doc, blob, frame)  # model frame, dm
    camera = front_camera(vertices, SIZE)
    # the last frame is asked a hair past the clip's end (float32 times): it must hold, not wrap to the first pose
    shot = screenshot(browser, index, camera, time=frame / config.run.fps + (1e-6 if frame else 0.0))
    assert shot.shape == (SIZE, SIZE, 3), shot.shape
    K, R, centre = camera.K, camera.R, camera.centre

    directions = pixel_rays(K, R)
    origins = np.repeat(centre[None], len(directions), 0)
    hit, bary, _ = EmbreeMesh(vertices, faces).intersect(origins, directions)
    ours = (hit >= 0).reshape(SIZE, SIZE)
    theirs = shot.max(-1) > 10  # black background; the albedo is far from black
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert ours.sum() > 0.05 * SIZE ** 2  # the hand fills the view, not a few pixels
    assert iou >= 0.95, f"frame {frame}: silhouette IoU {iou:.4f}"
    plain, _ = file_surface(doc, blob, frame, morphs=False)  # the skin without its correctives
    unmorphed = (EmbreeMesh(plain, faces).intersect(origins, directions)[0] >= 0).reshape(SIZE, SIZE)
    iou_plain = (unmorphed & theirs).sum() / (unmorphed | theirs).sum()
    assert iou_plain < iou - 0.03, f"frame {frame}: the plain skin's IoU {iou_plain:.4f}, the morphed {iou:.4f}"
    if frame:  # and the pose is this frame's: the first pose's silhouette from the same camera differs
        hit0, _, _ = EmbreeMesh(file_surface(doc, blob, 0)[0], faces).intersect(origins, directions)
        other = (hit0 >= 0).reshape(SIZE, SIZE)
        assert (other & theirs).sum() / (other | theirs).sum() < iou - 0.2

    # the texture moves with its vertices: the albedo is the field's where the hit lies on the plain skin
    points = np.einsum("nk,nkc->nc", bary[hit >= 0], plain[faces[hit[hit >= 0]]])
    with torch.no_grad():
        encoding = avatar.field.encode(posed.vertices, posed.joints, posed.full_pose)
        dists, ids = AnchorIndex(encoding.anchors[0], avatar.field.neighbours).query(torch.tensor(points).float())
        albedo = avatar.albedo(dists, ids).double().numpy()
    expected = np.zeros((SIZE * SIZE, 3))
    expected[hit >= 0] = albedo
    both = (ours & theirs).reshape(-1)
    mse = np.mean((shot.reshape(-1, 3)[both] / 255.0 - expected[both]) ** 2)
    psnr = 10 * np.log10(1.0 / mse)
    print(f"viewer frame {frame}: silhouette IoU {iou:.4f} (plain skin {iou_plain:.4f}), albedo PSNR {psnr:.2f} dB "
          f"on {both.sum()} hand pixels")
    assert psnr > 30.0, f"frame {frame}: albedo PSNR {psnr:.2f} dB"  # measured 38.4 and 43.9 dB (texture filtering)
