"""Read and write CT volumes (NIfTI, MetaImage, NRRD) through SimpleITK.

``read_volume`` refuses what is not a scalar 3D CT volume in HU with a one-line SeriesError;
``write_volume`` writes atomically (a temporary folder beside the target, then ``os.replace``),
never overwrites unless asked, and keeps spacing, origin and direction as exactly as the format
stores them: MetaImage bit-exactly (17 digits); NRRD to an ulp of a double (it stores spacing ×
direction vectors); NIfTI to float32 (its header's type), so a NIfTI re-written after reading may
move by ~1e-8 in its direction cosines.

A 2D image is read as a volume of one slice (ARCHITECTURE.md rule 7: one slice is a valid input);
it is written back as a 3D volume of one slice.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from meddenoise.errors import OutputError, SeriesError
from meddenoise.volume.convention import NON_FINITE_PROBLEM, check_hu_convention, stored_to_hu
from meddenoise.volume.formats import (
    SUPPORTED_EXTENSIONS,
    VolumeFormat,
    declares_spacing,
    extension_of,
    nifti_holds_non_finite,
    volume_format_of,
)
from meddenoise.volume.image import CTVolume, check_dimensions, from_sitk, image_on_grid, to_sitk

logger = logging.getLogger(__name__)

PixelType = Literal["keep", "int16", "float32"]
"""Pixel type of a written volume: "keep" is int16 HU when the source was integer, else float32."""

_INT16 = np.iinfo(np.int16)


def read_volume(
    path: Path, *, hu_offset: float = 0.0, hu_scale: float = 1.0, check_hu: bool = True
) -> CTVolume:
    """Read a CT volume file into HU, ``hu = stored × hu_scale + hu_offset``.

    Parameters
    ----------
    path
        A ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or ``.nrrd`` file.
    hu_offset, hu_scale
        The file's intensity convention; the defaults mean the file holds HU.
    check_hu
        Refuse values that do not look like HU (see ``meddenoise.volume.convention``).

    Raises
    ------
    SeriesError
        One line naming the file: unsupported extension, unreadable or corrupt, 4D or
        multi-component, no spacing stored, or values that do not look like HU.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> from meddenoise.volume.image import CTVolume
    >>> folder = Path(tempfile.mkdtemp())
    >>> hu = np.full((2, 4, 4), -1000.0, np.float32); hu[:, 1:3, 1:3] = 40.0
    >>> identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    >>> vol = CTVolume(hu, (2.5, 0.7, 0.7), (0.0, 0.0, 0.0), identity, pixel_id="int16")
    >>> read_volume(write_volume(vol, folder / "ct.nii.gz")).spacing_mm
    (2.5, 0.699999988079071, 0.699999988079071)
    """
    path = Path(path)
    fmt = volume_format_of(path)
    if fmt is None:
        raise SeriesError(
            f"{path}: unsupported volume extension '{extension_of(path)}'; supported: {SUPPORTED_EXTENSIONS}"
        )
    if not path.is_file():
        raise SeriesError(f"{path}: no such file")
    reader = sitk.ImageFileReader()
    reader.SetImageIO(fmt.image_io)
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise SeriesError(f"{path}: cannot read as {fmt.extension} ({_sitk_reason(err)})") from err
    check_dimensions(reader.GetSize(), reader.GetNumberOfComponents(), name=str(path))
    if not declares_spacing(path, fmt, reader):
        raise SeriesError(f"{path}: the file stores no voxel spacing; a CT volume needs it (in mm)")
    if nifti_holds_non_finite(path, fmt, reader):
        raise SeriesError(f"{path}: {NON_FINITE_PROBLEM}")
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise SeriesError(f"{path}: cannot read as {fmt.extension} ({_sitk_reason(err)})") from err
    volume = from_sitk(image, source=path)
    hu = stored_to_hu(volume.hu, hu_offset=hu_offset, hu_scale=hu_scale)
    if check_hu:
        check_hu_convention(hu, name=str(path))
    logger.info("read %s: %s voxels of %s mm (%s)", path, volume.hu.shape, volume.spacing_mm, volume.pixel_id)
    return replace(volume, hu=hu)


def write_volume(
    volume_or_hu: CTVolume | npt.NDArray[np.floating],
    path: Path,
    *,
    like: CTVolume | None = None,
    pixel_type: PixelType = "keep",
    overwrite: bool = False,
) -> Path:
    """Write a volume (or an HU array on the grid of ``like``) as the file ``path``'s extension names.

    Integer HU (int16, rounded and clipped) is written unless float32 is asked for, or
    ``pixel_type="keep"`` and the source was stored as floats. The write is atomic.

    Raises
    ------
    OutputError
        When the extension names no volume format, ``path`` is the volume's own source, a file
        exists there and ``overwrite`` is False, or the file cannot be written.
    ValueError
        For an array without ``like``, a shape unlike ``like``'s, or an unknown ``pixel_type``.
    """
    path = Path(path)
    if pixel_type not in get_args(PixelType):
        raise ValueError(f"unknown pixel_type {pixel_type!r}; valid: {', '.join(get_args(PixelType))}")
    volume = _as_volume(volume_or_hu, like)
    fmt = check_output_path(path, sources=[volume.source, like.source if like else None], overwrite=overwrite)
    image = _typed_image(volume, pixel_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".meddenoise-", dir=path.parent))
    try:
        writer = sitk.ImageFileWriter()
        writer.SetImageIO(fmt.image_io)
        writer.SetFileName(str(staging / path.name))
        writer.Execute(image)
        data_files = sorted(p for p in staging.iterdir() if p.name != path.name)
        for written in [*data_files, staging / path.name]:  # data first, header last
            os.replace(written, path.parent / written.name)
    except (RuntimeError, OSError) as err:
        raise OutputError(f"{path}: cannot write ({_sitk_reason(err)})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %s (%s, %s)", path, image.GetPixelIDTypeAsString(), volume.hu.shape)
    return path


def check_output_path(
    path: Path, *, sources: Sequence[Path | None] = (), overwrite: bool = False
) -> VolumeFormat:
    """The format ``path`` names, after refusing an unsafe output (call it before long work).

    Raises
    ------
    OutputError
        When the extension names no volume format, ``path`` is one of ``sources`` (the input), or
        the file (or a ``.mhd``'s data file) exists and ``overwrite`` is False.
    """
    path = Path(path)
    fmt = volume_format_of(path)
    if fmt is None:
        raise OutputError(
            f"{path}: the extension '{extension_of(path)}' names no volume format; use {SUPPORTED_EXTENSIONS}"
        )
    target = path.resolve()
    for source in sources:
        if source is not None and Path(source).resolve() == target:
            raise OutputError(f"{path}: is the input volume; write the output elsewhere")
    data_file = data_file_of(path)
    for existing in [p for p in (path, data_file) if p is not None and p.exists()]:
        if not overwrite:
            raise OutputError(f"{existing}: exists; refusing to overwrite it (ask for overwrite)")
        if existing.is_dir():
            raise OutputError(f"{existing}: is a folder, not a {fmt.extension} file")
    return fmt


def data_file_of(path: Path) -> Path | None:
    """The separate data file a ``.mhd`` header written here points at (None for other formats)."""
    if volume_format_of(path) is not VolumeFormat.MHD:
        return None
    return path.with_name(path.name[: -len(".mhd")] + ".raw")


def _as_volume(volume_or_hu: CTVolume | npt.NDArray[np.floating], like: CTVolume | None) -> CTVolume:
    if isinstance(volume_or_hu, CTVolume):
        if like is not None and like.hu.shape != volume_or_hu.hu.shape:
            raise ValueError(f"volume shape {volume_or_hu.hu.shape} differs from like's {like.hu.shape}")
        return volume_or_hu
    if like is None:
        raise ValueError("writing an HU array needs like=<a CTVolume> for its geometry")
    hu = np.asarray(volume_or_hu, dtype=np.float32)
    if hu.shape != like.hu.shape:
        raise ValueError(f"HU array shape {hu.shape} differs from like's {like.hu.shape}")
    return replace(like, hu=hu, source=None)


def _typed_image(volume: CTVolume, pixel_type: PixelType) -> sitk.Image:
    """``volume`` as a SimpleITK image of the pixel type asked for (int16 HU rounded and clipped)."""
    integer = pixel_type == "int16" or (pixel_type == "keep" and np.dtype(volume.pixel_id).kind in "iub")
    if not integer:
        return to_sitk(volume)
    rounded = np.rint(volume.hu)
    clipped = int(np.count_nonzero((rounded < _INT16.min) | (rounded > _INT16.max)))
    if clipped:
        logger.warning("%s: %d voxels beyond the int16 range were clipped", volume.name, clipped)
    stored = np.clip(rounded, _INT16.min, _INT16.max).astype(np.int16)
    return image_on_grid(stored, like=volume)


def _sitk_reason(err: BaseException) -> str:
    """The informative line of a SimpleITK/ITK exception message (they span several lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in reversed(lines):
        if "ERROR:" in line or "Description:" in line:
            return line.split("ERROR:", 1)[-1].split("Description:", 1)[-1].strip()
    return lines[-1] if lines else type(err).__name__
