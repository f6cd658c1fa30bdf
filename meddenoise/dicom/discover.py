"""Find the CT series under a folder by reading headers only (no pixel decoding).

``find_series`` walks a folder tree (any file names, nested folders, a DICOMDIR is skipped),
groups CT slices by SeriesInstanceUID, sorts them along the slice normal and validates the
geometry. ``select_series`` picks the series a command should work on, with clear errors.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from meddenoise.dicom.geometry import (
    ENHANCED_CT_STORAGE,
    check_geometry,
    describe,
    frame_attribute,
    normal_offset_mm,
    plane_of,
    sort_along_normal,
)
from meddenoise.dicom.series import ScanResult, SeriesInfo, SliceRef
from meddenoise.errors import SeriesError

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
"""SOP class of (single-frame) CT Image Storage."""

CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_STORAGE})
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
NOT_DICOM = "not DICOM"
NO_PIXEL_DATA = "no pixel data"
_PIXEL_DATA_TAG = (0x7FE0, 0x0010)
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"})
_UNDEFINED_LENGTH = 0xFFFFFFFF


def find_series(root: Path) -> ScanResult:
    """Find and validate the CT series under ``root`` (a folder tree or a single file).

    Only headers are read (``stop_before_pixels``), so this is cheap. Files that are not DICOM,
    not CT, a DICOMDIR, or whose pixel data is truncated are listed in ``skipped`` with the reason.

    Raises
    ------
    SeriesError
        When ``root`` does not exist or holds no files at all.

    Examples
    --------
    >>> from pydicom import examples
    >>> scan = find_series(examples.get_path("ct"))
    >>> scan.series[0].shape
    (1, 128, 128)
    """
    root = Path(root)
    if not root.exists():
        raise SeriesError(f"{root} does not exist")
    paths = list(_walk(root))
    if not paths:
        raise SeriesError(f"no files in {root}")
    groups: dict[str, list[SliceRef]] = defaultdict(list)
    dropped: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    without_pixels: set[Path] = set()
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        found = _scan_file(path)
        if isinstance(found, _Skip):
            skipped.append((path, found.reason))
            if found.series_uid:
                dropped[found.series_uid].append((path, found.reason))
            continue
        refs, has_pixels = found
        if not has_pixels:
            without_pixels.add(path)
        groups[str(refs[0].header.SeriesInstanceUID)].extend(refs)
    series = [
        series_info_from(refs, without_pixels=frozenset(without_pixels), dropped=dropped.get(uid, ()))
        for uid, refs in groups.items()
    ]
    series.sort(key=lambda s: (s.study_uid, _series_number(s), s.series_uid))
    logger.info("found %d CT series under %s (%d files skipped)", len(series), root, len(skipped))
    return ScanResult(series=tuple(series), skipped=tuple(skipped))


def select_series(scan: ScanResult, series_uids: Sequence[str] | None) -> tuple[SeriesInfo, ...]:
    """Pick the series to work on: all of them, or those named by ``series_uids``.

    Raises
    ------
    SeriesError
        When no CT series was found (naming what was found instead), or a requested UID is
        not among them (listing the valid ones).
    """
    if not scan.series:
        raise SeriesError(_nothing_found(scan.skipped))
    if not series_uids:
        return scan.series
    by_uid = {s.series_uid: s for s in scan.series}
    unknown = [uid for uid in series_uids if uid not in by_uid]
    if unknown:
        valid = ", ".join(f"{s.series_uid} ({s.description or 'no description'})" for s in scan.series)
        raise SeriesError(f"unknown series {', '.join(unknown)}; the CT series found are: {valid}")
    return tuple(by_uid[uid] for uid in dict.fromkeys(series_uids))


WRITER_TEMP_PREFIXES = (".tmp-", ".old-")


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        # A writer's temporary or swapped-out folder is never a series a reader should see.
        dirs[:] = sorted(d for d in dirs if not d.startswith(WRITER_TEMP_PREFIXES))
        for name in sorted(files):
            yield Path(folder) / name


def _nothing_found(skipped: Sequence[tuple[Path, str]]) -> str:
    place = os.path.commonpath([str(p.parent) for p, _ in skipped]) if skipped else "the input"
    example = f"e.g. {skipped[0][0].name}: {skipped[0][1]}" if skipped else "none"
    if all(reason == NOT_DICOM for _, reason in skipped):
        return f"no DICOM files in {place} ({len(skipped)} files skipped, {example})"
    modalities = sorted(
        {r.split(",")[0].removeprefix("modality ") for _, r in skipped if r.startswith("modality ")}
    )
    found = f"found only {', '.join(modalities)}" if modalities else "found no usable CT slices"
    return f"no CT series in {place}: {found} ({len(skipped)} files skipped, {example})"


@dataclass(frozen=True)
class _Skip:
    """Why a file is skipped, and its series when that is known (so the series can say so)."""

    reason: str
    series_uid: str = ""


def _scan_file(path: Path) -> tuple[list[SliceRef], bool] | _Skip:
    """The CT slices in one file and whether it has pixel data, or why the file is skipped."""
    if path.name.upper() == "DICOMDIR":
        return _Skip("DICOMDIR (a media directory, not an image)")
    header = _read_header(path)
    if isinstance(header, str):
        return _Skip(header)
    ds, pixel_issue = header
    reason = _not_ct_reason(ds)
    if reason:
        return _Skip(reason)
    uid = str(ds.SeriesInstanceUID)
    if pixel_issue not in (None, NO_PIXEL_DATA):
        return _Skip(str(pixel_issue), uid)
    frames: list[int | None] = [None]
    if _sop_class(ds) == ENHANCED_CT_STORAGE:
        frames = list(range(int(ds.get("NumberOfFrames") or 1)))
    refs = []
    for frame in frames:
        try:
            plane = plane_of(ds, frame)
        except ValueError as err:
            return _Skip(f"no usable geometry: {err}", uid)
        ref = SliceRef(
            path=path,
            sop_instance_uid=_sop_instance(ds),
            sop_class_uid=_sop_class(ds),
            position_mm=plane.position_mm,
            normal_offset_mm=normal_offset_mm(plane),
            header=ds,
            frame_index=frame,
        )
        refs.append(ref)
    return refs, pixel_issue is None


def _read_header(path: Path) -> tuple[Dataset, str | None] | str:
    """Read a file's header; return it with a pixel-data issue (or None), or a skip reason."""
    try:
        with path.open("rb") as fp:
            try:
                ds = dcmread(fp, stop_before_pixels=True)
            except InvalidDicomError:
                if not _looks_like_raw_dicom(fp):
                    return NOT_DICOM
                fp.seek(0)
                with warnings.catch_warnings():  # a probe: pydicom warns about whatever it guesses
                    warnings.simplefilter("ignore")
                    ds = dcmread(fp, stop_before_pixels=True, force=True)
                if not _sop_class(ds):
                    return NOT_DICOM
            if ds.file_meta.get("MediaStorageSOPClassUID") == MEDIA_DIRECTORY_STORAGE:
                return "DICOMDIR (a media directory, not an image)"
            return ds, _pixel_data_issue(fp, ds, path.stat().st_size)
    except (OSError, EOFError, ValueError, KeyError, struct.error) as err:
        return f"unreadable DICOM header: {type(err).__name__}: {err}"


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
    elif start[4:6] in _LONG_VRS:
        length = struct.unpack(endian + "I", fp.read(4))[0]
    else:
        length = struct.unpack(endian + "H", start[6:8])[0]
    available = file_size - fp.tell()
    if length == _UNDEFINED_LENGTH:
        return None if available > 0 else NO_PIXEL_DATA
    if length == 0:
        return NO_PIXEL_DATA
    expected = _native_bytes(ds)
    if min(length, available) < expected:
        return f"pixel data truncated ({min(length, available)} of {expected} bytes)"
    return None


def _native_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 16)
    return (int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * frames * samples * bits + 7) // 8


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


def _sop_class(ds: Dataset) -> str:
    """SOPClassUID, or the file meta's MediaStorageSOPClassUID when the former is empty."""
    return _with_meta_fallback(ds, "SOPClassUID", "MediaStorageSOPClassUID")


def _sop_instance(ds: Dataset) -> str:
    """SOPInstanceUID, or the file meta's MediaStorageSOPInstanceUID when the former is empty."""
    return _with_meta_fallback(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID")


def _not_ct_reason(ds: Dataset) -> str | None:
    sop = _sop_class(ds)
    modality = str(ds.get("Modality", "") or "unknown")
    if sop not in CT_SOP_CLASSES:
        if modality != "CT":
            return f"modality {modality}, not CT"
        return f"SOP class {UID(sop).name or 'missing'}, not CT Image Storage"
    if "SeriesInstanceUID" not in ds:
        return "no SeriesInstanceUID"
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        return f"SamplesPerPixel {ds.SamplesPerPixel}, not a greyscale CT image"
    return None


def series_info_from(
    refs: Sequence[SliceRef],
    *,
    without_pixels: frozenset[Path] = frozenset(),
    dropped: Sequence[tuple[Path, str]] = (),
) -> SeriesInfo:
    """Sort and validate the slices of one series and describe it.

    ``without_pixels`` names files that have no pixel data (fatal); ``dropped`` lists files of
    this series that were skipped (truncated, undecodable) with the reason, noted as problems.
    """
    refs = sort_along_normal(refs)
    planes = [plane_of(r.header, r.frame_index) for r in refs]
    geometry = check_geometry(refs, planes)
    fatal = list(geometry.fatal_problems)
    fatal += [f"{NO_PIXEL_DATA} in {describe(r)}" for r in refs if r.path in without_pixels]
    notes = [f"{p.name} skipped: {reason}" for p, reason in dropped]
    if fatal:
        fatal += notes
    first = refs[0].header
    kernel = frame_attribute(first, refs[0].frame_index, "CTReconstructionSequence", "ConvolutionKernel")
    return SeriesInfo(
        series_uid=str(first.SeriesInstanceUID),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        description=str(first.get("SeriesDescription", "")),
        modality=str(first.get("Modality", "CT")),
        kernel="\\".join(kernel) if isinstance(kernel, MultiValue) else str(kernel or ""),
        shape=(len(refs), planes[0].rows, planes[0].columns),
        spacing_mm=(geometry.slice_step_mm, *planes[0].pixel_spacing_mm),
        orientation=planes[0].orientation,
        slices=refs,
        tilt_deg=geometry.tilt_deg,
        problems=(*notes, *geometry.problems),
        fatal_problems=tuple(fatal),
    )


def _series_number(info: SeriesInfo) -> int:
    value = info.slices[0].header.get("SeriesNumber")
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
