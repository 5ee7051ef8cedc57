"""RunFolder's checkpoints (smplx.utils.training): the previous checkpoint is kept on every save, a damaged or foreign
checkpoint falls back to it with one warning line, and at no moment of a save is there no complete checkpoint. The
trainers' own runs (truncated checkpoint, resume, bit-identical result) are in tests/test_kill.py."""

import errno
import logging
import os

import numpy as np
import pytest
import torch

import smplx.utils.fileio as fileio
from smplx.utils.cli import InputError
from smplx.utils.training import RunFolder

CPU = torch.device("cpu")


def _folder(tmp_path, seed=0):
    return RunFolder(tmp_path / "run", {"seed": seed, "lr": 0.1}, checkpoint="latest.tar", identity=("seed",))


def _step(path):
    return torch.load(path, weights_only=True)["step"]


def _save_steps(folder, steps):
    for step in steps:
        folder.save({"step": step, "weights": torch.full((4,), float(step))})


def test_each_save_keeps_the_one_it_replaces(tmp_path):
    folder = _folder(tmp_path)
    _save_steps(folder, [1])
    assert not folder.previous.exists()
    _save_steps(folder, [2, 3])
    assert folder.previous.name == "latest.prev.tar"
    assert (_step(folder.checkpoint), _step(folder.previous)) == (3, 2)
    assert sorted(p.name for p in folder.out.iterdir()) == ["config.yaml", "latest.prev.tar", "latest.tar"]
    assert os.stat(folder.previous).st_nlink == 1  # the replaced file itself, not a second link to the new one


@pytest.mark.parametrize("damage", ["truncated", "junk", "foreign", "nan"])
def test_a_bad_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    _save_steps(_folder(tmp_path), [1, 2])
    checkpoint = tmp_path / "run" / "latest.tar"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    elif damage == "junk":
        checkpoint.write_bytes(b"not a checkpoint")
    elif damage == "foreign":  # another run's (seed 7)
        _save_steps(_folder(tmp_path / "other", seed=7), [9])
        os.replace(tmp_path / "other" / "run" / "latest.tar", checkpoint)
    else:
        torch.save({"step": 2, "weights": torch.tensor([float("nan")])}, checkpoint)
    folder = _folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="smplx.utils.training"):
        state = folder.resume(CPU)
    assert state["step"] == 1
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    message = caplog.records[0].getMessage()
    assert message.startswith(f"warning: {checkpoint}") and message.endswith(
        f"resuming from the previous checkpoint {folder.previous}")
    assert "resume=false" not in message  # the remedies of a stopped run do not apply
    _save_steps(folder, [2])  # the bad one is replaced; the good previous one stays
    assert (_step(folder.checkpoint), _step(folder.previous)) == (2, 1)
    _save_steps(folder, [3])
    assert (_step(folder.checkpoint), _step(folder.previous)) == (3, 2)


def test_both_bad_is_the_error_naming_the_checkpoint(tmp_path):
    _save_steps(_folder(tmp_path), [1, 2])
    folder = _folder(tmp_path)
    folder.checkpoint.write_bytes(b"junk")
    folder.previous.write_bytes(folder.previous.read_bytes()[:100])
    with pytest.raises(InputError) as error:
        folder.resume(CPU)
    message = str(error.value)
    assert message.startswith(f"{folder.checkpoint} cannot be read") and "delete it to start over" in message
    assert f"the previous checkpoint {folder.previous} cannot be used either" in message
    folder.previous.unlink()
    with pytest.raises(InputError, match="cannot be read") as error:
        folder.resume(CPU)
    assert "previous" not in str(error.value)


def test_a_run_that_starts_over_drops_the_replaced_runs_previous(tmp_path):
    """Without a checkpoint (deleted to start over) or with resume=false, the old run's previous checkpoint must not
    become this run's fall-back."""
    _save_steps(_folder(tmp_path), [1, 2])
    folder = _folder(tmp_path)
    folder.checkpoint.unlink()
    assert folder.resume(CPU) is None
    _save_steps(folder, [5])
    assert not folder.previous.exists()
    _save_steps(_folder(tmp_path), [6])  # resume=false: the trainer never calls resume()
    assert not folder.previous.exists() and _step(folder.checkpoint) == 6


def test_without_hard_links_the_previous_is_a_copy(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fileio.os, "link", no_links)
    folder = _folder(tmp_path)
    _save_steps(folder, [1, 2])
    assert (_step(folder.checkpoint), _step(folder.previous)) == (2, 1)
    assert not list(folder.out.glob(".*.tmp"))


def test_at_every_moment_of_a_save_a_complete_checkpoint_is_in_place(tmp_path, monkeypatch):
    """Before and after each rename or link of a save, the checkpoint is a complete file (old or new): a kill at any
    moment leaves one to resume from."""
    folder = _folder(tmp_path)
    _save_steps(folder, [1, 2])
    seen, real_replace, real_link = [], os.replace, os.link

    def checked(real):
        def operation(source, target):
            seen.append(_step(folder.checkpoint))
            real(source, target)
            seen.append(_step(folder.checkpoint))
        return operation

    monkeypatch.setattr(fileio.os, "replace", checked(real_replace))
    monkeypatch.setattr(fileio.os, "link", checked(real_link))
    _save_steps(folder, [3])
    assert seen == [2, 2, 2, 2, 2, 3]  # link, replace into latest.prev.tar, replace into latest.tar
    assert _step(folder.previous) == 2


def test_pictures_clip_to_eight_bits_and_read_back(tmp_path):
    """to_uint8 rounds [0, 1] to 0..255 and clips outside it (a bare cast wraps 1.2 round to 50: the lights' shading
    above 1 came out dark); write_png's file reads back as the same pixels."""
    from PIL import Image

    values = np.array([[[-0.2, 0.0, 0.5], [1.0 / 255 * 0.49, 1.0, 1.2]]])
    picture = fileio.to_uint8(values)
    assert picture.dtype == np.uint8 and picture.tolist() == [[[0, 0, 128], [0, 255, 255]]]
    path = fileio.write_png(tmp_path / "picture.png", picture)
    assert np.array_equal(np.asarray(Image.open(path)), picture)


def test_a_csv_is_its_header_and_rows_written_whole(tmp_path):
    path = fileio.write_csv(tmp_path / "metrics.csv", ["key", "psnr"], [["a/1.jpg", 27.5], ["a/2.jpg", 3]])
    assert path.read_text() == "key,psnr\na/1.jpg,27.5\na/2.jpg,3\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "metrics.csv"]  # no temporary file left
