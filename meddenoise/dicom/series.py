"""The nouns of a CT series: what ``find_series`` discovers and what ``read_series`` loads.

A ``SeriesInfo`` is header-only (cheap: ``meddenoise info`` uses it). A ``CTSeries`` adds the HU
volume. Both keep slices sorted along the slice normal (ARCHITECTURE.md rule 1), and the per-slice
headers the writer needs to make a derived series (rule 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from meddenoise.dicom.problems import Problem, ProblemCode


@dataclass(frozen=True)
class SliceRef:
    """One source slice: where it came from and where it sits.

    ``header`` is the slice's dataset with PixelData removed; the writer copies it.
    ``frame_index`` is None for single-frame CT, or the 0-based frame of an Enhanced CT file.
    """

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    position_mm: tuple[float, float, float]
    normal_offset_mm: float
    header: Dataset
    frame_index: int | None = None


@dataclass(frozen=True)
class SeriesInfo:
    """Everything known about one series without decoding pixels.

    Arrays follow numpy order: ``shape`` is (slices, rows, columns) and
    ``spacing_mm`` is (slice step along the normal, row spacing, column spacing).
    ``problems`` and ``fatal_problems`` list what validation found, in words (gap, gantry tilt,
    ...); a series with fatal problems is still listed by ``meddenoise info`` but refused by
    ``read_series``. ``issues`` holds the same problems with their ``ProblemCode``, for code to
    test (``has_problem``) instead of matching text. ``gaps_allowed`` records that the series was
    found with ``allow_gaps=True``, so ``read_series`` may leave out a slice it cannot decode.
    """

    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    description: str
    modality: str
    kernel: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    slices: tuple[SliceRef, ...]
    tilt_deg: float = 0.0
    problems: tuple[str, ...] = ()
    fatal_problems: tuple[str, ...] = ()
    issues: tuple[Problem, ...] = ()
    gaps_allowed: bool = False

    @property
    def problem_codes(self) -> frozenset[ProblemCode]:
        """The codes of all problems, fatal or not."""
        return frozenset(p.code for p in self.issues)

    def has_problem(self, code: ProblemCode, *, fatal: bool | None = None) -> bool:
        """Whether a problem with ``code`` was found (only fatal ones, or only named ones, if asked).

        Examples
        --------
        >>> from pydicom import examples
        >>> from meddenoise.dicom import find_series
        >>> find_series(examples.get_path("ct")).series[0].has_problem(ProblemCode.TILT)
        False
        """
        return any(p.code == code and (fatal is None or p.fatal == fatal) for p in self.issues)

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """ImagePositionPatient of the first slice (after sorting)."""
        return self.slices[0].position_mm

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        """3×3 matrix whose columns are the row, column and slice-normal direction cosines."""
        row = np.asarray(self.orientation[:3], dtype=np.float64)
        col = np.asarray(self.orientation[3:], dtype=np.float64)
        return np.stack([row, col, np.cross(row, col)], axis=1)


@dataclass(frozen=True)
class CTSeries:
    """A loaded series: HU in float32 shaped (slices, rows, columns), sorted along the normal.

    ``padding_mask`` marks pixels that held PixelPaddingValue (outside the scan field); the writer
    restores them. It is None when the series declares no padding.
    """

    info: SeriesInfo
    hu: npt.NDArray[np.float32]
    padding_mask: npt.NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if self.hu.shape != self.info.shape:
            raise ValueError(f"HU volume shape {self.hu.shape} does not match the series {self.info.shape}")


@dataclass(frozen=True)
class SkippedFile:
    """A file (or folder) that discovery skipped: why, and its series when that is known."""

    path: Path
    problem: Problem
    series_uid: str = ""


@dataclass(frozen=True)
class ScanResult:
    """What a folder walk found: the CT series, and the files it skipped with the reason.

    ``skipped`` pairs each skipped path with the reason in words; ``skipped_files`` says the same
    with a ``ProblemCode`` and the series the file belonged to, when known.
    """

    series: tuple[SeriesInfo, ...]
    skipped: tuple[tuple[Path, str], ...] = field(default=())
    skipped_files: tuple[SkippedFile, ...] = field(default=())

    @property
    def lost_series(self) -> dict[str, tuple[SkippedFile, ...]]:
        """Series none of whose files could be used: their UID and every skipped file of them.

        A CT file that is skipped (truncated, unreadable, unplaceable) but whose SeriesInstanceUID
        is known makes its series incomplete; when every file of a series is skipped, no
        ``SeriesInfo`` exists for it, and this is where it is reported, so that the series is not
        lost without a word.
        """
        found = {s.series_uid for s in self.series}
        lost: dict[str, list[SkippedFile]] = {}
        for skipped in self.skipped_files:
            if skipped.series_uid and skipped.series_uid not in found:
                lost.setdefault(skipped.series_uid, []).append(skipped)
        return {uid: tuple(files) for uid, files in lost.items()}
