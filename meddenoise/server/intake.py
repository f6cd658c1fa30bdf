"""Taking a job's input in safely: uploaded files and zips onto disk, durably, then checked.

Uploaded names are never used as paths: the n-th file becomes ``<folder>/<n>.dcm``. A zip is
unpacked entry by entry only after every entry passes the checks (no absolute path, no ``..``,
no link, no encryption, at most ``max_entries`` entries, a compression ratio of at most
``max_ratio``, and at most ``max_bytes`` unpacked, counted as it is read, not as declared).
Every file is fsync'ed, then its folder, before the job is acknowledged.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from meddenoise.errors import MeddenoiseError
from meddenoise.pipeline import ProblemCode, SeriesInfo, find_series

CHUNK = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"


class Refused(MeddenoiseError):
    """A request the server will not take; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ZipLimits:
    """What a zip may hold (see the module docstring)."""

    max_bytes: int
    max_entries: int = 10_000
    max_ratio: float = 200.0


def fsync_path(path: Path) -> None:
    """fsync a file or a folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: IO[bytes], target: Path, *, budget: int) -> int:
    """Copy ``source`` into the new file ``target`` (fsync'ed); Refused past ``budget`` bytes."""
    written = 0
    with target.open("xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise Refused("the upload unpacks to more than the size limit", status=413)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return written


def _checked_entries(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    entries = archive.infolist()
    if len(entries) > limits.max_entries:
        raise Refused(f"the zip holds {len(entries)} entries; at most {limits.max_entries} are allowed")
    files, declared = [], 0
    for info in entries:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise Refused("the zip has an entry with an absolute path or '..'; refused")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Refused("the zip holds a link; refused")
        if info.flag_bits & 0x1:
            raise Refused("the zip holds an encrypted entry; refused")
        if info.is_dir():
            continue
        if info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise Refused(f"a zip entry is compressed more than {limits.max_ratio:g}:1 (a zip bomb?)")
        declared += info.file_size
        files.append(info)
    if declared > limits.max_bytes:
        raise Refused("the zip unpacks to more than the size limit", status=413)
    return files


def unpack_zip(source: BinaryIO, folder: Path, *, limits: ZipLimits, first: int = 0) -> int:
    """Unpack a checked zip into ``folder`` as ``<n>.dcm`` files from ``first``; returns the count."""
    try:
        with zipfile.ZipFile(source) as archive:
            budget = limits.max_bytes
            entries = _checked_entries(archive, limits)
            for offset, info in enumerate(entries):
                with archive.open(info) as member:
                    budget -= _copy(
                        member, folder / f"{first + offset:06d}.dcm", budget=min(budget, info.file_size)
                    )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as err:
        raise Refused(f"the zip cannot be read ({err})") from err
    return len(entries)


def store_parts(parts: Iterable[BinaryIO], folder: Path, *, limits: ZipLimits) -> int:
    """Write uploaded parts (DICOM files, or zips of them) into ``folder``; fsync it; return the count."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for part in parts:
        head = part.read(len(ZIP_MAGIC))
        part.seek(0)
        if head == ZIP_MAGIC:
            count += unpack_zip(part, folder, limits=limits, first=count)
        else:
            _copy(part, folder / f"{count:06d}.dcm", budget=limits.max_bytes)
            count += 1
    if count == 0:
        raise Refused("the request holds no files")
    fsync_path(folder)
    return count


def one_ct_series(folder: Path) -> SeriesInfo:
    """The one usable CT series in ``folder`` (headers only); Refused (400/422) with the reason."""
    scan = find_series(folder)
    codes = {skipped.problem.code for skipped in scan.skipped_files}
    if not scan.series:
        if codes == {ProblemCode.NOT_DICOM}:
            raise Refused(f"no DICOM files in the upload ({len(scan.skipped_files)} files)")
        raise Refused(f"no CT series in the upload (found: {', '.join(sorted(codes))})", status=422)
    if len(scan.series) > 1:
        raise Refused(f"the upload holds {len(scan.series)} CT series; send one per job", status=422)
    (info,) = scan.series
    if info.fatal_problems:
        raise Refused(f"the series cannot be denoised: {'; '.join(info.fatal_problems)}", status=422)
    return info


def publish(staging: Path, final: Path) -> None:
    """Rename a complete, fsync'ed staging folder into place and fsync its parent."""
    os.replace(staging, final)
    fsync_path(final.parent)


def discard(folder: Path) -> None:
    """Remove a staging or job folder (ignoring what is already gone)."""
    shutil.rmtree(folder, ignore_errors=True)
