"""Scale: one subject's annotation cache built from annotation files the size of the real InterHand2.6M release.

    python -m bench.annotation_scale --out /tmp/interhand_scale --split test --images 352897
    python -m bench.annotation_scale --out /tmp/interhand_train --split train --images 1361062

Writes the four annotation files of one split in the release's layout (segment.interhand) and counts, compact JSON
with float32 values written out in full as the release does: --images images over --captures captures x --cameras
cameras x --sequences sequences per capture (the frames per sequence follow), one annotation per image, each
sequence one hand type (right, left, interacting in turn), 3D joints and MANO parameters per frame. Image totals
from the InterHand2.6M paper: train 1,361,062, val 380,125, test 849,160 (30 fps); the 5 fps v0.0 test split 352,897.
The captures, cameras and sequences per capture are our assumption (the defaults). No images but those of the subject
measured (Capture0/ROM04_RT_Occlusion, right hand, every camera): one picture and its mask, linked (symlinks) under
each of its file names, so that the image checks pass.

Then a fresh process builds that subject's cache as segment.preprocess does and reports each part's wall and CPU time
(reading and indexing the split; selecting the subject's frames; image checks, posing and saving) and its peak
resident memory (VmHWM), beside the peak after the imports. Files are written once per settings (--out/settings.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segment.interhand import (ANNOTATION_KINDS, IMAGE_TREE, MASK_TREE, annotation_path, hand_joints,
                               image_file_name, tree_path)

__all__ = ["write_split", "SUBJECT_SEQUENCE"]

SUBJECT_SEQUENCE = "ROM04_RT_Occlusion"  # Capture0's sequence 0: the published test subject's name, right hand
HAND_TYPES = ("right", "left", "interacting")
WIDTH, HEIGHT = 334, 512  # the 5 fps release's image size


def _numbers(values: np.ndarray) -> str:
    """JSON of a float array as the release writes it: float32 values in full (e.g. -220.40086364746094)."""
    return json.dumps(values.astype(np.float32).astype(float).tolist())


def write_split(root: Path, split: str, images: int, *, captures: int, cameras: int, sequences: int,
                seed: int = 0) -> int:
    """Write the four annotation files of `split` under `root`; returns the frames per sequence (images are spread
    over captures x sequences x frames x cameras, the last sequence of the last capture taking the remainder)."""
    rng = np.random.default_rng(seed)
    per_sequence = images // (captures * sequences * cameras)
    camera_ids = [str(400000 + 2 * k) for k in range(cameras)]
    path = annotation_path(root, split, "data")
    path.parent.mkdir(parents=True, exist_ok=True)
    joint_3d, mano, camera = {}, {}, {}
    written = 0
    with open(path, "w") as data, open(path.with_suffix(".annotations.part"), "w") as notes:
        data.write('{"images": [')
        notes.write('"annotations": [')
        for capture in range(captures):
            joint_3d[str(capture)], mano[str(capture)] = {}, {}
            frame_idx = 10000
            for sequence in range(sequences):
                hand = HAND_TYPES[sequence % 3]
                name = SUBJECT_SEQUENCE if sequence == 0 else f"SEQ{sequence:02d}_{hand}"
                frames = per_sequence
                if capture == captures - 1 and sequence == sequences - 1:
                    frames = -(-(images - written) // cameras)
                valid = "[" + ", ".join("[1]" if hand != "left" and i < 21 or hand != "right" and i >= 21
                                        else "[0]" for i in range(42)) + "]"
                for _ in range(frames):
                    frame_idx += 1
                    for cam in camera_ids:
                        if written == images:
                            break
                        separator = ", " if written else ""
                        box = _numbers(np.array([90, 140, 150, 180]) + rng.uniform(-20, 20, 4))
                        data.write(f'{separator}{{"id": {written}, "file_name": '
                                   f'"{image_file_name(capture, name, cam, frame_idx)}", "width": {WIDTH}, '
                                   f'"height": {HEIGHT}, "capture": {capture}, "subject": {capture}, '
                                   f'"seq_name": "{name}", "camera": "{cam}", "frame_idx": {frame_idx}}}')
                        notes.write(f'{separator}{{"id": {written}, "image_id": {written}, "bbox": {box}, '
                                    f'"joint_valid": {valid}, "hand_type": "{hand}", "hand_type_valid": 1}}')
                        written += 1
                    world = _numbers(rng.normal(0, 50, (42, 3)) + [0, 0, 1000])
                    joint_3d[str(capture)][str(frame_idx)] = (
                        f'{{"world_coord": {world}, "joint_valid": {valid.replace("1", "true").replace("0", "false")}'
                        f', "hand_type": "{hand}", "hand_type_valid": true}}')
                    mano[str(capture)][str(frame_idx)] = "{" + ", ".join(
                        f'"{side}": ' + (f'{{"pose": {_numbers(rng.normal(0, 0.2, 48))}, "shape": '
                                         f'{_numbers(rng.normal(0, 0.5, 10))}, "trans": '
                                         f'{_numbers(rng.normal(0, 0.05, 3))}}}'
                                         if hand in (side, "interacting") else "null")
                        for side in ("right", "left")) + "}"
            rotations = [_numbers(_rotation(rng)) for _ in camera_ids]
            camera[str(capture)] = (
                '{"campos": {' + ", ".join(f'"{c}": {_numbers(rng.normal(0, 500, 3))}' for c in camera_ids)
                + '}, "camrot": {' + ", ".join(f'"{c}": {r}' for c, r in zip(camera_ids, rotations))
                + '}, "focal": {' + ", ".join(f'"{c}": {_numbers(rng.uniform(1200, 1300, 2))}' for c in camera_ids)
                + '}, "princpt": {' + ", ".join(f'"{c}": {_numbers(np.array([WIDTH / 2, HEIGHT / 2]))}'
                                                for c in camera_ids) + "}}")
        notes.write("]}")
        data.write("], ")
    with open(path, "a") as data, open(path.with_suffix(".annotations.part")) as notes:
        while chunk := notes.read(1 << 24):
            data.write(chunk)
    path.with_suffix(".annotations.part").unlink()
    for kind, content in (("camera", camera), ("joint_3d", joint_3d), ("MANO_NeuralAnnot", mano)):
        text = "{" + ", ".join(f'"{capture}": {_nested(value)}' for capture, value in content.items()) + "}"
        annotation_path(root, split, kind).write_text(text)
    return per_sequence


def _nested(value) -> str:
    """A capture's entry: a JSON text already, or a dict of frame -> JSON text."""
    if isinstance(value, str):
        return value
    return "{" + ", ".join(f'"{key}": {text}' for key, text in value.items()) + "}"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """(3, 3) a random rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def link_subject_images(root: Path, split: str, *, cameras: int, frames: int) -> int:
    """One hand picture and its mask, linked under the file name of every image of the subject (the first sequence of
    Capture0 as `write_split` writes it: `frames` frames x `cameras` cameras); returns how many."""
    names = [image_file_name(0, SUBJECT_SEQUENCE, str(400000 + 2 * k), 10001 + f) for f in range(frames)
             for k in range(cameras)]
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    inside = ((xx - 165) / 70) ** 2 + ((yy - 230) / 90) ** 2 <= 1
    picture = np.where(inside[..., None], [200, 150, 120], [40, 60, 80]).astype(np.uint8)
    source = root / "source"
    source.mkdir(exist_ok=True)
    Image.fromarray(picture).save(source / "image.jpg", quality=95)
    Image.fromarray(np.repeat((inside * 255).astype(np.uint8)[..., None], 3, axis=2)).save(source / "mask.png")
    for name in names:
        for tree, suffix, original in ((IMAGE_TREE, None, "image.jpg"), (MASK_TREE, ".png", "mask.png")):
            target = tree_path(root, tree, split, name, suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.symlink_to(source / original)
    return len(names)


def _peak_mb() -> float:
    """This process's peak resident memory, MB: VmHWM (ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB where /proc is missing


def measure(root: Path, split: str) -> dict:
    """Build the subject's cache in this process, as segment.preprocess does; the parts' seconds and peak memory."""
    from segment.annotations import SplitAnnotations, Subject
    from segment.preprocess import build_cache
    imports = _peak_mb()
    subject = Subject(split, 0, SUBJECT_SEQUENCE)
    clocks = [(time.perf_counter(), time.process_time())]
    annotations = SplitAnnotations(root, split)
    clocks.append((time.perf_counter(), time.process_time()))
    records, _ = annotations.frames(subject)
    clocks.append((time.perf_counter(), time.process_time()))
    cache, rejected = build_cache(root, subject, model="open_hand", workers=2, progress=False,
                                  annotations=annotations)
    clocks.append((time.perf_counter(), time.process_time()))
    parts = ("read and index the split", "select the subject's frames",
             "build the cache: select, image checks, posing, save")
    found = {}
    for name, (wall0, cpu0), (wall1, cpu1) in zip(parts, clocks, clocks[1:]):
        found[f"{name} (s wall / CPU)"] = f"{wall1 - wall0:.1f} / {cpu1 - cpu0:.1f}"
    found["total (s wall / CPU)"] = f"{clocks[-1][0] - clocks[0][0]:.1f} / {clocks[-1][1] - clocks[0][1]:.1f}"
    return {**found, "frames kept": len(cache), "frames skipped": sum(rejected.values()),
            "subject images": len(records), "peak memory after imports (MB)": imports, "peak memory (MB)": _peak_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.annotation_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where the generated files go (not the repository)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--images", type=int, default=352_897, help="images in the split (default: %(default)s)")
    parser.add_argument("--captures", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=80)
    parser.add_argument("--sequences", type=int, default=40, help="per capture")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.out, args.split)))
        return 0
    settings = {k: getattr(args, k) for k in ("split", "images", "captures", "cameras", "sequences")}
    manifest = args.out / "settings.json"
    if not manifest.is_file() or json.loads(manifest.read_text()) != settings:
        start = time.perf_counter()
        per_sequence = write_split(args.out, args.split, args.images, captures=args.captures, cameras=args.cameras,
                                   sequences=args.sequences)
        linked = link_subject_images(args.out, args.split, cameras=args.cameras, frames=per_sequence)
        manifest.write_text(json.dumps(settings))
        print(f"wrote {args.images:,} images' annotations ({per_sequence} frames x {args.cameras} cameras per "
              f"sequence) and linked {linked:,} subject images in {time.perf_counter() - start:.0f} s")
    sizes = {kind: annotation_path(args.out, args.split, kind).stat().st_size / 2 ** 20 for kind in ANNOTATION_KINDS}
    print("annotation files: " + ", ".join(f"{kind} {mb:,.0f} MB" for kind, mb in sizes.items()))
    result = subprocess.run([sys.executable, "-m", "bench.annotation_scale", "--out", str(args.out), "--split",
                             args.split, "--measure"], capture_output=True, text=True, check=True)
    for name, value in json.loads(result.stdout.splitlines()[-1]).items():
        print(f"{name:68s} {value:,.0f}" if isinstance(value, float) else f"{name:68s} {value:,}" if isinstance(
            value, int) else f"{name:68s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
