"""Slice geometry: where each slice (or Enhanced CT frame) sits, sorting, and validation in words.

Slices are sorted along the slice normal, ``dot(cross(row_cos, col_cos), ImagePositionPatient)``
(ARCHITECTURE.md rule 1), never by file name or InstanceNumber. Validation turns geometry into
readable, typed problems: fatal ones (mixed orientations or sizes, duplicate positions, and a gap
where a slice is missing unless gaps are allowed) stop ``read_series``; the others (gantry tilt,
uneven spacing) are only named. Header values are validated as they are read (``validate``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from meddenoise.dicom import validate
from meddenoise.dicom.problems import Problem, ProblemCode, shown_path
from meddenoise.dicom.series import SliceRef
from meddenoise.dicom.validate import HeaderError
from meddenoise.tolerances import TILT_TOLERANCE_DEG

logger = logging.getLogger(__name__)

ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
"""SOP class of Enhanced CT Image Storage (multi-frame)."""

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction cosines that still counts as the same orientation."""

POSITION_TOLERANCE_MM = 1e-3
"""Slices closer than this along the normal share a position (duplicates)."""

GAP_FACTOR = 1.5
"""A step this many times the spacing on both sides of it (or more) means a slice is missing."""


@dataclass(frozen=True)
class Plane:
    """The image plane of one slice or frame, read from its header."""

    position_mm: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float]


@dataclass(frozen=True)
class Geometry:
    """What validation found for a sorted series (``problems`` holds fatal and named ones)."""

    slice_step_mm: float
    tilt_deg: float
    problems: tuple[Problem, ...]


def frame_attribute(header: Dataset, frame_index: int | None, group: str, keyword: str) -> Any:
    """Return ``keyword`` for one frame, looking in the functional groups of Enhanced CT.

    For a single-frame file (``frame_index`` None) the attribute is read from the top level. For a
    multi-frame file the per-frame functional group ``group`` wins over the shared one, and the top
    level is the last resort. Returns None when the attribute is nowhere.
    """
    if frame_index is not None:
        places: list[Any] = []
        per_frame = header.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and frame_index < len(per_frame):
            places.append(per_frame[frame_index])
        shared = header.get("SharedFunctionalGroupsSequence")
        if shared:
            places.append(shared[0])
        for item in places:
            sequence = item.get(group)
            if sequence and keyword in sequence[0]:
                return sequence[0].get(keyword)
    return header.get(keyword)


def plane_of(header: Dataset, frame_index: int | None = None) -> Plane:
    """Read the image plane of a slice (or an Enhanced CT frame) from its header.

    Raises
    ------
    HeaderError
        (a ValueError) When ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows or
        Columns is missing, malformed, not finite or impossible; the message names the attribute,
        its tag and the value.
    """
    position = frame_attribute(header, frame_index, "PlanePositionSequence", "ImagePositionPatient")
    orientation = frame_attribute(header, frame_index, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = frame_attribute(header, frame_index, "PixelMeasuresSequence", "PixelSpacing")
    return Plane(
        position_mm=validate.position_mm(position),
        orientation=validate.orientation_of(orientation),
        rows=validate.positive_int(header, "Rows", what="a usable image size"),
        columns=validate.positive_int(header, "Columns", what="a usable image size"),
        pixel_spacing_mm=validate.pixel_spacing_mm(spacing),
    )


def slice_normal(orientation: Sequence[float]) -> npt.NDArray[np.float64]:
    """Unit slice normal ``cross(row_cos, col_cos)`` of an ImageOrientationPatient."""
    normal = np.cross(
        np.asarray(orientation[:3], dtype=np.float64), np.asarray(orientation[3:], dtype=np.float64)
    )
    return normal / np.linalg.norm(normal)


def normal_offset_mm(plane: Plane) -> float:
    """The slice's sort key: its position projected on its own slice normal."""
    return float(np.dot(slice_normal(plane.orientation), np.asarray(plane.position_mm)))


def sort_along_normal(refs: Sequence[SliceRef]) -> tuple[SliceRef, ...]:
    """Sort slices by ``normal_offset_mm`` (ties broken by path and frame, so the order is stable)."""
    return tuple(sorted(refs, key=lambda r: (r.normal_offset_mm, str(r.path), r.frame_index or 0)))


def describe(ref: SliceRef) -> str:
    """A slice's name in messages: the file name, plus the frame for Enhanced CT."""
    name = shown_path(ref.path.name)
    return name if ref.frame_index is None else f"{name} frame {ref.frame_index + 1}"


def check_geometry(
    refs: Sequence[SliceRef], planes: Sequence[Plane], *, allow_gaps: bool = False
) -> Geometry:
    """Validate slices already sorted along the normal (``planes[i]`` belongs to ``refs[i]``).

    Returns the slice step along the normal (the median step; for one slice
    SpacingBetweenSlices, SliceThickness or 1 mm), the gantry tilt and the problems: mixed
    planes and duplicate positions are fatal, a gap is fatal unless ``allow_gaps``, and tilt and
    uneven spacing are only named.
    """
    fatal = _check_planes(refs, planes)
    if fatal:
        return Geometry(slice_step_mm=_single_slice_step(refs[0]), tilt_deg=0.0, problems=fatal)
    offsets = np.asarray([r.normal_offset_mm for r in refs], dtype=np.float64)
    steps = np.diff(offsets)
    fatal = _check_duplicates(refs, steps)
    step = float(np.median(steps)) if len(steps) and not fatal else _single_slice_step(refs[0])
    problems = list(fatal)
    if not fatal:
        problems += _check_spacing(refs, steps, allow_gaps=allow_gaps)
    tilt = _tilt_deg(refs, planes[0])
    if tilt > TILT_TOLERANCE_DEG:
        problems.insert(0, Problem(ProblemCode.TILT, f"gantry tilt {tilt:.1f}°"))
    return Geometry(slice_step_mm=step, tilt_deg=tilt, problems=tuple(problems))


def _check_planes(refs: Sequence[SliceRef], planes: Sequence[Plane]) -> tuple[Problem, ...]:
    first, name = planes[0], describe(refs[0])
    fatal: list[Problem] = []
    for ref, plane in zip(refs, planes, strict=True):
        if np.max(np.abs(np.subtract(plane.orientation, first.orientation))) > ORIENTATION_TOLERANCE:
            message = (
                f"mixed orientations: {describe(ref)} has ImageOrientationPatient "
                f"{_fmt(plane.orientation)}, {name} has {_fmt(first.orientation)}"
            )
            fatal.append(Problem(ProblemCode.MIXED_ORIENTATION, message, fatal=True))
            break
    for ref, plane in zip(refs, planes, strict=True):
        if (plane.rows, plane.columns) != (first.rows, first.columns):
            message = (
                f"mixed image sizes: {describe(ref)} is {plane.rows}×{plane.columns}, "
                f"{name} is {first.rows}×{first.columns}"
            )
            fatal.append(Problem(ProblemCode.MIXED_SIZE, message, fatal=True))
            break
    for ref, plane in zip(refs, planes, strict=True):
        if not np.allclose(plane.pixel_spacing_mm, first.pixel_spacing_mm, rtol=1e-4, atol=1e-5):
            message = (
                f"mixed pixel spacing: {describe(ref)} has {_fmt(plane.pixel_spacing_mm)} mm, "
                f"{name} has {_fmt(first.pixel_spacing_mm)} mm"
            )
            fatal.append(Problem(ProblemCode.MIXED_SPACING, message, fatal=True))
            break
    return tuple(fatal)


def _check_duplicates(refs: Sequence[SliceRef], steps: npt.NDArray[np.float64]) -> tuple[Problem, ...]:
    for i in np.flatnonzero(steps < POSITION_TOLERANCE_MM).tolist():
        a, b = refs[i], refs[i + 1]
        message = f"duplicate slice position {_fmt(a.position_mm)} mm in {describe(a)} and {describe(b)}"
        return (Problem(ProblemCode.DUPLICATE_POSITION, message, fatal=True),)
    return ()


def _check_spacing(
    refs: Sequence[SliceRef], steps: npt.NDArray[np.float64], *, allow_gaps: bool
) -> list[Problem]:
    """Gaps (fatal unless ``allow_gaps``) and uneven spacing (named).

    A step is a gap (a missing slice) when it is at least GAP_FACTOR times the typical step (the
    lower median of three) both before it and after it, where those exist. So a series whose
    spacing changes from one regular run to another is uneven, not broken.
    """
    gaps: list[Problem] = []
    for i, step in enumerate(steps.tolist()):
        sides = [side for side in (steps[max(0, i - 3) : i], steps[i + 1 : i + 4]) if len(side)]
        typical = [float(np.sort(side)[(len(side) - 1) // 2]) for side in sides]
        if not typical or any(step < GAP_FACTOR * t for t in typical):
            continue
        local = max(typical)
        missing = max(1, round(step / local) - 1)
        message = (
            f"gap of {step:.2f} mm between {describe(refs[i])} and {describe(refs[i + 1])} "
            f"where the spacing is {local:.2f} mm: about {missing} slice(s) missing"
        )
        gaps.append(Problem(ProblemCode.GAP, message, fatal=not allow_gaps))
    if gaps or not len(steps):
        return gaps
    median = float(np.median(steps))
    if float(np.max(np.abs(steps - median))) <= max(0.01, 0.01 * median):
        return []
    message = (
        f"uneven slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm (median {median:.2f} mm)"
    )
    return [Problem(ProblemCode.UNEVEN_SPACING, message)]


def _tilt_deg(refs: Sequence[SliceRef], plane: Plane) -> float:
    """Angle between the slice normal and the line through the slice positions (or the tag)."""
    travel = np.subtract(refs[-1].position_mm, refs[0].position_mm)
    length = float(np.linalg.norm(travel))
    if len(refs) < 2 or length < POSITION_TOLERANCE_MM:
        tag = _optional_number(refs[0], "GantryDetectorTilt")
        return abs(tag) if tag is not None else 0.0
    cosine = abs(float(np.dot(travel, slice_normal(plane.orientation)))) / length
    return math.degrees(math.acos(min(1.0, cosine)))


def _single_slice_step(ref: SliceRef) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _optional_number(ref, keyword)
        if value is not None and value > 0:
            return value
    return 1.0


def _optional_number(ref: SliceRef, keyword: str) -> float | None:
    """An optional, informative number (SliceThickness, GantryDetectorTilt); unusable ones are ignored.

    Such a value only names tilt or the step of a single slice, so a broken one is logged and
    ignored rather than refusing the series.
    """
    value = ref.header.get(keyword)
    if value in (None, ""):
        return None
    try:
        return validate.numbers(value, keyword, count=1, what="a number")[0]
    except HeaderError as err:
        logger.warning("%s: %s; ignored", describe(ref), err)
        return None


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
