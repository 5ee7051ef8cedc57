"""The shell entry points of the video path: argument errors come before any work, with exit code 2."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=ROOT):
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_video_to_avatar_needs_out_and_known_options(tmp_path):
    missing = _run(str(ROOT / "scripts/video_to_avatar.sh"), "hand.mp4")
    assert missing.returncode == 2 and "--out DIR is required" in missing.stderr
    unknown = _run(str(ROOT / "scripts/video_to_avatar.sh"), "hand.mp4", "--out", "x", "--fps", "3")
    assert unknown.returncode == 2 and "unknown option --fps" in unknown.stderr
    assert not (ROOT / "x").exists()


def test_prepare_video_runs_from_any_folder_and_names_a_missing_source(tmp_path):
    result = _run(str(ROOT / "scripts/prepare_video.sh"), "nothing.mp4", "--out", "mine", cwd=tmp_path)
    assert result.returncode == 2 and "nothing.mp4 does not exist" in result.stderr
    assert not (tmp_path / "mine").exists()  # nothing written for a source that is not there
