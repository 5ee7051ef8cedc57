"""Kill at any moment: each trainer (LBS weights, PairOF, avatar) is killed with SIGKILL at random moments and while a
checkpoint is being written (half-way through the temporary file, and after it is complete but before it replaces the
previous one), run on a full disk (a file-size limit), and resumed from the previous checkpoint after its checkpoint
was truncated; then rerun until it finishes, the result equals an uninterrupted run's bit for bit (float32, one
thread). The processes are real `python -m` runs; the kills during a write come from a wrapper that patches the
project's atomic writer to kill its own process at the n-th atomic write (see `_KILLER`)."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from smplx.utils.training import previous_checkpoint
from tests.cli_cases import file_size_limit, full_disk_line
from tests.hand_fixtures import train_tiny_pairof

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

# Runs a module as `python -m` would, with smplx.utils.fileio's writer killing the process at the KILL_AT-th atomic
# write: 'partial' after the first bytes of the temporary file, 'complete' after the whole file, before it replaces
# the old one.
_KILLER = """
import os, runpy, signal, sys
import smplx.utils.fileio as fileio
when, nth = os.environ["KILL_WHEN"], int(os.environ["KILL_AT"])
count, real_atomic, real_write = [0], fileio.atomic_write, fileio._WriteErrors.write
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def write(self, data):
    written = real_write(self, data)
    if when == "partial" and count[0] == nth:
        self.flush()
        die()
    return written
def atomic_write(path, writer, **options):
    count[0] += 1
    if when == "complete" and count[0] == nth:
        return real_atomic(path, lambda f: (writer(f), f.flush(), die()), **options)
    return real_atomic(path, writer, **options)
fileio._WriteErrors.write = write
fileio.atomic_write = atomic_write
for name, module in list(sys.modules.items()):
    if getattr(module, "atomic_write", None) is real_atomic:
        module.atomic_write = atomic_write
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
import importlib
for name in ("smplx.utils.training", "smplx.manohd.train_lbs", "pairof.train", "handavatar.train"):
    loaded = importlib.import_module(name)
    if getattr(loaded, "atomic_write", None) is real_atomic:
        loaded.atomic_write = atomic_write
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _run(args: list[str], **env) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args], env={**ENV, **env}, cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return time.perf_counter() - start


def _kill_after(args: list[str], seconds: float) -> bool:
    """Start `python args`, SIGKILL it after `seconds`; False if it finished first."""
    process = subprocess.Popen([sys.executable, *args], env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _kill_while_writing(module_args: list[str], when: str, nth: int) -> str:
    """Run the module until its nth atomic write, killed there; returns its stderr."""
    result = subprocess.run([sys.executable, "-c", _KILLER, *module_args], env={**ENV, "KILL_WHEN": when,
                            "KILL_AT": str(nth)}, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]  # it did die inside that write
    return result.stderr


def _full_disk(module_args: list[str], first: Path, limit: int) -> None:
    """Run with a file-size limit of `limit` bytes (as on a full disk), so that the write of `first` fails half-way:
    one error line naming it, exit status 2, every file already there unchanged, no temporary file left."""
    folder = first.parent
    before = {p: p.read_bytes() for p in folder.rglob("*")
              if p.is_file() and "board" not in p.parts and not p.name.endswith(".tmp")}  # the kills' temporaries go
    result = subprocess.run([sys.executable, "-m", *module_args], env=ENV, cwd=ROOT, capture_output=True, text=True,
                            timeout=600, preexec_fn=file_size_limit(limit))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [full_disk_line(first)]
    assert [str(path) for path, data in before.items() if path.read_bytes() != data] == []
    _no_temporaries_left(folder)


def _no_temporaries_left(folder: Path) -> None:
    """The killed writes' temporary files were removed by the rerun (smplx.utils.fileio.remove_stale_temporaries)."""
    assert not list(folder.rglob(".*.tmp"))


def _interrupted(module_args: list[str], straight_seconds: float, seed: int, checkpoint: Path) -> int:
    """Kill a run twice while it writes its first checkpoint; kill it in its third (so that `checkpoint` and the
    previous one are in place); run it on a full disk (a file-size limit of half the checkpoint: it resumes, then
    its next checkpoint write fails); truncate the checkpoint and kill the run that falls back to the previous one
    in its first write; kill it twice at random moments of its wall time; then let it finish. Returns how many random
    kills landed before the run ended."""
    _kill_while_writing(module_args, "partial", 1)
    _kill_while_writing(module_args, "complete", 1)
    _kill_while_writing(module_args, "complete", 3)
    previous = previous_checkpoint(checkpoint)
    assert checkpoint.is_file() and previous.is_file()
    _full_disk(module_args, checkpoint, checkpoint.stat().st_size // 2)
    checkpoint.write_bytes(checkpoint.read_bytes()[:checkpoint.stat().st_size // 3])
    stderr = _kill_while_writing(module_args, "partial", 1)
    assert f"; resuming from the previous checkpoint {previous}" in stderr, stderr[-3000:]
    rng, kills = random.Random(seed), 0
    for _ in range(2):
        kills += _kill_after(["-m", *module_args], rng.uniform(0.3, 0.9) * straight_seconds)
    _run(["-m", *module_args])
    print(f"{module_args[0]}: killed in 4 checkpoint writes and at {kills} of 2 random moments; one full disk, one "
          "truncated checkpoint (resumed from the previous one)")
    return kills


def _assert_equal_states(a: dict, b: dict, keys=None) -> None:
    """Every tensor and value of two states equal (the run's config aside: it names the run)."""
    for key in keys or set(a) - {"config"}:
        if isinstance(a[key], dict):
            _assert_equal_states(a[key], b[key])
        elif torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.kill
def lbs_args(tmp_path: Path, name: str) -> list[str]:
    """The tiny LBS-weight pretraining of the kill and full-disk tests, into <tmp_path>/<name>/."""
    return ["smplx.manohd.train_lbs", f"model.path={tmp_path / 'no_mano'}", "model.levels=1", "steps=8", "batch=2",
            "poses.pool=50", "checkpoint_every=1", "snapshot_every=0", "eval_poses=2", "publish=false", "device=cpu",
            "lr=1.0e-2", f"out_root={tmp_path}", f"name={name}"]


def pairof_args(tmp_path: Path, name: str) -> list[str]:
    """The tiny PairOF pretraining of the kill and full-disk tests, into <tmp_path>/<name>/."""
    return ["pairof.train", "model.path=open_hand", "model.levels=1", "model.lbs_weights=", "field.part_samples=32",
            "field.anchors=256", "batch=1", "points.per_part=16", "eval_poses=1", "eval_points=256",
            "mesh_resolution=8", "publish=false", "precision=float32", "steps=6", "checkpoint_every=1",
            f"out_root={tmp_path}", f"name={name}"]


def avatar_args(tmp_path: Path, experiment: str) -> list[str]:
    """The tiny avatar training of the kill and full-disk tests, into <tmp_path>/runs/<experiment>/, on the capture
    in <tmp_path>/capture and the PairOF of `train_tiny_pairof(tmp_path)`."""
    return ["handavatar.train", f"out_root={tmp_path / 'runs'}", f"data.root={tmp_path / 'capture'}",
            "smpl_cfg.model_path=open_hand", "smpl_cfg.levels=1", "smpl_cfg.lbs_weights=",
            f"smpl_cfg.pairof={tmp_path / 'field' / 'pairof.ckpt'}", "N_samples=4", "patch.size=4",
            "network.code_dim=8", "train.accum_iter=2", "train.save_every=2", "train.log_every=1",
            "train.lossweights.lpips=0", "train.progress_every=0", "train.maxiter=8", "train.ema=0.9",
            "device=cpu", f"experiment={experiment}"]


@pytest.mark.kill
def test_lbs_pretraining_survives_kills(tmp_path):
    straight = _run(["-m", *lbs_args(tmp_path, "straight")])
    _interrupted(lbs_args(tmp_path, "killed"), straight, seed=1,
                 checkpoint=tmp_path / "killed" / "checkpoint.pt")
    _no_temporaries_left(tmp_path / "killed")
    for name in ("lbs_weights.pth", "checkpoint.pt"):
        a, b = (torch.load(tmp_path / run / name, weights_only=True) for run in ("straight", "killed"))
        _assert_equal_states({"x": a}, {"x": b})


@pytest.mark.kill
def test_pairof_pretraining_survives_kills(tmp_path):
    straight = _run(["-m", *pairof_args(tmp_path, "straight")])
    _interrupted(pairof_args(tmp_path, "killed"), straight, seed=2, checkpoint=tmp_path / "killed" / "checkpoint.pt")
    _no_temporaries_left(tmp_path / "killed")
    a, b = (torch.load(tmp_path / run / "pairof.ckpt", weights_only=True) for run in ("straight", "killed"))
    _assert_equal_states(a["state_dict"], b["state_dict"])


@pytest.mark.kill
def test_avatar_training_survives_kills(synthetic_capture, tmp_path):
    train_tiny_pairof(tmp_path)
    shutil.copytree(synthetic_capture, tmp_path / "capture")  # the trainer writes its annotation cache there
    straight = _run(["-m", *avatar_args(tmp_path, "straight")])
    _interrupted(avatar_args(tmp_path, "killed"), straight, seed=3,
                 checkpoint=tmp_path / "runs" / "killed" / "latest.tar")
    _no_temporaries_left(tmp_path / "runs" / "killed")
    a, b = (torch.load(tmp_path / "runs" / run / "latest.tar", weights_only=True) for run in ("straight", "killed"))
    assert a["iter"] == b["iter"] == 8
    _assert_equal_states(a, b, keys=("network", "trained_network"))
    _assert_equal_states(a["optimizer"]["state"], b["optimizer"]["state"])


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    """Only the temporary files of processes no longer running go: not this process's, not another file's."""
    from smplx.utils.fileio import remove_stale_temporaries
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = f".latest.tar.{dead.stdout.strip()}.tmp"
    files = {name: tmp_path / name for name in (stale, f".latest.tar.{os.getpid()}.tmp", ".other.tar.1.tmp",
                                                ".latest.tar.notapid.tmp")}
    for path in files.values():
        path.write_bytes(b"half")
    removed = remove_stale_temporaries(tmp_path / "latest.tar")
    assert removed == [files[stale]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(files) - {removed[0].name})
    (tmp_path / "sub").mkdir()
    deep = tmp_path / "sub" / f".image1.png.{dead.stdout.strip()}.tmp"
    deep.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path, tree=True) == [deep]  # every file's, anywhere below


@pytest.mark.kill
def test_synthetic_capture_survives_kills(tmp_path):
    """The synthetic capture (one worker) killed inside its 5th and 12th image writes and at a random moment, and
    run on a full disk (a file-size limit of half its smallest image: it fails at the next image, mask or ground-truth
    picture it writes), then rerun: every file it writes is byte for byte that of an uninterrupted run."""
    args = ["segment.synthetic", "--model", "open_hand", "--train-frames", "5", "--eval-frames", "2", "--cameras",
            "2", "--seed", "3", "--workers", "1", "--quiet"]
    straight = _run(["-m", *args, "--out", str(tmp_path / "straight")])
    killed = [*args, "--out", str(tmp_path / "killed")]
    _kill_while_writing(killed, "partial", 5)
    limit = min(p.stat().st_size for p in (tmp_path / "straight").rglob("*.jpg")) // 2
    assert (tmp_path / "straight" / "capture.json").stat().st_size < limit  # written first, it must fit
    _full_disk_capture(killed, tmp_path / "killed", limit)
    _kill_while_writing(killed, "complete", 12)
    _kill_after(["-m", *killed], random.Random(4).uniform(0.3, 0.9) * straight)
    _run(["-m", *killed])
    files = {root: {p.relative_to(tmp_path / root): p.read_bytes() for p in (tmp_path / root).rglob("*") if p.is_file()}
             for root in ("straight", "killed")}
    assert files["straight"].keys() == files["killed"].keys() and len(files["straight"]) > 50
    different = [str(name) for name, data in files["straight"].items() if files["killed"][name] != data]
    assert not different


def _full_disk_capture(args: list[str], out: Path, limit: int) -> None:
    """The capture run under a file-size limit: one error line naming the image it was writing, exit status 2,
    every file already there unchanged, no temporary file left."""
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.endswith(".tmp")}
    result = subprocess.run([sys.executable, "-m", *args], env=ENV, cwd=ROOT, capture_output=True, text=True,
                            timeout=600, preexec_fn=file_size_limit(limit))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    image = Path(errors[0].split(" writing ")[1].split("; ")[0])
    assert image.suffix in (".jpg", ".png") and out in image.parents and errors[0] == full_disk_line(image)
    assert [str(path) for path, data in before.items() if path.read_bytes() != data] == []
    _no_temporaries_left(out)
