"""Find the CT series under a folder by reading headers only (no pixel decoding).

``find_series`` walks a folder tree (any file names, nested folders, a DICOMDIR is skipped),
groups CT slices by SeriesInstanceUID, sorts them along the slice normal and validates the
geometry. ``select_series`` picks the series a command should work on, with clear errors.

Each file and each series is isolated: whatever one file holds (a FIFO, sequences nested
thousands deep, NaN coordinates) makes that file skipped or its series fatally flawed, with the
reason, and never stops the scan of the others.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from meddenoise.dicom import validate
from meddenoise.dicom.geometry import (
    ENHANCED_CT_STORAGE,
    Geometry,
    Plane,
    check_geometry,
    describe,
    frame_attribute,
    normal_offset_mm,
    plane_of,
    sort_along_normal,
)
from meddenoise.dicom.header import (
    DICOMDIR_REASON,
    NO_PIXEL_DATA,
    NOT_DICOM,
    Skip,
    read_header,
    sop_class,
    sop_instance,
    warnings_logged,
)
from meddenoise.dicom.problems import Problem, ProblemCode, shown_path, shown_text
from meddenoise.dicom.rawheader import series_uid_of_broken
from meddenoise.dicom.series import ScanResult, SeriesInfo, SkippedFile, SliceRef
from meddenoise.dicom.validate import HeaderError
from meddenoise.dicom.walk import WRITER_TEMP_PREFIXES, open_regular, walk
from meddenoise.errors import SeriesError

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
"""SOP class of (single-frame) CT Image Storage."""

CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_STORAGE})

__all__ = ["NOT_DICOM", "NO_PIXEL_DATA", "WRITER_TEMP_PREFIXES", "find_series", "select_series"]

_Found = tuple[list[SliceRef], Problem | None]
NO_SERIES_UID = "no SeriesInstanceUID"


def find_series(root: Path, *, allow_gaps: bool = False) -> ScanResult:
    """Find and validate the CT series under ``root`` (a folder tree or a single file).

    Only headers are read (``stop_before_pixels``), so this is cheap. Files that are not DICOM,
    not CT, a DICOMDIR, not regular files, unreadable, or whose pixel data is truncated are listed
    in ``skipped`` with the reason. A skipped file whose series is known leaves that series
    incomplete, and a step where a slice is missing is a gap: both are fatal problems of the
    series unless ``allow_gaps``, when they are only named.

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
    try:
        os.lstat(root)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise SeriesError(f"{shown_path(root)} does not exist") from err
    except OSError:
        pass  # a path too long or unreadable: the walk reports it as skipped
    groups: dict[str, list[SliceRef]] = defaultdict(list)
    file_problems: dict[Path, Problem] = {}
    skipped: list[SkippedFile] = []
    for path, issue in walk(root):
        found = Skip(issue) if issue is not None else _scan_file(path)
        if isinstance(found, Skip):
            skipped.append(SkippedFile(path, found.problem, found.series_uid))
            continue
        refs, problem = found
        if problem is not None:
            file_problems[path] = problem
        groups[_series_uid(refs[0].header)].extend(refs)
    if not groups and not skipped:
        raise SeriesError(f"no files in {shown_path(root)}")
    series = _describe(groups, file_problems=file_problems, skipped=skipped, allow_gaps=allow_gaps)
    series.sort(key=lambda s: (s.study_uid, _series_number(s), s.series_uid))
    logger.info("found %d CT series under %s (%d files skipped)", len(series), shown_path(root), len(skipped))
    return ScanResult(
        series=tuple(series),
        skipped=tuple((s.path, s.problem.message) for s in skipped),
        skipped_files=tuple(skipped),
    )


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
    unknown = [shown_text(uid) for uid in series_uids if uid not in by_uid]
    if unknown:
        valid = ", ".join(
            f"{s.series_uid} ({shown_text(s.description) or 'no description'})" for s in scan.series
        )
        raise SeriesError(f"unknown series {', '.join(unknown)}; the CT series found are: {valid}")
    return tuple(by_uid[uid] for uid in dict.fromkeys(series_uids))


def _nothing_found(skipped: Sequence[tuple[Path, str]]) -> str:
    place = _common_folder(skipped)
    example = f"e.g. {shown_path(skipped[0][0].name)}: {skipped[0][1]}" if skipped else "none"
    if skipped and all(reason == NOT_DICOM for _, reason in skipped):
        return f"no DICOM files in {place} ({len(skipped)} files skipped, {example})"
    modalities = sorted(
        {r.split(",")[0].removeprefix("modality ") for _, r in skipped if r.startswith("modality ")}
    )
    found = f"found only {', '.join(modalities)}" if modalities else "found no usable CT slices"
    return f"no CT series in {place}: {found} ({len(skipped)} files skipped, {example})"


def _common_folder(skipped: Sequence[tuple[Path, str]]) -> str:
    try:
        return shown_path(os.path.commonpath([str(p.parent) for p, _ in skipped]))
    except ValueError:  # none, or a mix of absolute and relative paths
        return "the input"


def _scan_file(path: Path) -> _Found | Skip:
    """The CT slices in one file and its fatal problem (or None), or why the file is skipped.

    Nothing a file holds escapes as an exception: it becomes the reason the file is skipped.
    """
    if path.name.upper() == "DICOMDIR":
        return Skip.of(ProblemCode.DICOMDIR, DICOMDIR_REASON)
    with warnings_logged(path):  # pydicom converts (and warns about) values lazily, on access
        header = read_header(path)
        if isinstance(header, Skip):
            return header
        ds, pixel_issue = header
        try:
            return _slices_of(path, ds, pixel_issue)
        except Exception as err:  # a value pydicom cannot convert, and the like: skip this file only
            reason = " ".join(f"unusable DICOM header: {type(err).__name__}: {err}".split())
            return Skip.of(ProblemCode.BAD_HEADER, shown_text(reason)[:300], _series_uid(ds))


def _slices_of(path: Path, ds: Dataset, pixel_issue: str | None) -> _Found | Skip:
    reason = _not_ct_reason(ds)
    if reason == NO_SERIES_UID:  # a CT slice all the same: find its series, so it is missed there
        uid = _raw_series_uid(path)
        if uid:
            return Skip.of(ProblemCode.BAD_HEADER, f"{NO_SERIES_UID} in the parsed header (damaged)", uid)
    if reason:
        return Skip.of(ProblemCode.NOT_CT, reason)
    uid = _series_uid(ds)
    if pixel_issue not in (None, NO_PIXEL_DATA):
        return Skip.of(ProblemCode.TRUNCATED, str(pixel_issue), uid)
    try:
        frames = _frames(ds)
        refs = [_slice_ref(path, ds, frame) for frame in frames]
    except HeaderError as err:
        return Skip.of(ProblemCode.BAD_HEADER, f"no usable geometry: {err}", uid)
    return refs, _file_problem(path, ds, frames, pixel_issue)


def _frames(ds: Dataset) -> list[int | None]:
    """The frames that are slices: [None] for single-frame CT, every frame of Enhanced CT."""
    if sop_class(ds) != ENHANCED_CT_STORAGE:
        return [None]
    count = validate.frame_count(ds)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or ()
    if len(per_frame) != count:
        raise HeaderError(
            f"{validate.tag_label('NumberOfFrames')} = {validate.shown_value(ds.NumberOfFrames)} "
            f"but {validate.tag_label('PerFrameFunctionalGroupsSequence')} has {len(per_frame)} items"
        )
    return list(range(count))


def _slice_ref(path: Path, ds: Dataset, frame: int | None) -> SliceRef:
    plane = plane_of(ds, frame)
    return SliceRef(
        path=path,
        sop_instance_uid=sop_instance(ds),
        sop_class_uid=sop_class(ds),
        position_mm=plane.position_mm,
        normal_offset_mm=normal_offset_mm(plane),
        header=ds,
        frame_index=frame,
    )


def _file_problem(
    path: Path, ds: Dataset, frames: Sequence[int | None], pixel_issue: str | None
) -> Problem | None:
    """What makes a placed file unusable (fatal for its series), or None."""
    name = shown_path(path.name)
    if pixel_issue == NO_PIXEL_DATA:
        return Problem(ProblemCode.NO_PIXEL_DATA, f"{NO_PIXEL_DATA} in {name}", fatal=True)
    try:
        if frames == [None] and validate.frame_count(ds) > 1:
            return Problem(
                ProblemCode.MULTIFRAME,
                f"{name}: {validate.tag_label('NumberOfFrames')} = "
                f"{validate.shown_value(ds.NumberOfFrames)} in a CT Image Storage file; "
                "multi-frame CT Image Storage is not supported",
                fatal=True,
            )
        validate.check_pixel_module(ds)
        for frame in frames:
            validate.rescale_pair(*rescale_values(ds, frame))
    except HeaderError as err:
        return Problem(ProblemCode.BAD_HEADER, str(err.at(path.name)), fatal=True)
    return None


def rescale_values(header: Dataset, frame_index: int | None) -> tuple[object, object]:
    """RescaleSlope and RescaleIntercept of one slice or frame, as stored (unvalidated)."""
    group = "PixelValueTransformationSequence"
    return (
        frame_attribute(header, frame_index, group, "RescaleSlope"),
        frame_attribute(header, frame_index, group, "RescaleIntercept"),
    )


def _raw_series_uid(path: Path) -> str:
    """The SeriesInstanceUID a raw scan finds in the file, or "" (see ``rawheader``)."""
    try:
        with open_regular(path) as fp:
            return series_uid_of_broken(fp)
    except OSError:
        return ""


def _series_uid(ds: Dataset) -> str:
    try:
        return str(ds.get("SeriesInstanceUID", "") or "")
    except Exception:  # an unconvertible value: the series is unknown
        return ""


def _not_ct_reason(ds: Dataset) -> str | None:
    sop = sop_class(ds)
    modality = shown_text(str(ds.get("Modality", "") or "unknown"))
    if sop not in CT_SOP_CLASSES:
        if modality != "CT":
            return f"modality {modality}, not CT"
        return f"SOP class {UID(sop).name or 'missing'}, not CT Image Storage"
    if "SeriesInstanceUID" not in ds:
        return NO_SERIES_UID
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        return f"SamplesPerPixel {ds.SamplesPerPixel}, not a greyscale CT image"
    return None


def _describe(
    groups: dict[str, list[SliceRef]],
    *,
    file_problems: dict[Path, Problem],
    skipped: list[SkippedFile],
    allow_gaps: bool,
) -> list[SeriesInfo]:
    """A SeriesInfo per group; a group that cannot be described at all has its files skipped."""
    series = []
    for uid, refs in groups.items():
        try:
            with warnings_logged(refs[0].path):  # values converted here for the first time may warn
                series.append(_series(uid, refs, file_problems, skipped, allow_gaps))
        except Exception as err:  # a last resort: one broken series never stops the others
            words = " ".join(f"series cannot be described: {type(err).__name__}: {err}".split())
            problem = Problem(ProblemCode.BAD_HEADER, shown_text(words)[:300])
            skipped += [SkippedFile(path, problem, uid) for path in dict.fromkeys(r.path for r in refs)]
    return series


def _series(
    uid: str,
    refs: Sequence[SliceRef],
    file_problems: dict[Path, Problem],
    skipped: Sequence[SkippedFile],
    allow_gaps: bool,
) -> SeriesInfo:
    """One series' SeriesInfo, with the problems of its files and the files of it that were skipped."""
    paths = {r.path for r in refs}
    return series_info_from(
        refs,
        dropped=[(s.path, s.problem.message) for s in skipped if s.series_uid and s.series_uid == uid],
        file_problems=[p for path, p in file_problems.items() if path in paths],
        allow_gaps=allow_gaps,
    )


def series_info_from(
    refs: Sequence[SliceRef],
    *,
    without_pixels: frozenset[Path] = frozenset(),
    dropped: Sequence[tuple[Path, str]] = (),
    file_problems: Sequence[Problem] = (),
    carried: Sequence[Problem] = (),
    allow_gaps: bool = False,
) -> SeriesInfo:
    """Sort and validate the slices of one series and describe it.

    ``without_pixels`` names files that have no pixel data (fatal); ``file_problems`` are other
    problems of its files (fatal ones refuse the series); ``dropped`` lists files of this series
    that were skipped (truncated, undecodable) with the reason: the series is then incomplete,
    which is fatal unless ``allow_gaps`` (as are gaps). ``carried`` are problems found earlier
    (kept as they are). A geometry that cannot be checked at all is a fatal problem, not an error.
    """
    refs = sort_along_normal(refs)
    geometry, plane = _geometry(refs, allow_gaps=allow_gaps)
    no_pixels = [
        Problem(ProblemCode.NO_PIXEL_DATA, f"{NO_PIXEL_DATA} in {describe(r)}", fatal=True)
        for r in refs
        if r.path in without_pixels
    ]
    incomplete = [
        Problem(ProblemCode.INCOMPLETE, f"{shown_path(p.name)} skipped: {reason}", fatal=not allow_gaps)
        for p, reason in dropped
    ]
    fatal = [*geometry.problems, *no_pixels, *file_problems, *carried, *incomplete]
    named = [*carried, *incomplete, *geometry.problems]
    issues = (*(p for p in fatal if p.fatal), *(p for p in named if not p.fatal))
    return _info(refs, geometry, plane, issues=issues, allow_gaps=allow_gaps)


def _geometry(refs: Sequence[SliceRef], *, allow_gaps: bool) -> tuple[Geometry, Plane]:
    """Check the geometry; if that fails outright, a fatal BAD_GEOMETRY problem says why."""
    try:
        planes = [plane_of(r.header, r.frame_index) for r in refs]
        return check_geometry(refs, planes, allow_gaps=allow_gaps), planes[0]
    except Exception as err:  # nothing about one series' geometry may stop the scan
        message = " ".join(f"geometry cannot be checked: {type(err).__name__}: {err}".split())
        problem = Problem(ProblemCode.BAD_GEOMETRY, shown_text(message)[:300], fatal=True)
        first = refs[0].header
        rows, columns = (_int_or_zero(first.get(k)) for k in ("Rows", "Columns"))
        plane = Plane(refs[0].position_mm, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), rows, columns, (1.0, 1.0))
        return Geometry(slice_step_mm=1.0, tilt_deg=0.0, problems=(problem,)), plane


def _info(
    refs: Sequence[SliceRef],
    geometry: Geometry,
    plane: Plane,
    *,
    issues: tuple[Problem, ...],
    allow_gaps: bool,
) -> SeriesInfo:
    first = refs[0].header
    kernel = frame_attribute(first, refs[0].frame_index, "CTReconstructionSequence", "ConvolutionKernel")
    return SeriesInfo(
        series_uid=str(first.SeriesInstanceUID),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        description=str(first.get("SeriesDescription", "")),
        modality=str(first.get("Modality", "CT")),
        kernel="\\".join(kernel) if isinstance(kernel, MultiValue) else str(kernel or ""),
        shape=(len(refs), plane.rows, plane.columns),
        spacing_mm=(geometry.slice_step_mm, *plane.pixel_spacing_mm),
        orientation=plane.orientation,
        slices=tuple(refs),
        tilt_deg=geometry.tilt_deg,
        problems=tuple(p.message for p in issues if not p.fatal),
        fatal_problems=tuple(p.message for p in issues if p.fatal),
        issues=issues,
        gaps_allowed=allow_gaps,
    )


def _int_or_zero(value: object) -> int:
    try:
        return max(0, int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _series_number(info: SeriesInfo) -> int:
    """SeriesNumber, for sorting only: 0 when it is absent or unusable (converted here, warnings logged)."""
    with warnings_logged(info.slices[0].path):
        try:
            return int(info.slices[0].header.get("SeriesNumber"))
        except Exception:  # an unconvertible IS value must not stop the scan
            return 0
