"""Walk a folder tree safely: every path either is a regular file to read or has a reason to skip.

Nothing is opened while walking: ``os.stat`` tells FIFOs, devices and sockets apart from regular
files (opening a named pipe would block forever). Folder links are followed, but each real folder
and file is visited once, so a link loop ends. Folders that cannot be listed (no permission, a
path longer than PATH_MAX) are reported, not silently left out. ``open_regular`` opens a file
without blocking and re-checks it, so a file swapped for a FIFO after the walk is refused too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from meddenoise.dicom.problems import Problem, ProblemCode, shown_path

WRITER_TEMP_PREFIXES = (".tmp-", ".old-")
"""A writer's temporary or swapped-out folder is never a series a reader should see."""

_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


class NotRegularFileError(OSError):
    """The path is not a regular file (the message says what it is)."""


def walk(root: Path) -> Iterator[tuple[Path, Problem | None]]:
    """Yield ``(path, None)`` for each regular file under ``root``, ``(path, problem)`` for the rest.

    ``root`` itself may be a file (yielded alone). Names are sorted, so the order is stable.
    """
    if not os.path.isdir(root):  # Path.is_dir raises for a path longer than PATH_MAX
        yield root, file_issue(root, {})
        return
    errors: list[OSError] = []
    seen_dirs = {_key(os.stat(root))}
    seen_files: dict[tuple[int, int], Path] = {}
    for folder, dirs, files in os.walk(root, followlinks=True, onerror=errors.append):
        yield from _listing_errors(errors)
        keep = []
        for name in sorted(d for d in dirs if not d.startswith(WRITER_TEMP_PREFIXES)):
            reason = _folder_issue(Path(folder) / name, seen_dirs)
            if reason is None:
                keep.append(name)
            else:
                yield Path(folder) / name, reason
        dirs[:] = keep
        for name in sorted(files):
            yield Path(folder) / name, file_issue(Path(folder) / name, seen_files)
    yield from _listing_errors(errors)


def file_issue(path: Path, seen: dict[tuple[int, int], Path]) -> Problem | None:
    """Why ``path`` is not a regular file to read (None when it is); records it in ``seen``."""
    try:
        info = os.stat(path)
    except OSError as err:
        return Problem(ProblemCode.UNREADABLE, f"cannot open: {_why(err)}")
    if not stat.S_ISREG(info.st_mode):
        return Problem(ProblemCode.NOT_A_FILE, f"not a regular file ({_kind(info.st_mode)})")
    earlier = seen.setdefault(_key(info), path)
    if earlier != path:
        return Problem(ProblemCode.SEEN_BEFORE, f"the same file as {shown_path(earlier)}, read once")
    return None


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading without ever blocking (a FIFO is refused, not waited on).

    Raises
    ------
    NotRegularFileError
        When ``path`` is a FIFO, device, socket or folder.
    OSError
        When it cannot be opened.
    """
    fp = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115  # returned to the caller
    try:
        mode = os.fstat(fp.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(f"not a regular file ({_kind(mode)})")
        os.set_blocking(fp.fileno(), True)
    except BaseException:
        fp.close()
        raise
    return fp


def _open_nonblocking(path: str, flags: int) -> int:
    """``os.open`` that never waits: a FIFO with no writer opens at once (and is then refused)."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))


def _folder_issue(path: Path, seen: set[tuple[int, int]]) -> Problem | None:
    """Why not to descend into ``path`` (None to descend); records the real folder in ``seen``."""
    try:
        info = os.stat(path)
    except OSError as err:
        return Problem(ProblemCode.UNREADABLE, f"cannot open folder: {_why(err)}")
    if not stat.S_ISDIR(info.st_mode):
        return Problem(ProblemCode.NOT_A_FILE, f"not a regular file ({_kind(info.st_mode)})")
    if _key(info) in seen:
        return Problem(ProblemCode.SEEN_BEFORE, "a link to a folder already scanned, not followed again")
    seen.add(_key(info))
    return None


def _listing_errors(errors: list[OSError]) -> Iterator[tuple[Path, Problem]]:
    for err in errors:
        problem = Problem(ProblemCode.UNREADABLE, f"cannot list folder: {_why(err)}")
        yield Path(os.fsdecode(err.filename or "?")), problem
    errors.clear()


def _key(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__
