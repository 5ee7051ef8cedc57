"""The web viewer next to an exported asset: the page that `npm run build` bundles into viewer/dist/ (three.js
included, so it works offline), the .glb, and the .glb again as base64 in avatar.glb.js, which a page opened from
file:// can load (browsers refuse to fetch files there); and the page's screenshot in headless Chromium from a known
camera, for the tests and the figures."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np

from smplx.utils.cli import MissingFileError
from smplx.utils.fileio import atomic_write
from handavatar.cameras import Camera, look_at
from handavatar.export.browser import Chromium

__all__ = ["VIEWER_DIST", "front_camera", "screenshot", "write_viewer"]

VIEWER_DIST = Path(__file__).resolve().parents[2] / "viewer" / "dist"
"""The built page (make viewer)."""

_PAGE = ("index.html", "viewer.js")


def write_viewer(folder: Path, asset: Path) -> Path:
    """Copy the built page, `asset` (as avatar.glb) and its embedded twin (avatar.glb.js) into `folder`.

    Returns:
        The page (folder/index.html).

    Raises:
        FileNotFoundError: the page is not built (names the command that builds it).
    """
    missing = [name for name in _PAGE if not (VIEWER_DIST / name).is_file()]
    if missing:
        raise MissingFileError(f"the viewer is not built ({', '.join(str(VIEWER_DIST / m) for m in missing)} "
                                "missing): run `make viewer` (needs Node.js and npm) and export again")
    folder.mkdir(parents=True, exist_ok=True)
    for name in _PAGE:
        shutil.copyfile(VIEWER_DIST / name, folder / name)
    data = asset.read_bytes()
    if asset.resolve() != (folder / "avatar.glb").resolve():
        atomic_write(folder / "avatar.glb", lambda f: f.write(data))
    script = b"window.HAND_AVATAR_GLB = \"" + base64.b64encode(data) + b"\";\n"
    atomic_write(folder / "avatar.glb.js", lambda f: f.write(script))
    return folder / "index.html"


def front_camera(vertices: np.ndarray, size: int, *, offset=(0.6, -0.8, -6.0), focal: float = 2.6) -> Camera:
    """A camera in front of a posed hand (x right, y down, looking along +z like a capture camera), aimed at the
    centre of its box from `offset` (dm) away, focal length `focal` x size px, principal point a few px off centre.

    Args:
        vertices: (V, 3) posed vertices, model frame, dm.
    """
    target = (vertices.min(0) + vertices.max(0)) / 2
    centre = target + np.asarray(offset, dtype=float)
    K = np.array([[focal * size, 0, (size - 1) / 2 + 3.0], [0, focal * size, (size - 1) / 2 - 2.0], [0, 0, 1]])
    return Camera(K=K, R=look_at(centre, target, np.array([0.0, 1.0, 0.0])), centre=centre, size=size)


def screenshot(browser: Chromium, page: Path, camera: Camera, *, time: float, layer: str = "albedo") -> np.ndarray:
    """(size, size, 3) uint8 screenshot of the viewer `page` (from file://, buttons hidden) showing the clip at
    `time` seconds in `layer` ('albedo' or 'shaded') through `camera`, once the page has drawn the model."""
    K = camera.K
    query = "&".join([
        "ui=0", f"layer={layer}", f"time={time}",
        "K=" + ",".join(f"{x:.6f}" for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])),
        "R=" + ",".join(f"{x:.9f}" for x in camera.R.reshape(-1)),
        "C=" + ",".join(f"{x:.9f}" for x in camera.centre)])
    return browser.screenshot(f"{page.resolve().as_uri()}?{query}", width=camera.size, height=camera.size)
