"""Slice geometry: where each slice (or Enhanced CT frame) sits, sorting, and validation in words.

Slices are sorted along the slice normal, ``dot(cross(row_cos, col_cos), ImagePositionPatient)``
(ARCHITECTURE.md rule 1), never by file name or InstanceNumber. Validation turns geometry into
readable problems: fatal ones (mixed orientations or sizes, duplicate positions, a gap where a
slice is missing) stop ``read_series``; the others (gantry tilt, uneven spacing) are only named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from meddenoise.dicom.series import SliceRef

ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
"""SOP class of Enhanced CT Image Storage (multi-frame)."""

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction cosines that still counts as the same orientation."""

POSITION_TOLERANCE_MM = 1e-3
"""Slices closer than this along the normal share a position (duplicates)."""

GAP_FACTOR = 1.5
"""A step this many times the spacing on both sides of it (or more) means a slice is missing."""

TILT_TOLERANCE_DEG = 0.1
"""Smaller angles between the slice normal and the slice-to-slice direction are not tilt."""


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
    """What validation found for a sorted series."""

    slice_step_mm: float
    tilt_deg: float
    problems: tuple[str, ...]
    fatal_problems: tuple[str, ...]


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
    ValueError
        When ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows or Columns is
        missing or malformed; the message names the attribute.
    """
    position = frame_attribute(header, frame_index, "PlanePositionSequence", "ImagePositionPatient")
    orientation = frame_attribute(header, frame_index, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = frame_attribute(header, frame_index, "PixelMeasuresSequence", "PixelSpacing")
    for name, value, length in (
        ("ImagePositionPatient", position, 3),
        ("ImageOrientationPatient", orientation, 6),
        ("PixelSpacing", spacing, 2),
    ):
        if value is None or len(value) != length:
            raise ValueError(f"no valid {name}")
    if "Rows" not in header or "Columns" not in header:
        raise ValueError("no Rows/Columns")
    row = np.asarray([float(v) for v in orientation[:3]])
    col = np.asarray([float(v) for v in orientation[3:]])
    if not math.isclose(np.linalg.norm(np.cross(row, col)), 1.0, abs_tol=1e-2):
        raise ValueError(f"ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors")
    return Plane(
        position_mm=(float(position[0]), float(position[1]), float(position[2])),
        orientation=tuple(float(v) for v in orientation),  # type: ignore[arg-type]
        rows=int(header.Rows),
        columns=int(header.Columns),
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
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
    return ref.path.name if ref.frame_index is None else f"{ref.path.name} frame {ref.frame_index + 1}"


def check_geometry(refs: Sequence[SliceRef], planes: Sequence[Plane]) -> Geometry:
    """Validate slices already sorted along the normal (``planes[i]`` belongs to ``refs[i]``).

    Returns the slice step along the normal (the median step; for one slice
    SpacingBetweenSlices, SliceThickness or 1 mm), the gantry tilt and the problems in words.
    """
    fatal = _check_planes(refs, planes)
    if fatal:
        return Geometry(
            slice_step_mm=_single_slice_step(refs[0]), tilt_deg=0.0, problems=(), fatal_problems=fatal
        )
    offsets = np.asarray([r.normal_offset_mm for r in refs], dtype=np.float64)
    steps = np.diff(offsets)
    fatal = _check_duplicates(refs, steps)
    step = float(np.median(steps)) if len(steps) and not fatal else _single_slice_step(refs[0])
    problems: list[str] = []
    if not fatal:
        gaps, uneven = _check_spacing(refs, steps)
        fatal += gaps
        problems += uneven
    tilt = _tilt_deg(refs, planes[0])
    if tilt > TILT_TOLERANCE_DEG:
        problems.insert(0, f"gantry tilt {tilt:.1f}°")
    return Geometry(slice_step_mm=step, tilt_deg=tilt, problems=tuple(problems), fatal_problems=fatal)


def _check_planes(refs: Sequence[SliceRef], planes: Sequence[Plane]) -> tuple[str, ...]:
    first, name = planes[0], describe(refs[0])
    fatal: list[str] = []
    for ref, plane in zip(refs, planes, strict=True):
        if np.max(np.abs(np.subtract(plane.orientation, first.orientation))) > ORIENTATION_TOLERANCE:
            fatal.append(
                f"mixed orientations: {describe(ref)} has ImageOrientationPatient "
                f"{_fmt(plane.orientation)}, {name} has {_fmt(first.orientation)}"
            )
            break
    for ref, plane in zip(refs, planes, strict=True):
        if (plane.rows, plane.columns) != (first.rows, first.columns):
            fatal.append(
                f"mixed image sizes: {describe(ref)} is {plane.rows}×{plane.columns}, "
                f"{name} is {first.rows}×{first.columns}"
            )
            break
    for ref, plane in zip(refs, planes, strict=True):
        if not np.allclose(plane.pixel_spacing_mm, first.pixel_spacing_mm, rtol=1e-4, atol=1e-5):
            fatal.append(
                f"mixed pixel spacing: {describe(ref)} has {_fmt(plane.pixel_spacing_mm)} mm, "
                f"{name} has {_fmt(first.pixel_spacing_mm)} mm"
            )
            break
    return tuple(fatal)


def _check_duplicates(refs: Sequence[SliceRef], steps: npt.NDArray[np.float64]) -> tuple[str, ...]:
    for i in np.flatnonzero(steps < POSITION_TOLERANCE_MM).tolist():
        a, b = refs[i], refs[i + 1]
        return (f"duplicate slice position {_fmt(a.position_mm)} mm in {describe(a)} and {describe(b)}",)
    return ()


def _check_spacing(
    refs: Sequence[SliceRef], steps: npt.NDArray[np.float64]
) -> tuple[tuple[str, ...], list[str]]:
    """Gaps and uneven spacing.

    A step is a gap (a missing slice) when it is at least GAP_FACTOR times the typical step (the
    lower median of three) both before it and after it, where those exist. So a series whose
    spacing changes from one regular run to another is uneven, not broken.
    """
    gaps: list[str] = []
    for i, step in enumerate(steps):
        sides = [side for side in (steps[max(0, i - 3) : i], steps[i + 1 : i + 4]) if len(side)]
        typical = [float(np.sort(side)[(len(side) - 1) // 2]) for side in sides]
        if not typical or any(step < GAP_FACTOR * t for t in typical):
            continue
        local = max(typical)
        missing = max(1, round(step / local) - 1)
        gaps.append(
            f"gap of {step:.2f} mm between {describe(refs[i])} and {describe(refs[i + 1])} "
            f"where the spacing is {local:.2f} mm: about {missing} slice(s) missing"
        )
    uneven: list[str] = []
    if len(steps):
        median = float(np.median(steps))
        tolerance = max(0.01, 0.01 * median)
        if not gaps and float(np.max(np.abs(steps - median))) > tolerance:
            uneven.append(
                f"uneven slice spacing: steps from {steps.min():.2f} to {steps.max():.2f} mm "
                f"(median {median:.2f} mm)"
            )
    return tuple(gaps), uneven


def _tilt_deg(refs: Sequence[SliceRef], plane: Plane) -> float:
    """Angle between the slice normal and the line through the slice positions (or the tag)."""
    if len(refs) < 2:
        tag = refs[0].header.get("GantryDetectorTilt")
        return abs(float(tag)) if tag not in (None, "") else 0.0
    travel = np.subtract(refs[-1].position_mm, refs[0].position_mm)
    cosine = abs(float(np.dot(travel, slice_normal(plane.orientation)))) / float(np.linalg.norm(travel))
    return math.degrees(math.acos(min(1.0, cosine)))


def _single_slice_step(ref: SliceRef) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ref.header.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 1.0


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
