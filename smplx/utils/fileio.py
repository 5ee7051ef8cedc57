"""Writing files so that a crash never leaves a half-written one: write a sibling temporary file, then rename."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from smplx.utils.cli import InputError

__all__ = ["atomic_write", "write_json", "write_csv", "to_uint8", "write_png", "make_folder",
           "remove_stale_temporaries"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, keep_previous: str | Path | None = None
                 ) -> Path:
    """Write `path` atomically: `write(f)` fills a temporary file next to it, which then replaces `path`.

    Creates the parent folder. If `write` raises, `path` is left as it was and the temporary file is removed. With
    `keep_previous`, the file `path` held until now becomes `keep_previous` once the new one is complete (a hard
    link, so no bytes are written; a copy where the file system has none), before the new one replaces it: at every
    moment `path` is a complete file, the old or the new one.

    Returns:
        The path written.

    Raises:
        OSError: a write failed (a full disk: ENOSPC), with `filename` set to `path`; also when `write` reported
            it as another exception (torch.save turns it into a RuntimeError), which is then chained as its cause.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stream = None
    try:
        with open(tmp, "wb") as f:
            stream = _WriteErrors(f)
            write(stream)
        if keep_previous is not None and path.is_file():
            _keep(path, Path(keep_previous))
        os.replace(tmp, path)
    except Exception as error:
        failed = stream.error if stream is not None and stream.error is not None else error
        if not isinstance(failed, OSError):
            raise
        failed.filename = failed.filename or str(path)
        if failed is error:
            raise
        raise failed from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _keep(path: Path, previous: Path) -> None:
    """Make `previous` the file `path` is now, atomically (through a temporary name next to `previous`)."""
    staged = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staged)
        except OSError as error:  # no hard links here (FAT, some network or FUSE file systems)
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            shutil.copyfile(path, staged)
        os.replace(staged, previous)
    finally:
        staged.unlink(missing_ok=True)


def remove_stale_temporaries(path: str | Path, *, tree: bool = False) -> list[Path]:
    """Remove the temporary files that `atomic_write` left next to `path` in processes that were killed while
    writing it (`.<name>.<pid>.tmp` of a pid no longer running); with `tree`, those of every file anywhere under
    the folder `path`. Returns them."""
    path, removed = Path(path), []
    candidates = path.rglob(".*.tmp") if tree else path.parent.glob(f".{path.name}.*.tmp")
    for tmp in candidates:
        pid = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not tree and tmp.name != f".{path.name}.{pid}.tmp":
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except PermissionError:  # a live process of another user
            pass
    return removed


class _WriteErrors:
    """A binary file that remembers the OSError of a failed write, for writers that report it as another exception
    (torch.save's zip writer raises a RuntimeError with no errno). It has no `fileno`, so that every byte goes
    through `write`: Pillow writes to a file descriptor directly when it has one, and there a short write on a full
    disk went unnoticed (a truncated JPEG, renamed into place as if complete)."""

    def __init__(self, f: BinaryIO):
        self._f, self.error = f, None

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno: atomic_write passes every byte through write()")

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)



def write_json(path: str | Path, obj, *, indent: int = 1) -> Path:
    """Write `obj` as JSON to `path` atomically (`atomic_write`); returns the path."""
    text = json.dumps(obj, indent=indent).encode()
    return atomic_write(path, lambda f: f.write(text))


def write_csv(path: str | Path, header: Sequence, rows: Iterable[Sequence]) -> Path:
    """Write a header and rows as comma-separated lines (each value as str(); none may hold a comma) to `path`
    atomically (`atomic_write`); returns the path."""
    text = "".join(",".join(str(v) for v in line) + "\n" for line in [header, *rows])
    return atomic_write(path, lambda f: f.write(text.encode()))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An array of values in [0, 1] (numpy, any shape) -> uint8, rounded; values outside [0, 1] are clipped first (a
    bare cast would wrap 1.2 round to 50)."""
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_png(path: str | Path, image) -> Path:
    """Write an (H, W, 3) RGB or (H, W, 4) RGBA uint8 image as a PNG, atomically (`atomic_write`)."""
    from PIL import Image  # only the writers of pictures need Pillow

    picture = Image.fromarray(image)
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))

def make_folder(path: str | Path, what: str) -> Path:
    """Create the output folder `path` (and its parents) before any work starts.

    Raises:
        InputError: it cannot be created or written (a file in the way, no permission, a read-only disk); names
            `what` (e.g. '--out') and the folder.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise InputError(f"{what} {path} cannot be written ({error.strerror or error}); choose another "
                         "folder") from error
    return path
