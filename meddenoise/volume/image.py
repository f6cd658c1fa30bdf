"""The volume noun: a CT volume in HU with the geometry SimpleITK gives it, and conversions.

Array order is numpy's, (slices, rows, columns) = (z, y, x); SimpleITK's spacing, origin and size
are (x, y, z). ``CTVolume`` keeps ``spacing_mm`` in numpy order, to match ``CTSeries``, and
``origin_mm`` and ``direction`` exactly as SimpleITK holds them (physical x, y, z; the direction
matrix row-major, its columns being the directions of the x, y and z index axes). ``to_sitk``
and ``from_sitk`` are the one place where the two orders meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from meddenoise.errors import SeriesError

SPACING_TOLERANCE_MM = 1e-4
"""Largest spacing difference that still counts as the same grid (pair_volumes)."""

ORIGIN_TOLERANCE_MM = 1e-3
"""Largest origin difference that still counts as the same grid (pair_volumes)."""

DIRECTION_TOLERANCE = 1e-6
"""Largest direction-cosine difference that still counts as the same grid (pair_volumes)."""


@dataclass(frozen=True, eq=False)  # eq on numpy arrays is ambiguous: compare fields yourself
class CTVolume:
    """A CT volume: HU in float32 shaped (slices, rows, columns), and its geometry.

    Attributes
    ----------
    hu
        Hounsfield units, float32, shaped (slices, rows, columns).
    spacing_mm
        Voxel spacing in numpy order (slice, row, column) = SimpleITK's spacing reversed.
    origin_mm
        Physical position of the first voxel, (x, y, z), as SimpleITK gives it.
    direction
        The 3×3 direction matrix, row-major, as SimpleITK gives it (9 numbers).
    source
        The file the volume was read from, or None.
    pixel_id
        numpy name of the pixel type it was stored with ("int16", "uint16", "float32", ...);
        ``write_volume(pixel_type="keep")`` writes integer HU when this is an integer type.
    """

    hu: npt.NDArray[np.float32]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, float, float, float, float, float, float, float, float]
    source: Path | None = None
    pixel_id: str = "float32"

    def __post_init__(self) -> None:
        if self.hu.dtype != np.float32 or self.hu.ndim != 3:
            raise ValueError(f"hu must be a 3D float32 array, not {self.hu.ndim}D {self.hu.dtype}")
        if len(self.spacing_mm) != 3 or len(self.origin_mm) != 3 or len(self.direction) != 9:
            raise ValueError("spacing_mm and origin_mm need 3 numbers and direction 9")
        if not all(s > 0 for s in self.spacing_mm):
            raise ValueError(f"spacing must be positive, not {self.spacing_mm}")

    @property
    def name(self) -> str:
        """How messages name this volume: its file, or 'volume'."""
        return str(self.source) if self.source is not None else "volume"


@dataclass(frozen=True, eq=False)
class VolumePair:
    """A denoised volume and its reference, checked to share one grid (see ``pair_volumes``)."""

    denoised: CTVolume
    reference: CTVolume

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """The shared spacing, numpy order."""
        return self.reference.spacing_mm


def to_sitk(volume: CTVolume) -> sitk.Image:
    """A float32 ``SimpleITK.Image`` of ``volume.hu`` with its spacing, origin and direction.

    Examples
    --------
    >>> import numpy as np
    >>> identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    >>> vol = CTVolume(np.zeros((2, 3, 4), np.float32), (2.5, 0.7, 0.7), (1.0, 2.0, 3.0), identity)
    >>> image = to_sitk(vol)
    >>> image.GetSize(), image.GetSpacing()
    ((4, 3, 2), (0.7, 0.7, 2.5))
    """
    return image_on_grid(volume.hu, like=volume)


def image_on_grid(pixels: npt.NDArray[np.generic], *, like: CTVolume) -> sitk.Image:
    """A ``SimpleITK.Image`` of ``pixels`` (numpy order, any scalar dtype) on ``like``'s grid."""
    if pixels.shape != like.hu.shape:
        raise ValueError(f"pixels shaped {pixels.shape} do not fit a grid of {like.hu.shape}")
    image = sitk.GetImageFromArray(pixels)
    image.SetSpacing(tuple(reversed(like.spacing_mm)))
    image.SetOrigin(like.origin_mm)
    image.SetDirection(like.direction)
    return image


def from_sitk(image: sitk.Image, *, source: Path | None = None) -> CTVolume:
    """A ``CTVolume`` from a scalar 3D (or 2D: one slice) ``SimpleITK.Image``, geometry kept exactly.

    The values are taken as they are (HU); ``read_volume`` applies a declared offset and scale.
    A 2D image becomes a volume of one slice, with a slice spacing of 1 mm (a single slice has no
    slice step). Trailing dimensions of size 1 (a 4D file with one time point) are dropped.

    Raises
    ------
    SeriesError
        For a multi-component (RGB, vector) image, or one with more than 3 dimensions of size > 1.
    """
    name = str(source) if source is not None else "image"
    check_dimensions(image.GetSize(), image.GetNumberOfComponentsPerPixel(), name=name)
    image = _squeeze(image)
    if image.GetDimension() == 2:
        image = sitk.JoinSeries([image])
    pixel_id = sitk.GetArrayViewFromImage(image).dtype.name
    spacing = image.GetSpacing()
    return CTVolume(
        hu=sitk.GetArrayFromImage(image).astype(np.float32, copy=False),
        spacing_mm=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_mm=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in image.GetDirection()),  # type: ignore[arg-type]
        source=source,
        pixel_id=pixel_id,
    )


def check_dimensions(size: tuple[int, ...], components: int, *, name: str) -> None:
    """Refuse (SeriesError) a volume that is not scalar 2D/3D, from its size and components alone."""
    if components != 1:
        raise SeriesError(f"{name}: {components} components per pixel (RGB or vector); a CT volume has one")
    extra = [n for n in size[3:] if n != 1]
    if extra or len(size) < 2:
        shape = "×".join(str(n) for n in size)
        raise SeriesError(f"{name}: a {len(size)}D image ({shape}); a CT volume is 3D (or a 2D slice)")


def _squeeze(image: sitk.Image) -> sitk.Image:
    """Drop trailing dimensions of size 1 (checked by ``check_dimensions``)."""
    size = image.GetSize()
    if len(size) <= 3:
        return image
    return sitk.Extract(image, [*size[:3], *([0] * (len(size) - 3))], [0] * len(size))


def pair_volumes(*, denoised: CTVolume, reference: CTVolume) -> VolumePair:
    """Pair two volumes for evaluation, refusing when they are not on one grid.

    Raises
    ------
    SeriesError
        One line naming both volumes and every difference: shape, spacing (beyond
        SPACING_TOLERANCE_MM), origin (beyond ORIGIN_TOLERANCE_MM) or direction (beyond
        DIRECTION_TOLERANCE).

    Examples
    --------
    >>> import numpy as np
    >>> identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    >>> vol = CTVolume(np.zeros((2, 3, 4), np.float32), (2.5, 0.7, 0.7), (0.0, 0.0, 0.0), identity)
    >>> pair_volumes(denoised=vol, reference=vol).spacing_mm
    (2.5, 0.7, 0.7)
    """
    differences = []
    if denoised.hu.shape != reference.hu.shape:
        differences.append(f"shape {denoised.hu.shape} vs {reference.hu.shape}")
    for what, a, b, tolerance, unit in (
        ("spacing", denoised.spacing_mm, reference.spacing_mm, SPACING_TOLERANCE_MM, " mm"),
        ("origin", denoised.origin_mm, reference.origin_mm, ORIGIN_TOLERANCE_MM, " mm"),
        ("direction", denoised.direction, reference.direction, DIRECTION_TOLERANCE, ""),
    ):
        if float(np.max(np.abs(np.subtract(a, b)))) > tolerance:
            differences.append(f"{what} {_fmt(a)} vs {_fmt(b)}{unit}")
    if differences:
        raise SeriesError(
            f"{denoised.name} and {reference.name} are not on the same grid: {'; '.join(differences)}"
        )
    return VolumePair(denoised=denoised, reference=reference)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
