"""Hand masks for InterHand2.6M images from the projected hand model (reference §8), written to masks_removeblack/.

    python -m segment.masks --root data/InterHand/5 --split test --capture 0 --seq ROM04_RT_Occlusion
    scripts/make_masks.sh --seq ROM04_RT_Occlusion --seq ROM03_RT_No_Occlusion

For each image of the selected hand: pose the model with the frame's NeuralAnnot parameters, move it into the camera,
project it with the camera's intrinsics and fill every projected triangle at full resolution. With filtering (the
default, as the published masks), keep only mask pixels whose image intensity lies strictly between 10 and 200 and
then only the largest connected region. Masks are 3-channel 0/255 PNGs mirroring images/, each recording its --fill
in a PNG text entry ('fill', read by `mask_fill`). Existing masks are kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from smplx.utils.cli import cli_main
from smplx.utils.fileio import atomic_write
from segment.annotations import SplitAnnotations, Subject
from segment.interhand import IMAGE_TREE, MASK_TREE, FrameFileError, project, read_rgb, tree_path
from segment.posing import create_model, pose_hands

__all__ = ["fill_triangles", "fill_fine", "remove_black", "make_masks", "mask_fill", "MIN_IMAGE_MAX", "FILLS"]

MIN_IMAGE_MAX = 20  # an image whose brightest value is below this is treated as dark (reference §6.2, §8)


FILLS = ("coverage", "published")
FINE = 4  # the sub-pixel grid of fill='coverage': FINE x FINE cells per pixel


def fill_triangles(pixels: np.ndarray, faces: np.ndarray, width: int, height: int, *, fill: str = "coverage"
                   ) -> np.ndarray:
    """Silhouette of a projected mesh: every triangle filled (no depth test needed).

    Args:
        pixels: (V, 2) projected vertices, pixel coordinates (integers at pixel centres).
        faces: (F, 3) vertex indices.
        width, height: image size.
        fill: 'coverage' (ours): 255 where at least half of the pixel is covered; the triangles are filled by OpenCV
            on a 4x finer grid (which counts every pixel an edge touches as inside) and averaged down, so the outline
            is within 1/8 pixel of the exact one. 'published': the vertices rounded to whole pixels and each triangle
            filled by OpenCV at full resolution, as the published masks are, which counts every pixel an edge
            touches as inside (about half a pixel fatter all round).

    Returns:
        (height, width) uint8 mask, 0 or 255.
    """
    if fill == "published":
        mask = np.zeros((height, width), np.uint8)
        for triangle in np.round(np.asarray(pixels)).astype(np.int32)[faces]:
            cv2.fillConvexPoly(mask, triangle, 255)
        return mask
    if fill != "coverage":
        raise ValueError(f"fill {fill!r} is not one of {FILLS}")
    k = FINE
    coverage = fill_fine(pixels, faces, width, height).reshape(height, k, width, k).mean((1, 3))
    return np.where(coverage >= 0.5, 255, 0).astype(np.uint8)


def fill_fine(pixels: np.ndarray, faces: np.ndarray, width: int, height: int, k: int = FINE) -> np.ndarray:
    """(height * k, width * k) uint8 0/1: every triangle filled by OpenCV on a grid k times finer than the pixels
    (the fine cell (i, j) has its centre at pixel position ((j + 0.5) / k - 0.5, (i + 0.5) / k - 0.5)); it counts
    every cell an edge touches as inside. pixels: (V, 2) px; faces: (F, 3)."""
    fine = np.zeros((height * k, width * k), np.uint8)
    fixed = np.round(((np.asarray(pixels) + 0.5) * k - 0.5) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    for triangle in fixed[faces]:
        cv2.fillConvexPoly(fine, triangle, 1, lineType=cv2.LINE_8, shift=4)
    return fine


def remove_black(mask: np.ndarray, rgb: np.ndarray, *, low: float = 10, high: float = 200) -> np.ndarray:
    """The published mask filter: keep mask pixels with low < mean(R, G, B) < high, then the largest region.

    Args:
        mask: (H, W) uint8 0/255.
        rgb: (H, W, 3) uint8 image.

    Returns:
        (H, W) uint8 0/255: the largest external contour of the kept pixels, filled (holes inside it are filled too).
    """
    intensity = rgb.astype(np.float32).mean(-1)
    kept = ((mask > 0) & (intensity > low) & (intensity < high)).astype(np.uint8) * 255
    contours, _ = cv2.findContours(kept, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros_like(kept)
    if contours:
        cv2.drawContours(out, [max(contours, key=cv2.contourArea)], -1, 255, thickness=cv2.FILLED)
    return out


def _write_png(path: Path, mask: np.ndarray, fill: str) -> None:
    image = Image.fromarray(np.repeat(mask[..., None], 3, axis=2))
    info = PngImagePlugin.PngInfo()
    info.add_text("fill", fill)
    atomic_write(path, lambda f: image.save(f, format="PNG", pnginfo=info))


def mask_fill(path: str | Path) -> str | None:
    """The --fill a mask PNG was written with ('coverage' or 'published'), or None when it does not say (written by
    another program, or before segment.masks recorded it). Reads the PNG's header, not its pixels."""
    with Image.open(path) as image:
        return getattr(image, "text", {}).get("fill")


def make_masks(root: str | Path, subjects: list[Subject], *, hand: str = "right", model: str | None = None,
               filtering: bool = True, overwrite: bool = False, workers: int = 4, tree: str = MASK_TREE,
               progress: bool = True, fill: str = "coverage") -> tuple[int, int, Counter]:
    """Write the masks of the subjects' images (`fill`: see `fill_triangles`).

    Returns:
        (written, kept because they existed, skipped frames by reason).
    """
    layer = None
    written, existing, rejected = 0, 0, Counter()
    for split in sorted({s.split for s in subjects}):
        annotations = SplitAnnotations(root, split)
        if layer is None:  # after the annotations, so a wrong --root is reported first
            layer = create_model(root, model, hand=hand)
            faces = layer.output_faces.numpy()
        records = []
        for subject in (s for s in subjects if s.split == split):
            found, skipped = annotations.frames(subject, hand)
            records += found
            rejected.update(skipped)
        todo = []
        for record in records:
            target = tree_path(root, tree, split, record.file_name, ".png")
            if target.exists() and not overwrite:
                existing += 1
            else:
                todo.append((record, target))
        if not todo:
            continue
        posed = pose_hands(layer, [r for r, _ in todo])

        def one(i: int) -> str | None:
            record, target = todo[i]
            try:
                rgb = read_rgb(tree_path(root, IMAGE_TREE, split, record.file_name))
            except FrameFileError as error:
                return error.reason
            if rgb.max() < MIN_IMAGE_MAX:
                return "dark image"
            pixels = project(posed.vertices[i] + posed.Th[i], record.K)
            mask = fill_triangles(pixels, faces, record.width, record.height, fill=fill)
            if filtering:
                mask = remove_black(mask, rgb)
            if not mask.any():
                return "empty mask"
            _write_png(target, mask, fill)
            return None

        with ThreadPoolExecutor(max(workers, 1)) as pool:
            results = pool.map(one, range(len(todo)))
            for reason in tqdm(results, total=len(todo), desc=f"masks {split}", unit="frame", disable=not progress):
                if reason is None:
                    written += 1
                else:
                    rejected[reason] += 1
    return written, existing, rejected


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segment.masks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/InterHand/5"), help="dataset root (default: "
                        "%(default)s; a synthetic capture such as data/synthetic works the same)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--capture", type=int, default=0)
    parser.add_argument("--seq", action="append", required=True, help="sequence name; repeat for several")
    parser.add_argument("--camera", help="only this camera id (default: all cameras)")
    parser.add_argument("--hand", choices=("right", "left"), default="right")
    parser.add_argument("--model", help="MANO-format file or folder, or open_hand (default: the capture's model "
                        "for a synthetic capture, else mano/)")
    parser.add_argument("--no-filter", action="store_true", help="keep the raw projected silhouette")
    parser.add_argument("--fill", choices=FILLS, default="coverage", help="coverage: pixels at least half covered "
                        "(default); published: vertices rounded to whole pixels, every pixel an edge touches (the "
                        "published masks, about half a pixel fatter)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite masks that exist")
    parser.add_argument("--tree", default=MASK_TREE, help="output tree next to images/ (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    subjects = [Subject(args.split, args.capture, seq, args.camera) for seq in args.seq]
    written, existing, rejected = make_masks(args.root, subjects, hand=args.hand, model=args.model,
                                             filtering=not args.no_filter, overwrite=args.overwrite,
                                             workers=args.workers, tree=args.tree, progress=not args.quiet,
                                             fill=args.fill)
    where = tree_path(args.root, args.tree, args.split, "")
    print(f"masks: {written} written, {existing} already there (--overwrite to redo), {sum(rejected.values())} "
          f"frames skipped" + "".join(f"\n  {n:6d}  {reason}" for reason, n in rejected.most_common()))
    print(f"wrote {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
