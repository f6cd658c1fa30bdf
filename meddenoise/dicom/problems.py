"""What can be wrong with a series or a file, as codes callers can test and words people can read.

A ``Problem`` pairs a ``ProblemCode`` (for code: ``info.has_problem(ProblemCode.TILT)``) with a
one-line message (for people). ``shown_path`` is how every message in ``meddenoise.dicom`` names a
file: control characters, escape sequences and undecodable bytes are escaped, so a hostile file
name cannot break a line or a terminal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath


class ProblemCode(StrEnum):
    """The kinds of problem that discovery and reading report (the message says the details)."""

    TILT = "gantry-tilt"
    """The slices are tilted against the slice normal (named, not fatal)."""
    UNEVEN_SPACING = "uneven-spacing"
    """The slice spacing varies without a missing slice (named, not fatal)."""
    GAP = "gap"
    """A step along the normal where a slice is missing (fatal unless gaps are allowed)."""
    MIXED_ORIENTATION = "mixed-orientation"
    MIXED_SIZE = "mixed-size"
    MIXED_SPACING = "mixed-spacing"
    DUPLICATE_POSITION = "duplicate-position"
    BAD_GEOMETRY = "bad-geometry"
    """The slice geometry could not be validated at all."""
    NO_PIXEL_DATA = "no-pixel-data"
    MULTIFRAME = "multiframe"
    """A single-frame SOP class (CT Image Storage) with NumberOfFrames > 1."""
    BAD_HEADER = "bad-header"
    """A header value that feeds geometry or HU is missing, malformed or impossible."""
    INCOMPLETE = "incomplete"
    """A file of the series was skipped, so a slice is missing (fatal unless gaps are allowed)."""
    NOT_DICOM = "not-dicom"
    NOT_CT = "not-ct"
    DICOMDIR = "dicomdir"
    NOT_A_FILE = "not-a-regular-file"
    """A FIFO, device, socket, or a folder link that is not followed."""
    SEEN_BEFORE = "seen-before"
    """A link to a file or folder that the walk has already visited (read once; ends link loops)."""
    UNREADABLE = "unreadable"
    """The file (or folder) cannot be opened or its header cannot be parsed."""
    TRUNCATED = "truncated"


@dataclass(frozen=True)
class Problem:
    """One problem: its code, a one-line message, and whether it stops ``read_series``.

    ``str(problem)`` is the message, so a Problem prints like the plain strings of old.
    """

    code: ProblemCode
    message: str
    fatal: bool = False

    def __str__(self) -> str:
        return self.message


def shown_path(path: str | PurePath) -> str:
    """A path as messages show it: printable characters kept, everything else escaped.

    Newlines, tabs, ANSI escape sequences and other non-printable characters become ``\\n``,
    ``\\x1b`` ...; bytes that were not valid in the file system encoding become ``\\xNN``.

    Examples
    --------
    >>> shown_path("scans/a\\nb\\x1b[31m.dcm")
    'scans/a\\\\nb\\\\x1b[31m.dcm'
    >>> shown_path(os.fsdecode(b"caf\\xe9"))
    'caf\\\\xe9'
    """
    return shown_text(os.fspath(path))


def shown_text(text: str) -> str:
    """``text`` with every non-printable character escaped (see ``shown_path``), on one line."""
    return "".join(_shown_char(c) for c in text)


def _shown_char(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: a byte the file system encoding could not decode
        return f"\\x{code - 0xDC00:02x}"
    return repr(char)[1:-1]
