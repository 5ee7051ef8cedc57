"""The camera's focal length as the source file states it: a phone's 35 mm equivalent focal length.

- Image folders: the EXIF tag FocalLengthIn35mmFilm (0xA405, in the Exif IFD) of the first image that has it (phones
  write it in every photo).
- Videos: the QuickTime metadata key `com.apple.quicktime.camera.focal_length.35mm_equivalent` (iPhones write it in
  `moov/meta`, as a `keys` entry with its value in `ilst`); other videos (most Android phones, screen recordings,
  re-encoded files) carry no focal length, and the default field of view applies.

`segment.video.frames.focal_px_from_35mm` turns it into pixels. Only the start of an image and the `moov` box of a
video are read, never the whole file.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from segment.video.frames import image_files

__all__ = ["focal_35mm", "QUICKTIME_FOCAL_KEY"]

QUICKTIME_FOCAL_KEY = "com.apple.quicktime.camera.focal_length.35mm_equivalent"
_EXIF_IFD, _FOCAL_35MM_TAG = 0x8769, 0xA405
_MAX_MOOV_BYTES = 64 << 20  # a moov box larger than this is not read (an hour of video has a few MB)


def focal_35mm(source: str | Path) -> tuple[float, str] | None:
    """The 35 mm equivalent focal length a video file or a folder of images states (a folder: its first image in
    frame order that has the tag), and where it was read; None when it states none."""
    source = Path(source)
    if source.is_dir():
        for path in image_files(source):
            focal = _exif_focal_35mm(path)
            if focal is not None:
                return focal, f"EXIF FocalLengthIn35mmFilm of {path.name}"
        return None
    focal = _quicktime_focal_35mm(source)
    return None if focal is None else (focal, f"the video's QuickTime key {QUICKTIME_FOCAL_KEY}")


def _exif_focal_35mm(path: Path) -> float | None:
    try:
        with Image.open(path) as image:
            value = image.getexif().get_ifd(_EXIF_IFD).get(_FOCAL_35MM_TAG)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):  # unreadable images are counted elsewhere
        return None
    return _positive(value)


def _positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _box_header(header: bytes, room: int) -> tuple[bytes, int, int] | None:
    """(type, header length, size) of the box whose first bytes (up to 16) are `header`, with `room` bytes left in
    its parent; None for a damaged one. A size of 1 means a 64-bit size follows, 0 the rest of the parent."""
    if len(header) < 8:
        return None
    size, kind = struct.unpack(">I4s", header[:8])
    length = 8
    if size == 1:
        if len(header) < 16:
            return None
        size, length = struct.unpack(">Q", header[8:16])[0], 16
    elif size == 0:
        size = room
    return None if size < length or size > room else (kind, length, size)


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, payload end) of the ISO base media boxes in data[start:end]; stops at a damaged one."""
    end = len(data) if end is None else end
    pos = start
    while (box := _box_header(data[pos:min(pos + 16, end)], end - pos)) is not None:
        kind, length, size = box
        yield kind, pos + length, pos + size
        pos += size


def _read_moov(path: Path) -> bytes | None:
    """The payload of the file's top-level moov box, or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            end, pos = f.tell(), 0
            while True:
                f.seek(pos)
                box = _box_header(f.read(16), end - pos)
                if box is None:
                    return None
                kind, length, size = box
                if kind == b"moov":
                    if size - length > _MAX_MOOV_BYTES:
                        return None
                    f.seek(pos + length)
                    return f.read(size - length)
                pos += size
    except OSError:
        return None


def _quicktime_focal_35mm(path: Path) -> float | None:
    moov = _read_moov(path)
    if moov is None:
        return None
    metas = [(s, e) for kind, s, e in _boxes(moov) if kind == b"meta"]
    for kind, s, e in _boxes(moov):  # some writers put the keyed metadata under udta
        if kind == b"udta":
            metas += [(s2, e2) for kind2, s2, e2 in _boxes(moov, s, e) if kind2 == b"meta"]
    for start, end in metas:
        if moov[start + 4:start + 8] != b"hdlr":  # the ISO form of meta has a version and flags first
            start += 4
        children = {kind: (s, e) for kind, s, e in _boxes(moov, start, end)}
        if b"keys" not in children or b"ilst" not in children:
            continue
        keys = _keys(moov, *children[b"keys"])
        if QUICKTIME_FOCAL_KEY not in keys:
            continue
        wanted = keys.index(QUICKTIME_FOCAL_KEY) + 1  # ilst items are named by the 1-based key index
        for kind, s, e in _boxes(moov, *children[b"ilst"]):
            if struct.unpack(">I", kind)[0] == wanted:
                for data_kind, ds, de in _boxes(moov, s, e):
                    if data_kind == b"data":
                        return _positive(_data_value(moov[ds:de]))
    return None


def _keys(data: bytes, start: int, end: int) -> list[str]:
    """The key names of a QuickTime `keys` box, in order."""
    names, pos = [], start + 8  # version and flags, then the entry count
    while pos + 8 <= end:
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        if size < 8 or pos + size > end:
            break
        names.append(data[pos + 8:pos + size].decode("utf-8", "replace"))
        pos += size
    return names


def _data_value(payload: bytes):
    """The value of a QuickTime `data` box (its payload): UTF-8 text, a big-endian float or integer."""
    if len(payload) < 8:
        return None
    kind, value = struct.unpack(">I", payload[:4])[0] & 0xFFFFFF, payload[8:]
    if kind == 1:
        return value.decode("utf-8", "replace").strip()
    if kind == 23 and len(value) == 4:
        return struct.unpack(">f", value)[0]
    if kind == 24 and len(value) == 8:
        return struct.unpack(">d", value)[0]
    if kind in (21, 22) and len(value) in (1, 2, 4, 8):
        return int.from_bytes(value, "big", signed=kind == 21)
    return None
