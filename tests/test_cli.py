"""One CLI contract for every entry point: a user error is ONE line `error: ...` on stderr naming the file or key,
exit status 2, no traceback; a bug keeps its traceback (exit status 1). The bad inputs are in tests/cli_cases.py."""

import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import segment.preprocess
from smplx.utils.cli import InputError, MissingFileError, cli_main, error_line, is_user_error
from tests.cli_cases import (CASES, CHILD_ENV, ROOT, expand, file_size_limit, full_disk_line, main_of, make_inputs,
                             run_at_once, run_in_process)


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("cli") / "w")


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command, arguments, expected", CASES, ids=[f"{c} {a}" for c, a, _ in CASES])
def test_a_user_error_is_one_line_and_exit_status_2(w, command, arguments, expected):
    code, stderr = run_in_process(command, arguments, w)
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    errors = _error_lines(stderr)
    assert len(errors) == 1, stderr
    assert expand(expected, w) in errors[0]


def test_every_python_m_entry_point_is_covered():
    """Each command of the project (a committed module with `if __name__ == "__main__":` under the four packages,
    except the keypoint step that runs in .venv-video and handles its one error itself) has cases, and its main is
    wrapped by cli_main."""
    files = subprocess.run(["git", "ls-files", "handavatar", "smplx", "pairof", "segment"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    mains = set()
    for name in files:
        if name.endswith(".py") and re.search(r'^if __name__ == "__main__":', (ROOT / name).read_text(), re.M):
            mains.add(".".join(Path(name).with_suffix("").parts).removesuffix(".__main__"))
    mains.discard("segment.video.mediapipe_keypoints")
    assert mains == {command for command, _, _ in CASES}
    for command in mains:
        assert main_of(command).__wrapped__, command  # functools.wraps of cli_main


def test_bugs_keep_their_traceback(w, monkeypatch, capsys):
    """A plain ValueError or RuntimeError from inside a command is not a user error: it is not turned into exit 2."""
    def broken(*args, **kwargs):
        raise ValueError("an internal value went wrong")

    monkeypatch.setattr(segment.preprocess, "SplitAnnotations", broken)
    with pytest.raises(ValueError, match="an internal value went wrong"):
        segment.preprocess.main(["--root", str(w), "--subject", "test/Capture0/ROM04_RT_Occlusion"])
    assert "error:" not in capsys.readouterr().err

    @cli_main
    def command(argv=None):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        command([])
    for plain in (ValueError("x"), FileNotFoundError("x"), KeyError("x"), OSError(errno.EACCES, "denied")):
        assert not is_user_error(plain)


def test_user_errors_and_a_full_disk(capsys):
    @cli_main
    def command(argv=None):
        raise argv[0]

    cases = [(InputError("bad value in\n  two lines"), "error: bad value in two lines"),
             (MissingFileError("f.yaml does not exist"), "error: f.yaml does not exist"),
             (OSError(errno.ENOSPC, "No space left on device", "out/latest.tar"),
              "error: No space left on device writing out/latest.tar; free some space on that disk or write the "
              "outputs elsewhere (the previous files are kept)")]
    for error, line in cases:
        with pytest.raises(SystemExit) as exit_info:
            command([error])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == line + "\n"
        assert error_line(error) == line
    assert command.__name__ == "command"


def test_python_m_and_the_scripts_pass_the_exit_status(w):
    """As a user runs them: `python -m`, a scripts/*.sh wrapper (exec) and the multi-stage script (set -e)."""
    *runs, bug = run_at_once(
        ([sys.executable, "-m", "handavatar.train", "--config", "nonexistent.yaml"], dict(cwd=ROOT, env=CHILD_ENV)),
        (["bash", "scripts/train_hand.sh", "nonexistent.yaml"], dict(cwd=ROOT)),
        (["bash", "scripts/video_to_avatar.sh", "/nonexistent.mp4", "--out", str(w / "mine")], dict(cwd=ROOT)),
        ([sys.executable, "-c", "from smplx.utils.cli import cli_main\ncli_main(lambda argv: {}['missing'])([])"],
         dict(cwd=ROOT)))
    for result, expected in zip(runs, ("nonexistent.yaml does not exist", "nonexistent.yaml does not exist",
                                       "/nonexistent.mp4 does not exist")):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        errors = _error_lines(result.stderr)
        assert len(errors) == 1 and expected in errors[0], result.stderr
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'missing'" in bug.stderr


@pytest.mark.parametrize("command, arguments", [
    ("segment.synthetic", "--distance nan --out {w}/synthetic"),
    ("segment.synthetic", "--light-direction 0 inf 1 --out {w}/synthetic"),
    ("segment.preprocess", "--subject test/Capture0/SEQ --bbox-offset inf"),
    ("segment.video.prepare", "/nonexistent.mp4 --out {w}/video --eval-fraction nan"),
    ("handavatar.export", "--checkpoint /nonexistent.tar --out {w}/a.glb --fps inf"),
])
def test_number_flags_refuse_nan_and_infinity(w, command, arguments):
    """argparse's own contract (usage, then `prog: error: argument --flag: ...`, exit status 2), before any work."""
    code, stderr = run_in_process(command, arguments, w)
    assert code == 2 and "Traceback" not in stderr
    assert re.search(r"error: argument --[\w-]+: '-?(nan|inf)' is not a finite number", stderr), stderr


def test_a_full_disk_is_one_line_and_the_previous_file_stays(w):
    """Three writes past a file-size limit, run at once: the open hand's model file (a previous one in place), a
    torch.save (reported as a RuntimeError without errno) and a Pillow JPEG (Pillow writes to a file descriptor when
    it has one: a short write went unseen)."""
    out = w / "full"
    out.mkdir()
    (out / "OPEN_HAND_RIGHT.pkl").write_bytes(b"the previous model")
    checkpoint, image = out / "latest.tar", out / "image.jpg"
    writer = "from smplx.utils.cli import cli_main\nfrom smplx.utils.fileio import atomic_write\n"
    torch_script = (f"import torch\n{writer}cli_main(lambda argv: atomic_write({str(checkpoint)!r}, lambda f: "
                    "torch.save(torch.zeros(10 ** 5), f)))([])")
    image_script = (f"import numpy as np\nfrom PIL import Image\n{writer}picture = Image.fromarray("
                    "np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))\n"
                    f"cli_main(lambda argv: atomic_write({str(image)!r}, lambda f: picture.save(f, "
                    "format='JPEG')))([])")
    limited = dict(cwd=ROOT, preexec_fn=file_size_limit(65536))
    results = run_at_once(([sys.executable, "-m", "smplx.open_hand", "--out", str(out), "--no-picture"], limited),
                          ([sys.executable, "-c", torch_script], limited),
                          ([sys.executable, "-c", image_script], limited))
    for result in results:
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    model, saved, picture = (_error_lines(result.stderr) for result in results)
    assert model == [full_disk_line(out / "OPEN_HAND_RIGHT.pkl")]
    assert saved[0].startswith(f"error: File too large writing {checkpoint};")
    assert picture == [full_disk_line(image)]
    assert (out / "OPEN_HAND_RIGHT.pkl").read_bytes() == b"the previous model"
    assert sorted(p.name for p in out.iterdir()) == ["OPEN_HAND_RIGHT.pkl"]  # nothing else: no temporary file left


def test_a_full_disk_while_writing_the_annotation_cache(synthetic_capture, tmp_path):
    """segment.preprocess under a file-size limit below the cache's size: one error line naming the cache, exit 2,
    the previous cache byte for byte, no temporary file; with room again, the rerun writes the same cache."""
    from segment.annotations import Subject
    from segment.preprocess import AnnotationCache, cache_path
    root = tmp_path / "capture"
    shutil.copytree(synthetic_capture, root)
    subject = "test/Capture0/ROM04_RT_Occlusion"
    arguments = ["--root", str(root), "--subject", subject, "--quiet", "--workers", "1"]
    assert segment.preprocess.main(arguments) == 0  # in this process: only the run under the limit needs its own
    cache = cache_path(root, Subject.parse(subject))
    before = cache.read_bytes()
    full = subprocess.run([sys.executable, "-m", "segment.preprocess", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, preexec_fn=file_size_limit(len(before) // 2))
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert _error_lines(full.stderr) == [full_disk_line(cache)]
    assert cache.read_bytes() == before
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]
    assert segment.preprocess.main(arguments) == 0
    written = AnnotationCache.load(cache)
    cache.write_bytes(before)  # the zip inside an .npz dates its members: compare the arrays
    previous = AnnotationCache.load(cache)
    for name, value in vars(previous).items():
        assert np.array_equal(value, vars(written)[name]) if isinstance(value, np.ndarray) else value == vars(
            written)[name], name
