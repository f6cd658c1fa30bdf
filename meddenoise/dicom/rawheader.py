"""Recover a broken file's SeriesInstanceUID without pydicom, so its series knows it lost a slice.

When pydicom cannot parse a header (sequences nested thousands deep, a corrupt element), the
file is skipped; but if its SeriesInstanceUID can still be found, its series is marked incomplete
instead of silently shrinking. This walks the top-level elements iteratively (nesting is counted,
never recursed into) and stops at the first top-level tag past SeriesInstanceUID. When an element
before it claims more bytes than the file holds (a damaged length), the walk cannot go on, and
the UID is searched for in the bytes that element swallowed.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom.uid import UID

from meddenoise.dicom.derive import is_valid_uid

MAX_SCAN_BYTES = 64 * 1024**2
"""Header bytes read at most when looking for the SeriesInstanceUID of a broken file."""

SERIES_INSTANCE_UID_TAG = 0x0020000E
LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"})
UNDEFINED_LENGTH = 0xFFFFFFFF


def series_uid_of_broken(fp: BinaryIO) -> str:
    """The SeriesInstanceUID of a file pydicom could not parse, or "" when it cannot be found."""
    try:
        start, encodings = _dataset_start(fp)
        fp.seek(start)
        data = fp.read(MAX_SCAN_BYTES)
    except (OSError, ValueError, EOFError, struct.error, KeyError, TypeError):
        return ""
    for implicit, little in encodings:
        try:
            value = _top_level_value(data, SERIES_INSTANCE_UID_TAG, implicit=implicit, little=little)
        except _Swallowed as swallowed:  # the tag may sit in the bytes a too-long element claims
            whole_file = len(data) < MAX_SCAN_BYTES
            value = _searched_uid(data[swallowed.value_at :]).encode() if whole_file and little else None
        except (ValueError, struct.error, KeyError, TypeError):
            continue
        uid = value.rstrip(b"\x00 ").decode("ascii", "replace") if value else ""
        if is_valid_uid(uid):
            return uid
    return ""


class _Swallowed(Exception):
    """A top-level element before the tag claims more bytes than the file has left."""

    def __init__(self, value_at: int) -> None:
        super().__init__(value_at)
        self.value_at = value_at


def _searched_uid(data: bytes) -> str:
    """The first valid UID that follows a (0020,000E) tag in ``data`` (little endian): the bytes
    swallowed by an element whose length runs past the end of the file, which hides every element
    after it from the walk. A false match can only mark a series incomplete, never hide a lost slice.
    """
    start = data.find(_SERIES_TAG_BYTES)
    while 0 <= start <= len(data) - 8:
        explicit = data[start + 4 : start + 6] == b"UI"  # explicit VR: a 2-byte length after the VR
        length = struct.unpack_from("<H" if explicit else "<I", data, start + 6 if explicit else start + 4)[0]
        if 0 < length <= 64:
            value = data[start + 8 : start + 8 + length]
            uid = value.rstrip(b"\x00 ").decode("ascii", "replace")
            if is_valid_uid(uid):
                return uid
        start = data.find(_SERIES_TAG_BYTES, start + 1)
    return ""


_SERIES_TAG_BYTES = struct.pack("<HH", 0x0020, 0x000E)


_GUESSES = ((False, True), (True, True))
"""Encodings to try when the file meta does not say (explicit, then implicit VR little endian)."""


def _dataset_start(fp: BinaryIO) -> tuple[int, tuple[tuple[bool, bool], ...]]:
    """Where the dataset starts after the file meta, and its possible encodings (implicit, little)."""
    fp.seek(128)
    if fp.read(4) != b"DICM":
        return 0, _GUESSES
    syntax = UID("1.2.840.10008.1.2.1")
    while True:  # the group 0002 elements, always explicit VR little endian
        position = fp.tell()
        head = fp.read(8)
        if len(head) < 8 or struct.unpack("<H", head[:2])[0] != 0x0002:
            break
        long_vr = head[4:6] in LONG_VRS
        length = struct.unpack("<I", fp.read(4))[0] if long_vr else struct.unpack("<H", head[6:8])[0]
        value = fp.read(length)
        if struct.unpack("<H", head[2:4])[0] == 0x0010:
            syntax = UID(value.rstrip(b"\x00 ").decode("ascii", "replace"))
    if syntax.is_deflated:
        raise ValueError("no raw scan for a deflated dataset")
    if not syntax.is_transfer_syntax:  # a damaged or unknown TransferSyntaxUID: try the usual ones
        return position, _GUESSES
    return position, ((syntax.is_implicit_VR, syntax.is_little_endian),)


def _top_level_value(data: bytes, tag: int, *, implicit: bool, little: bool) -> bytes | None:
    """The value of top-level ``tag`` in an encoded dataset, counting nesting without recursion."""
    order = "<" if little else ">"
    pos, depth = 0, 0
    while pos + 8 <= len(data) and depth >= 0:
        group, element = struct.unpack_from(order + "HH", data, pos)
        if group == 0xFFFE:  # item and delimiters: tag and a 4-byte length, no VR
            length = struct.unpack_from(order + "I", data, pos + 4)[0]
            pos += 8
            if element != 0xE000:
                depth -= 1
            elif length == UNDEFINED_LENGTH:
                depth += 1
            else:
                pos += length
            continue
        if implicit:
            length, pos = struct.unpack_from(order + "I", data, pos + 4)[0], pos + 8
        elif data[pos + 4 : pos + 6] in LONG_VRS:
            length, pos = struct.unpack_from(order + "I", data, pos + 8)[0], pos + 12
        else:
            length, pos = struct.unpack_from(order + "H", data, pos + 6)[0], pos + 8
        current = group << 16 | element
        if depth == 0 and current >= tag:
            return data[pos : pos + length] if current == tag and length != UNDEFINED_LENGTH else None
        if depth == 0 and length != UNDEFINED_LENGTH and pos + length > len(data):
            raise _Swallowed(pos)
        if length == UNDEFINED_LENGTH:
            depth += 1
        else:
            pos += length
    return None
