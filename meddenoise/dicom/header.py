"""Read one file's header, or say why it is skipped; never let one file stop a scan.

Any exception while reading a header (a RecursionError from sequences nested thousands deep, a
struct.error from a corrupt element, ...) skips that file with the reason; its SeriesInstanceUID
is then recovered if possible, so its series knows a slice is missing. pydicom's warnings are
logged (with the file name escaped), never printed.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from meddenoise.dicom import validate
from meddenoise.dicom.problems import Problem, ProblemCode, shown_path, shown_text
from meddenoise.dicom.rawheader import LONG_VRS, UNDEFINED_LENGTH, series_uid_of_broken
from meddenoise.dicom.walk import open_regular

logger = logging.getLogger(__name__)

MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
NOT_DICOM = "not DICOM"
NO_PIXEL_DATA = "no pixel data"
DICOMDIR_REASON = "DICOMDIR (a media directory, not an image)"
_PIXEL_DATA_TAG = (0x7FE0, 0x0010)


@dataclass(frozen=True)
class Skip:
    """Why a file is skipped, as a problem, and its series when that is known."""

    problem: Problem
    series_uid: str = ""

    @classmethod
    def of(cls, code: ProblemCode, reason: str, series_uid: str = "") -> Skip:
        """A skip with ``reason`` in words and its ``code``."""
        return cls(Problem(code, reason), series_uid)


@contextmanager
def warnings_logged(path: Path) -> Iterator[None]:
    """Record the warnings and pydicom log records raised inside; log each distinct one once, naming
    the file.

    pydicom both warns and logs most complaints, and logs decoder failures with a traceback; here
    they become one escaped line each on this module's logger. This replaces the process's warning
    filters while it runs (``warnings.catch_warnings``).
    """
    with warnings.catch_warnings(record=True) as caught, _pydicom_log_captured() as records:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for message in dict.fromkeys([*(str(w.message) for w in caught), *records]):
                logger.warning("%s: %s", shown_path(path), shown_text(" ".join(message.split())))


_capture = threading.local()
_capture_lock = threading.Lock()
_capture_users = 0


class _PydicomRecords(logging.Handler):
    """Collects pydicom's records for the innermost ``warnings_logged`` of this thread.

    Records of other threads (or outside any capture) go on to the root logger's handlers, as
    propagation would have sent them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        stack: list[list[str]] | None = getattr(_capture, "stack", None)
        if stack:
            if record.levelno >= logging.WARNING:
                stack[-1].append(record.getMessage())
        else:
            logging.getLogger().handle(record)


_HANDLER = _PydicomRecords()


@contextmanager
def _pydicom_log_captured() -> Iterator[list[str]]:
    """The messages pydicom logs (WARNING and above) inside, instead of printing them."""
    global _capture_users  # noqa: PLW0603  # one shared handler, installed while anyone captures
    pydicom_logger = logging.getLogger("pydicom")
    stack: list[list[str]] = _capture.__dict__.setdefault("stack", [])
    records: list[str] = []
    stack.append(records)
    with _capture_lock:
        if _capture_users == 0:
            pydicom_logger.addHandler(_HANDLER)
            pydicom_logger.propagate = False
        _capture_users += 1
    try:
        yield records
    finally:
        stack.pop()
        with _capture_lock:
            _capture_users -= 1
            if _capture_users == 0:
                pydicom_logger.removeHandler(_HANDLER)
                pydicom_logger.propagate = True


def read_header(path: Path) -> tuple[Dataset, str | None] | Skip:
    """Read a file's header; return it with a pixel-data issue (or None), or why it is skipped."""
    try:
        with open_regular(path) as fp, warnings_logged(path):
            try:
                return _read_open(fp)
            except Exception as err:  # any parse failure (RecursionError too) skips this file only
                reason = f"unreadable DICOM header: {type(err).__name__}: {err}"
                return Skip.of(ProblemCode.UNREADABLE, _one_line(reason), series_uid_of_broken(fp))
    except OSError as err:
        return Skip.of(ProblemCode.UNREADABLE, f"cannot open: {err.strerror or err}")


def _read_open(fp: BinaryIO) -> tuple[Dataset, str | None] | Skip:
    try:
        ds = dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        if not _looks_like_raw_dicom(fp):
            return Skip.of(ProblemCode.NOT_DICOM, NOT_DICOM)
        fp.seek(0)
        with warnings.catch_warnings():  # a probe: pydicom warns about whatever it guesses
            warnings.simplefilter("ignore")
            ds = dcmread(fp, stop_before_pixels=True, force=True)
        if not sop_class(ds):
            return Skip.of(ProblemCode.NOT_DICOM, NOT_DICOM)
    if ds.file_meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY_STORAGE:
        return Skip.of(ProblemCode.DICOMDIR, DICOMDIR_REASON)
    return ds, _pixel_data_issue(fp, ds, os.fstat(fp.fileno()).st_size)


def _one_line(text: str) -> str:
    return shown_text(" ".join(text.split()))[:300]


def _looks_like_raw_dicom(fp: BinaryIO) -> bool:
    """Whether a file without the DICM preamble starts like a bare DICOM stream (group 0002/0008)."""
    fp.seek(0)
    start = fp.read(6)
    if len(start) < 6:
        return False
    group, element = struct.unpack("<HH", start[:4])
    return group in (0x0002, 0x0008) and element <= 0x0020 and (start[4:6].isalpha() or start[5] == 0)


def _pixel_data_issue(fp: BinaryIO, ds: Dataset, file_size: int) -> str | None:
    """Check the PixelData element that follows the header (``fp`` sits at its tag).

    Returns None when it looks complete, NO_PIXEL_DATA when it is absent, or a "truncated"
    reason when a native (uncompressed) element is shorter than Rows×Columns×frames demands.
    Encapsulated (compressed) data is only checked when decoded.
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax == DeflatedExplicitVRLittleEndian:
        return None
    implicit, little = ds.original_encoding
    endian = "<" if little in (True, None) else ">"
    start = fp.read(8)
    if len(start) < 8 or struct.unpack(endian + "HH", start[:4]) != _PIXEL_DATA_TAG:
        return NO_PIXEL_DATA
    if implicit:
        length = struct.unpack(endian + "I", start[4:8])[0]
    elif start[4:6] in LONG_VRS:
        length = struct.unpack(endian + "I", fp.read(4))[0]
    else:
        length = struct.unpack(endian + "H", start[6:8])[0]
    available = file_size - fp.tell()
    if length == UNDEFINED_LENGTH:
        return None if available > 0 else NO_PIXEL_DATA
    if length == 0:
        return NO_PIXEL_DATA
    expected = _expected_bytes(ds)
    if min(length, available) < expected:
        return f"pixel data truncated ({min(length, available)} of {expected} bytes)"
    return None


def _expected_bytes(ds: Dataset) -> int:
    """Bytes of native pixels the header declares (0 when it cannot say: the header checks name why)."""
    try:
        return validate.declared_bytes(ds)
    except validate.HeaderError:
        return 0


def _with_meta_fallback(ds: Dataset, keyword: str, meta_keyword: str) -> str:
    """``ds.<keyword>``, or the file meta's ``<meta_keyword>`` when the former is empty.

    Some de-identified files (the totalseg fixture) blank the dataset's SOP UIDs but keep them in
    the file meta; the meta is then the only record of which instance this is.
    """
    value = str(ds.get(keyword, "") or "")
    meta = getattr(ds, "file_meta", None)
    if not value and meta is not None:
        value = str(meta.get(meta_keyword, "") or "")
    return value


def sop_class(ds: Dataset) -> str:
    """SOPClassUID, or the file meta's MediaStorageSOPClassUID when the former is empty."""
    return _with_meta_fallback(ds, "SOPClassUID", "MediaStorageSOPClassUID")


def sop_instance(ds: Dataset) -> str:
    """SOPInstanceUID, or the file meta's MediaStorageSOPInstanceUID when the former is empty."""
    return _with_meta_fallback(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID")
