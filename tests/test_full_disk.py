"""A real full disk: each trainer (LBS weights, PairOF, the avatar) and the annotation cache write into a small tmpfs
that holds the previous checkpoint (cache) but has no room for the new one. The command prints one `error:` line
naming the file, exits with status 2, leaves every file as it was and no temporary file; with the tmpfs grown, the
rerun completes. tests/test_kill.py simulates the same with a file-size limit, which runs anywhere; this needs a
`mount` (root, or CAP_SYS_ADMIN) and skips, saying so, where it is not permitted (marker `kill`: CI runs it as root).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smplx.utils.fileio import remove_stale_temporaries
from smplx.utils.training import previous_checkpoint
from tests.cli_cases import full_disk_line
from tests.hand_fixtures import train_tiny_pairof
from tests.test_kill import (ENV, ROOT, _kill_while_writing, _no_temporaries_left, _run, avatar_args, lbs_args,
                             pairof_args)

ROOMY = 256 * 2 ** 20  # bytes: the tmpfs before and after it is full
NO_ROOM = "No space left on device"


class _Tmpfs:
    """tmpfs mounts made by one test, all unmounted at its end (the fixture's teardown)."""

    def __init__(self):
        self.mounted: list[Path] = []

    def mount(self, folder: Path, size: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                    capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            pytest.skip("no mount command here: the tmpfs full-disk cases need it (tests/test_kill.py's file-size "
                        "limit covers the same writes)")
        if result.returncode:
            pytest.skip(f"mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN): "
                        f"{result.stderr.strip()}")
        self.mounted.append(folder)

    @staticmethod
    def resize(folder: Path, size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True,
                       timeout=60)

    def unmount_all(self) -> None:
        for folder in reversed(self.mounted):
            subprocess.run(["umount", str(folder)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def tmpfs():
    mounts = _Tmpfs()
    try:
        yield mounts
    finally:
        mounts.unmount_all()


def _used(folder: Path) -> int:
    """Bytes in use on the file system of `folder`."""
    stat = os.statvfs(folder)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file under `folder` with its bytes (TensorBoard's event files aside: each run starts one)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and "board" not in p.parts}


def _no_room(command: list[str], folder: Path, new_file: Path, room: int) -> None:
    """Shrink the tmpfs at `folder` to `room` bytes more than it holds, run `command` (which then fails writing
    `new_file`): one error line naming it, exit status 2, every file as it was, no temporary file left."""
    before = _files(folder)
    used = _used(folder)
    _Tmpfs.resize(folder, used + room)
    print(f"{command[2]}: a tmpfs of {used + room:,} bytes holding {used:,} ({new_file.name}: "
          f"{new_file.stat().st_size:,} bytes) is full writing {new_file.name}")
    result = subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        full_disk_line(new_file, NO_ROOM)], result.stderr[-3000:]
    assert [str(p) for p, data in before.items() if p.read_bytes() != data] == []
    _no_temporaries_left(folder)
    _Tmpfs.resize(folder, ROOMY)


def _trainer_on_a_full_tmpfs(tmpfs: _Tmpfs, module_args: list[str], checkpoint: Path) -> dict:
    """The run folder is a tmpfs. The run is killed in its third checkpoint write (the checkpoint and the previous
    one in place), the tmpfs shrunk to half a checkpoint more than it holds, the run resumed: its next checkpoint
    write fails. Then, with room, the rerun completes. Returns its final checkpoint."""
    tmpfs.mount(checkpoint.parent, ROOMY)
    _kill_while_writing(module_args, "complete", 3)
    remove_stale_temporaries(checkpoint)  # the killed write's complete temporary would free a checkpoint's room
    assert checkpoint.is_file() and previous_checkpoint(checkpoint).is_file()
    _no_room([sys.executable, "-m", *module_args], checkpoint.parent, checkpoint, checkpoint.stat().st_size // 2)
    _run(["-m", *module_args])
    _no_temporaries_left(checkpoint.parent)
    return torch.load(checkpoint, weights_only=True)


@pytest.mark.kill
def test_lbs_pretraining_on_a_full_tmpfs(tmpfs, tmp_path):
    state = _trainer_on_a_full_tmpfs(tmpfs, lbs_args(tmp_path, "full"), tmp_path / "full" / "checkpoint.pt")
    assert state["step"] == 8 and (tmp_path / "full" / "lbs_weights.pth").is_file()


@pytest.mark.kill
def test_pairof_pretraining_on_a_full_tmpfs(tmpfs, tmp_path):
    state = _trainer_on_a_full_tmpfs(tmpfs, pairof_args(tmp_path, "full"), tmp_path / "full" / "checkpoint.pt")
    assert state["step"] == 6 and (tmp_path / "full" / "pairof.ckpt").is_file()


@pytest.mark.kill
def test_avatar_training_on_a_full_tmpfs(tmpfs, synthetic_capture, tmp_path):
    train_tiny_pairof(tmp_path)
    shutil.copytree(synthetic_capture, tmp_path / "capture")
    from segment.preprocess import load_cache
    # the trainer's annotation cache made first, so that its atomic writes (which the kill counts) are its checkpoints
    load_cache(tmp_path / "capture", "test/Capture0/ROM04_RT_Occlusion", model="open_hand", progress=False)
    state = _trainer_on_a_full_tmpfs(tmpfs, avatar_args(tmp_path, "full"), tmp_path / "runs" / "full" / "latest.tar")
    assert state["iter"] == 8


@pytest.mark.kill
def test_annotation_cache_on_a_full_tmpfs(tmpfs, synthetic_capture, tmp_path):
    """The subject's cache folder is a tmpfs holding the previous cache, with room for half of it: segment.preprocess
    fails writing the new one; with room, the rerun writes the same arrays."""
    from segment.annotations import Subject
    from segment.preprocess import AnnotationCache, cache_path
    root = tmp_path / "capture"
    shutil.copytree(synthetic_capture, root)
    subject = "test/Capture0/ROM04_RT_Occlusion"
    cache = cache_path(root, Subject.parse(subject))
    tmpfs.mount(cache.parent, ROOMY)
    command = [sys.executable, "-m", "segment.preprocess", "--root", str(root), "--subject", subject, "--quiet",
               "--workers", "1"]
    subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, timeout=600, check=True)
    previous = AnnotationCache.load(cache)
    _no_room(command, cache.parent, cache, cache.stat().st_size // 2)
    subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, timeout=600, check=True)
    _no_temporaries_left(cache.parent)
    written = AnnotationCache.load(cache)
    for name, value in vars(previous).items():
        assert np.array_equal(value, vars(written)[name]) if isinstance(value, np.ndarray) else value == vars(
            written)[name], name
