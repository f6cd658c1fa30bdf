"""A DICOM series as a volume, with the geometry SimpleITK (GDCM) computes from its files.

This backs ``--also-save nifti|mha``: the denoised HU are written on the grid that SimpleITK's
``ImageSeriesReader`` builds from the source files, in the order given (the project's order,
sorted along the slice normal). That grid is regular: origin at the first file, direction from
its ImageOrientationPatient, slice spacing = distance from the first to the last position / (n-1).
A series with gantry tilt or uneven spacing does not fit such a grid (SimpleITK would place the
slices wrongly), so it is refused rather than written misplaced.

No pydicom here: SimpleITK reads the headers it needs itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from meddenoise.errors import SeriesError
from meddenoise.tolerances import TILT_TOLERANCE_DEG
from meddenoise.volume.image import CTVolume, from_sitk
from meddenoise.volume.io import PixelType, write_volume

logger = logging.getLogger(__name__)


_IMAGE_POSITION = "0020|0032"


def dicom_series_to_sitk(files: Sequence[Path]) -> sitk.Image:
    """Read DICOM files, in the order given, with SimpleITK's ``ImageSeriesReader`` (HU values).

    Raises
    ------
    SeriesError
        When GDCM cannot read the files (the message names the first file).
    """
    image, _ = _read_series(files)
    return image


def volume_from_dicom(files: Sequence[Path]) -> CTVolume:
    """The series as a ``CTVolume`` with SimpleITK's geometry (``source`` is the first file).

    Raises
    ------
    SeriesError
        When GDCM cannot read the files, or the slices do not lie on a regular grid along the
        normal (gantry tilt, uneven spacing), where SimpleITK's geometry would misplace them.
    """
    image, positions = _read_series(files)
    volume = from_sitk(image, source=Path(files[0]))
    problem = _grid_problem(positions, volume.direction, volume.spacing_mm[0])
    if problem:
        raise SeriesError(f"series of {files[0]}: {problem}; it cannot be written as a regular volume")
    return volume


def write_series_as_volume(
    hu: npt.NDArray[np.floating],
    *,
    dicom_files_sorted: Sequence[Path],
    path: Path,
    pixel_type: PixelType = "int16",
    overwrite: bool = False,
) -> Path:
    """Write ``hu`` (shaped like the series, same slice order) as a volume on SimpleITK's grid.

    ``dicom_files_sorted`` are the source files in the order of ``hu``'s slices (one per slice).
    Raises what ``volume_from_dicom`` and ``write_volume`` raise, and ValueError when ``hu`` does
    not have the series' shape.
    """
    grid = volume_from_dicom(dicom_files_sorted)
    hu = np.asarray(hu, dtype=np.float32)
    return write_volume(hu, path, like=grid, pixel_type=pixel_type, overwrite=overwrite)


def _read_series(files: Sequence[Path]) -> tuple[sitk.Image, npt.NDArray[np.float64]]:
    if not files:
        raise ValueError("no DICOM files given")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with _quiet_itk():
            image = reader.Execute()
        positions = [
            [float(v) for v in reader.GetMetaData(i, _IMAGE_POSITION).split("\\")] for i in range(len(files))
        ]
    except (RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise SeriesError(f"{files[0]}: SimpleITK cannot read the series ({reason})") from err
    return image, np.asarray(positions, dtype=np.float64)


def _grid_problem(
    positions: npt.NDArray[np.float64], direction: tuple[float, ...], spacing_mm: float
) -> str | None:
    """Why the slice positions do not sit on origin + k × spacing × normal, or None."""
    if len(positions) < 2:
        return None
    normal = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, 2]
    travel = positions[-1] - positions[0]
    cosine = abs(float(np.dot(travel, normal))) / float(np.linalg.norm(travel))
    tilt = float(np.degrees(np.arccos(min(1.0, cosine))))
    if tilt > TILT_TOLERANCE_DEG:
        return f"gantry tilt {tilt:.1f}°"
    steps = np.diff(positions, axis=0) @ normal
    if float(np.max(np.abs(steps - spacing_mm))) > max(0.01, 0.01 * spacing_mm):
        return f"uneven slice spacing (steps from {steps.min():.2f} to {steps.max():.2f} mm)"
    return None


@contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's stderr warnings (e.g. 'Non uniform sampling') for one read; we check ourselves."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
