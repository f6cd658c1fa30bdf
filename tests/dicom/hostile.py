"""Make hostile inputs out of real files: bad header values, broken bytes, odd file types.

Every helper changes a copy (in the test's tmp_path), never the originals; ``tree_hashes`` lets a
test prove that scanning and reading left its input untouched.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import warnings
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import DataElement

_SQ_START = struct.pack("<HH", 0x0008, 0x1140) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
_ITEM_START = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
SERIES_UID_ELEMENT = b"\x20\x00\x0e\x00UI"  # (0020,000E) in explicit VR little endian
POSITION_ELEMENT = b"\x20\x00\x32\x00DS"  # (0020,0032)


def rewrite(path: Path, **values: object) -> None:
    """Set (or, for None, delete) attributes of a DICOM file in place, however invalid the value."""
    ds = dcmread(path)
    with warnings.catch_warnings():  # pydicom rightly warns about the values we plant
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            if value is None:
                del ds[keyword]
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)


def rewrite_as_text(path: Path, tag: int, value: str) -> None:
    """Store ``value`` under ``tag`` as free text (VR LO), e.g. a slope of 'abc'."""
    ds = dcmread(path)
    ds[tag] = DataElement(tag, "LO", value)
    ds.save_as(path)


def nest_sequences(path: Path, *, depth: int) -> None:
    """Insert, before SeriesInstanceUID, a sequence nested ``depth`` levels deep (undefined lengths)."""
    data = path.read_bytes()
    at = data.index(SERIES_UID_ELEMENT)
    nested = _SQ_START + (_ITEM_START + _SQ_START) * depth + (_SQ_END + _ITEM_END) * depth + _SQ_END
    path.write_bytes(data[:at] + nested + data[at:])


def cut_before(path: Path, marker: bytes) -> None:
    """Truncate a file just before the first occurrence of ``marker`` (a header cut short)."""
    data = path.read_bytes()
    path.write_bytes(data[: data.index(marker)])


def make_long_path(root: Path, *, depth: int = 20) -> Path:
    """Create folders nested under ``root`` until the path is longer than PATH_MAX (4096)."""
    name = "d" * 250
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open("slice.dcm", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(file_fd, b"not read")
        os.close(file_fd)
    finally:
        os.close(fd)
    return root.joinpath(*[name] * depth)


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (links not followed, nothing else opened)."""
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                with open(path, "rb") as fp:
                    hashes[path] = hashlib.sha256(fp.read()).hexdigest()
            except OSError as err:  # a path beyond PATH_MAX: its length is what the test is about
                hashes[path] = f"unreachable: {err.errno}"
    return hashes
