"""The bad inputs tried on every command: tests/test_cli.py runs them, and this module writes the table of
docs/reliability.md (each case's exit status and error line, from the command's main() run in this process;
test_cli.py also runs some as subprocesses and through scripts/*.sh, which give the same).

    python -m tests.cli_cases > /tmp/table.md   # then paste it into docs/reliability.md

Each case is (command, arguments, what the error line must contain). `{w}` in an argument is a folder of bad inputs
made by `make_inputs`: a broken YAML, a corrupt JSON annotation file, a junk, a foreign and a NaN checkpoint, a NaN
model file, a NaN motion file, a broken capture manifest, and a file where a folder should be.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import resource
import signal
import subprocess
import tempfile
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # a `python -m` run as a user would, in the repository root

CASES: list[tuple[str, str, str]] = [
    ("handavatar.train", "--config nonexistent.yaml", "nonexistent.yaml does not exist"),
    ("handavatar.train", "--config {w}/broken.yaml", "broken.yaml: not valid YAML"),
    ("handavatar.train", "trian.lr=1", "unknown config key trian; did you mean train?"),
    ("handavatar.train", "train.lr=-1", "train.lr=-1.0 is out of range: it must be > 0"),
    ("handavatar.train", "train.lr=.nan", "train.lr must be a finite number"),
    ("handavatar.train", "patch.size=0", "patch.size=0 is out of range"),
    ("handavatar.train", "--config configs/synthetic/demo.yaml smpl_cfg.model_path=open_hand smpl_cfg.lbs_weights= "
                         "smpl_cfg.pairof={w}/junk.tar", "junk.tar cannot be read as a PairOF checkpoint"),
    ("handavatar.run", "run.ckpt=/nonexistent.tar", "checkpoint /nonexistent.tar does not exist"),
    ("handavatar.run", "run.ckpt={w}/junk.tar", "junk.tar cannot be read as an avatar checkpoint"),
    ("handavatar.run", "run.ckpt={w}/foreign.tar", "foreign.tar is not an avatar checkpoint"),
    ("handavatar.run", "run.ckpt={w}/nan.tar", "nan.tar: an avatar checkpoint (a latest.tar of handavatar.train) "
                                               "holds NaN or infinite values in network.albedo.codes"),
    ("handavatar.run", "run.views=0", "run.views=0 is out of range"),
    ("handavatar.demo", "--only nothing", "no stage 'nothing'"),
    ("handavatar.authors", "--lbs-weights /nonexistent.pth --pairof {w}/junk.tar --out {w}/authors",
     "/nonexistent.pth does not exist"),
    ("handavatar.authors", "--lbs-weights {w}/junk.tar --pairof {w}/junk.tar --out {w}/authors --field nope=1",
     "--field 'nope=1' is not key=value"),
    ("handavatar.export", "--checkpoint /nonexistent.tar --out {w}/a.glb", "--checkpoint /nonexistent.tar does not "
                                                                          "exist"),
    ("handavatar.export", "--checkpoint {w}/junk.tar --out {w}/a.gltf", "--out {w}/a.gltf must end in .glb"),
    ("handavatar.export", "--checkpoint {w}/junk.tar --out {w}/file/a.glb", "is a file, not a folder"),
    ("handavatar.export", "--checkpoint {w}/junk.tar --config configs/synthetic/demo.yaml --out {w}/a.glb",
     "junk.tar cannot be read"),
    ("handavatar.export.compare", "--checkpoint {w}/junk.tar --viewer {w} --out {w}/compare",
     "--viewer {w} holds no index.html"),
    ("smplx.manohd.train_lbs", "--config nonexistent.yaml", "nonexistent.yaml does not exist"),
    ("smplx.manohd.train_lbs", "lr=0", "lr=0.0 is out of range: it must be > 0"),
    ("smplx.manohd.train_lbs", "batch=0", "batch=0 is out of range: it must be >= 1"),
    ("smplx.manohd.train_lbs", "model.path={w}/nan_model.npz", "nan_model.npz: key 'v_template' holds NaN"),
    ("smplx.demo", "--model {w}/junk.pkl", "junk.pkl: not a readable MANO model pickle"),
    ("smplx.demo", "--model {w}/nan_model.npz", "nan_model.npz: key 'v_template' holds NaN"),
    ("smplx.demo", "--model /nonexistent.pkl", "hand model file /nonexistent.pkl does not exist"),
    ("smplx.demo", "--levels -1", "--levels -1 must be 0 or more"),
    ("smplx.open_hand", "--out {w}/file/sub", "--out {w}/file/sub cannot be written"),
    ("pairof.train", "--config {w}/broken.yaml", "broken.yaml: not valid YAML"),
    ("pairof.train", "lr=.inf", "lr must be a finite number"),
    ("pairof.train", "points.per_part=1", "points.per_part=1 is out of range: it must be >= 2"),
    ("pairof.train", "field.anchors=0", "field.anchors=0 is out of range"),
    ("segment.preprocess", "--root /nonexistent --subject test/Capture0/ROM04_RT_Occlusion",
     "annotation file /nonexistent/annotations/test/InterHand2.6M_test_data.json is missing"),
    ("segment.preprocess", "--root {w}/annotations_root --subject test/Capture0/ROM04_RT_Occlusion",
     "InterHand2.6M_test_data.json is not valid JSON"),
    ("segment.preprocess", "--subject test/ROM04", "subject 'test/ROM04' is not"),
    ("segment.masks", "--root {w}/annotations_root --seq ROM04_RT_Occlusion", "is not valid JSON"),
    ("segment.synthetic", "--out {w}/file/sub --quiet", "cannot write to the output folder {w}/file/sub"),
    ("segment.synthetic", "--out {w}/synthetic --distance 5 --quiet", "the hand is behind camera"),
    ("segment.synthetic", "--model {w}/nan_model.npz --out {w}/synthetic --quiet", "nan_model.npz: key "
                                                                                  "'v_template' holds NaN"),
    ("segment.video.prepare", "/nonexistent.mp4 --out {w}/video", "/nonexistent.mp4 does not exist"),
    ("segment.video.evaluate", "--truth /nonexistent --out {w}/video", "/nonexistent is not a synthetic capture"),
    ("segment.video.evaluate", "--truth {w}/capture --out {w}/video", "capture.json cannot be read"),
    ("segment.video.landmarks", "--truth /nonexistent", "/nonexistent is not a synthetic capture"),
]


def make_inputs(w: Path) -> Path:
    """Write the bad inputs the cases name into the folder `w`; returns it."""
    import torch

    from smplx.model_file import save_model_file
    from smplx.tube import make_tube_model

    w.mkdir(parents=True, exist_ok=True)
    (w / "broken.yaml").write_text("train: [1, 2\n")
    (w / "file").write_text("a file where a folder should be")
    (w / "junk.tar").write_bytes(b"this is not a checkpoint")
    (w / "junk.pkl").write_bytes(b"this is not a pickle")
    torch.save({"weights": torch.zeros(3)}, w / "foreign.tar")
    torch.save({"iter": 7, "network": {"albedo.codes": torch.tensor([0.0, float("nan")])}}, w / "nan.tar")
    data = make_tube_model()
    data.v_template[3, 1] = np.nan
    save_model_file(data, w / "nan_model.npz")
    annotations = w / "annotations_root" / "annotations" / "test"
    annotations.mkdir(parents=True, exist_ok=True)
    (annotations / "InterHand2.6M_test_data.json").write_text('{"images": [')
    (w / "capture").mkdir(exist_ok=True)
    (w / "capture" / "capture.json").write_text('{"settings": ')
    (w / "nan_motion.json").write_text(json.dumps({"hand_pose": [[0.0] * 45, [float("nan")] * 45]}))
    return w


def expand(text: str, w: Path) -> str:
    return text.replace("{w}", str(w))


def main_of(command: str):
    """The `main` that `python -m command` runs."""
    module = importlib.import_module(command)
    if not hasattr(module, "main"):  # a package run as python -m: its __main__ module
        module = importlib.import_module(f"{command}.__main__")
    return module.main


def run_in_process(command: str, arguments: str, w: Path) -> tuple[int, str]:
    """(exit status, stderr) of `python -m command arguments`, run as main(argv) here in the repository root (an
    exception that escapes main counts as exit status 1, with its traceback in stderr)."""
    err = io.StringIO()
    code = 0
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result = main_of(command)(expand(arguments, w).split())
        code = result or 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    except Exception:  # a bug: what python would print
        code = 1
        err.write(traceback.format_exc())
    finally:
        os.chdir(here)
    return code, err.getvalue()


def run_at_once(*commands: tuple[list[str], dict]) -> list[subprocess.CompletedProcess]:
    """`subprocess.run(argv, **options, capture_output=True, text=True, timeout=600)` of each (argv, options), all
    started at once and then waited for in turn (most of a short command's time is Python starting and importing:
    the tests use both cores for it)."""
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
                 for argv, options in commands]
    results = []
    for (argv, _), process in zip(commands, processes):
        stdout, stderr = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(argv, process.returncode, stdout, stderr))
    return results


def file_size_limit(limit: int):
    """preexec_fn of a subprocess whose writes past `limit` bytes in one file fail with EFBIG, as on a full disk (the
    signal that would kill it is ignored, as ignored signals stay across exec)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def full_disk_line(path: str | Path, reason: str = "File too large") -> str:
    """The error line of a write to `path` that failed on a full disk: past a file-size limit ('File too large'), or
    on a file system with no room left ('No space left on device')."""
    return (f"error: {reason} writing {path}; free some space on that disk or write the outputs elsewhere (the "
            "previous files are kept)")


def _table() -> str:
    rows = ["| command | bad input | exit | message (stderr) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        w = make_inputs(Path(tmp) / "w")
        for command, arguments, _ in CASES:
            code, stderr = run_in_process(command, arguments, w)
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            shown = (errors[0] if len(errors) == 1 else f"{len(errors)} error lines").replace(str(w), "W")
            if "Traceback" in stderr:
                shown += " (TRACEBACK)"
            rows.append(f"| `{command}` | `{arguments.replace('{w}', 'W')}` | {code} | {shown.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())
