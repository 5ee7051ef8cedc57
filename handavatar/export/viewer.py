"""The web viewer next to an exported asset: the page that `npm run build` bundles into viewer/dist/ (three.js
included, so it works offline), the .glb, and the .glb again as base64 in avatar.glb.js, which a page opened from
file:// can load (browsers refuse to fetch files there)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from smplx.fileio import atomic_write

__all__ = ["VIEWER_DIST", "write_viewer"]

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
        raise FileNotFoundError(f"the viewer is not built ({', '.join(str(VIEWER_DIST / m) for m in missing)} "
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
