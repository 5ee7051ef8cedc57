"""The demo runner killed (`make demo`, handavatar.demo): a tiny demo in a folder of its own is killed with SIGKILL at
random moments and while a stage writes a file, rerun until it finishes, and its final outputs are compared with an
uninterrupted run's.

The tiny demo is the real runner and the real stage commands (scripts/*.sh and python -m, copied scripts and the
repository's .venv linked into the folder, the packages on PYTHONPATH) on tiny configs, from the first stage (the open
hand) on; the synthetic stage renders the tests' small capture (SMALL_CAPTURE's settings added to its command: its
defaults, 360 frames, would take minutes). The kill takes the runner's whole process group, as a dying machine or a
closed terminal does: SIGKILL to the runner alone would leave its stage running."""

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.hand_fixtures import SMALL_CAPTURE

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
_SMALL_CAPTURE = ("--train-frames", str(SMALL_CAPTURE.train_frames), "--eval-frames", str(SMALL_CAPTURE.eval_frames),
                  "--cameras", str(SMALL_CAPTURE.cameras), "--seed", str(SMALL_CAPTURE.seed), "--workers", "1")
# The runner with its root moved to the current folder (handavatar.demo reads its configs and runs its stages there),
# its synthetic stage rendering the small capture.
_DEMO = ("import dataclasses, sys\nfrom pathlib import Path\nimport handavatar.demo as demo\ndemo.ROOT = Path.cwd()\n"
         "stages = demo.demo_stages\ndemo.demo_stages = lambda root: [dataclasses.replace(s, command=(*s.command, "
         f"*{_SMALL_CAPTURE!r})) if s.name == 'synthetic' else s for s in stages(root)]\nsys.exit(demo.main([]))")
_CONFIGS = {
    "configs/synthetic/demo.yaml": """
        experiment: synthetic_demo
        device: cpu
        N_samples: 4
        data: {eval_skip: 1, resolution: 48}
        smpl_cfg: {levels: 1}
        network: {code_dim: 8}
        patch: {N_patches: 1, size: 4}
        train: {maxiter: 6, accum_iter: 2, save_every: 2, log_every: 1, progress_every: 0, ema: 0.9,
                lossweights: {lpips: 0}}
        run: {views: 2, frames: 2}
        """,
    "configs/lbs/demo.yaml": """
        name: demo_lbs
        device: cpu
        model: {levels: 1}
        steps: 4
        batch: 2
        lr: 1.0e-2
        poses: {pool: 50}
        checkpoint_every: 1
        snapshot_every: 0
        eval_poses: 2
        """,
    "configs/pairof/demo.yaml": """
        name: demo
        device: cpu
        model: {levels: 1}
        field: {part_samples: 32, anchors: 256}
        steps: 4
        batch: 1
        points: {per_part: 16}
        checkpoint_every: 1
        eval_poses: 1
        eval_points: 256
        mesh_resolution: 8
        """,
}
_DEFAULTS = ("configs/default.yaml", "configs/lbs/default.yaml", "configs/pairof/default.yaml")


def _tiny_demo(folder: Path) -> Path:
    """A demo root: tiny configs, the scripts, the repository's .venv; no hand model, no capture."""
    for name in _DEFAULTS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, folder / name)
    for name, text in _CONFIGS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("\n".join(line[8:] for line in text.splitlines()[1:]))
    shutil.copytree(ROOT / "scripts", folder / "scripts")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def _start(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _DEMO], cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the runner and the stage it runs
    process.wait()


def _finish(folder: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _DEMO], cwd=folder, env=ENV, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return time.perf_counter() - start


def _kill_at(folder: Path, seconds: float) -> bool:
    """Run the demo, SIGKILL it after `seconds`; False if it finished first."""
    process = _start(folder)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        _kill(process)
        return True


def _alive(pid: str) -> bool:
    """A temporary file's writer is running (not a file a killed run left behind)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    return True


def _temporaries(folder: Path) -> list[Path]:
    """The atomic writes' temporary files `.<name>.<pid>.tmp` under `folder` (not below the .venv link)."""
    return [Path(top, name) for top, _, names in os.walk(folder) for name in names
            if name.startswith(".") and name.endswith(".tmp")]


def _kill_while_writing(folder: Path, after: float, within: str = ".") -> str | None:
    """Run the demo and, from `after` seconds on, SIGKILL it as soon as a stage has a file half-written (an atomic
    write's temporary `.<name>.<pid>.tmp`) under the folder `within`; returns that file's name, None if the demo
    finished first."""
    process = _start(folder)
    deadline = time.monotonic() + after
    while process.poll() is None:
        if time.monotonic() >= deadline:
            writing = [p for p in _temporaries(folder / within) if _alive(p.name.rsplit(".", 2)[-2])]
            if writing:
                _kill(process)
                return str(writing[0].relative_to(folder))
        time.sleep(0.002)
    return None


def _state(folder: Path, stage: str) -> str | None:
    """The state in the stage's stamp ('running', 'done', ...); None before it ever started."""
    try:
        return json.loads((folder / "out/demo/stamps" / f"{stage}.json").read_text())["state"]
    except (FileNotFoundError, json.JSONDecodeError):  # not there, or being replaced
        return None


def _started(folder: Path, stage: str, since: int) -> bool:
    """The stage started (its stamp rewritten as 'running') at `since` (time.time_ns()) or later."""
    stamp = folder / "out/demo/stamps" / f"{stage}.json"
    try:
        return stamp.stat().st_mtime_ns >= since and _state(folder, stage) == "running"
    except FileNotFoundError:
        return False


def _kill_when(folder: Path, stage: str, reached) -> bool:
    """Run the demo and SIGKILL it as soon as `stage` has started in this run and `reached(folder)` holds (part of
    its work is done); True if `stage` was still running then (a moment inside it, whatever the machine's load)."""
    since = time.time_ns()
    process = _start(folder)
    while process.poll() is None and not (_started(folder, stage, since) and reached(folder)):
        time.sleep(0.005)
    if process.poll() is not None:
        return False
    _kill(process)
    return _state(folder, stage) == "running"


def _count(folder: Path, suffix: str) -> int:
    return sum(name.endswith(suffix) for _, _, names in os.walk(folder) for name in names)


def _stamp_seconds(folder: Path, stage: str) -> float:
    """Seconds the stage took (in a run that finished it)."""
    return json.loads((folder / "out/demo/stamps" / f"{stage}.json").read_text())["seconds"]


def _left(straight: Path, killed: Path) -> float:
    """Seconds the uninterrupted run spent in the stages the killed one has not finished (from the stage stamps)."""
    left = 0.0
    for stamp in (straight / "out/demo/stamps").glob("*.json"):
        mine = killed / "out/demo/stamps" / stamp.name
        if not mine.is_file() or json.loads(mine.read_text())["state"] != "done":
            left += json.loads(stamp.read_text())["seconds"]
    return left


def _outputs(folder: Path) -> dict[str, object]:
    """What the demo leaves that an uninterrupted run determines: the open hand's files and every file of the capture
    (masks included) as bytes, the trained files' tensors (not the training's wall-clock seconds), the caches'
    arrays, the validation figures, the videos' bytes."""
    experiment = folder / "handavatar/out/handavatar/synthetic_demo"
    found = {str(p.relative_to(folder)): p.read_bytes() for p in sorted([*(folder / "mano").iterdir(),
                                                                         *(folder / "data/synthetic").rglob("*")])
             if p.is_file() and p.suffix != ".npz"}
    for name in ("smplx/out/demo_lbs/lbs_weights.pth", "smplx/out/pretrained_lbs_weights/lbs_weights.pth",
                 "smplx/out/demo_lbs/checkpoint.pt", "pairof/out/demo/pairof.ckpt",
                 "pairof/out/pretrained_pairof/pairof.ckpt", f"{experiment.relative_to(folder)}/latest.tar"):
        found[name] = torch.load(folder / name, weights_only=True, map_location="cpu")
    for cache in sorted(folder.glob("data/synthetic/InterHand2.6M_5fps_batch1/preprocess/**/*.npz")):
        with np.load(cache) as data:
            found[str(cache.relative_to(folder))] = {key: data[key] for key in data.files}
    summary = (experiment / "val/summary.json").read_text()
    found["val/summary.json"] = summary
    for mode in ("freepose", "freeview"):
        for suffix in ("mp4", "gif"):
            found[f"{mode}.{suffix}"] = (experiment / mode / f"{mode}.{suffix}").read_bytes()
    return found


def _assert_equal(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            # the run's config names its folder; seconds: its training time; a cache's fingerprint hashes the
            # modification times of the capture's files (each demo renders its own)
            if key not in ("config", "seconds", "fingerprint"):
                _assert_equal(a[key], b[key], f"{where}.{key}")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.kill
def test_demo_runner_survives_kills(tmp_path):
    setup = _tiny_demo(tmp_path / "setup")
    shutil.copytree(setup, tmp_path / "straight", symlinks=True)
    shutil.copytree(setup, tmp_path / "killed", symlinks=True)
    straight = _finish(tmp_path / "straight")
    killed, rng, writes, moments = tmp_path / "killed", random.Random(5), [], 0
    seconds = {stage: _stamp_seconds(tmp_path / "straight", stage) for stage in ("open_hand", "synthetic")}
    # inside the open hand stage: its right hand written, its picture and left hand not yet
    in_stage = [_kill_when(killed, "open_hand", lambda f: (f / "mano/OPEN_HAND_RIGHT.pkl").is_file())]
    images = rng.randint(1, _count(tmp_path / "straight/data/synthetic", ".jpg") - 1)  # inside the synthetic stage
    in_stage.append(_kill_when(killed, "synthetic", lambda f: _count(f / "data/synthetic", ".jpg") >= images))
    writes.append(_kill_while_writing(killed, 0.0, within="data/synthetic"))  # a picture of the capture, or a mask
    for _ in range(3):  # each rerun skips the stages done: the kills come within what is left to do
        moments += _kill_at(killed, rng.uniform(0.2, 0.8) * _left(tmp_path / "straight", killed))
        writes.append(_kill_while_writing(killed, rng.uniform(0.0, 0.5) * _left(tmp_path / "straight", killed)))
    _finish(killed)
    print(f"demo ({straight:.0f} s uninterrupted; open hand {seconds['open_hand']:.1f} s, synthetic capture "
          f"{seconds['synthetic']:.1f} s): killed inside the open hand stage and the synthetic one (at its {images}th "
          f"image) {in_stage}, at {moments} of 3 random moments and while writing {writes}")
    assert in_stage == [True, True]
    assert not _temporaries(killed)
    a, b = _outputs(tmp_path / "straight"), _outputs(killed)
    _assert_equal(a, b, "demo")


def test_a_stage_removes_the_temporaries_of_killed_runs(tmp_path):
    """Before a stage runs, the runner removes the `.<name>.<pid>.tmp` files of dead processes next to its outputs
    (a killed validation left one in texture_baseline/, beside its val/ folder), and keeps a live process's."""
    from handavatar.stages import Stage, StageRunner
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "run" / "texture_baseline" / f".frames.png.{dead.stdout.strip()}.tmp"
    live = tmp_path / "run" / "texture_baseline" / f".frames.png.{os.getpid()}.tmp"
    stale.parent.mkdir(parents=True)
    for path in (stale, live):
        path.write_bytes(b"half")
    stage = Stage("val", ("python", "-c", "import pathlib; pathlib.Path('run/val').mkdir(); "
                                          "pathlib.Path('run/val/summary.json').write_text('{}')"),
                  outputs=("run/val/summary.json",), fresh=("run/val",))
    StageRunner([stage], root=tmp_path, echo=io.StringIO()).run()
    assert not stale.exists() and live.exists()
