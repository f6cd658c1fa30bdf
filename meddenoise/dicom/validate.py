"""Check the header values that feed geometry or HU where they are read, naming tag and value.

Every check raises ``HeaderError``, whose message names the attribute, its tag and the offending
value (``RescaleSlope (0028,1053) = '0' is not a usable slope``); ``HeaderError.at(path)`` puts
the file in front. Sizes are checked against limits before anything is allocated, and decoded HU
against what a CT scanner can produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from meddenoise.dicom.problems import shown_path, shown_text
from meddenoise.errors import SeriesError

MAX_DECODED_BYTES = 2 * 1024**3
"""Most bytes of stored pixels one file may declare (Rows × Columns × samples × bytes × frames)."""

MAX_VOLUME_BYTES = 32 * 1024**3
"""Most bytes a series' HU volume (float32) and padding mask may take together."""

MAX_PLAUSIBLE_HU = 32767.0
"""No CT scanner reports more (extended scales stop near 30,000 HU); more means misread pixels."""

MAX_ABS_POSITION_MM = 1e6
"""Coordinates further than a kilometre from the origin are corrupt, not anatomy."""

MAX_PIXEL_SPACING_MM = 1e3
_BITS_ALLOCATED = frozenset({8, 16, 32})


class HeaderError(SeriesError, ValueError):
    """A header value that feeds geometry or HU is missing, malformed or impossible.

    It is also a ValueError, so callers that caught plane_of's ValueError keep working.
    """

    def at(self, path: str | Path) -> HeaderError:
        """The same error with the file named in front: ``<file>: <message>``."""
        return type(self)(f"{shown_path(path)}: {self}")


class TooLargeError(HeaderError):
    """A file declares more pixels, or a series more voxels, than the limit allows."""


def tag_label(keyword: str) -> str:
    """``"RescaleSlope (0028,1053)"``: an attribute's keyword and tag, as messages name it."""
    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def shown_value(value: Any) -> str:
    """A header value as messages show it: the DICOM text form, quoted, escaped and shortened."""
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    text = shown_text(str(value))
    return "'" + (text if len(text) <= 60 else text[:57] + "...") + "'"


def bad_value(keyword: str, value: Any, what: str) -> HeaderError:
    """``HeaderError("<keyword> (<tag>) = '<value>' is not <what>")``."""
    return HeaderError(f"{tag_label(keyword)} = {shown_value(value)} is not {what}")


def numbers(value: Any, keyword: str, *, count: int, what: str) -> tuple[float, ...]:
    """``count`` finite numbers from a DS/FD/IS value, or HeaderError naming the keyword and value.

    A missing value raises ``HeaderError("no valid <keyword>")``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise HeaderError(f"no valid {keyword}")
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if len(items) != count:
        raise bad_value(keyword, value, what)
    try:
        parsed = tuple(float(v) for v in items)
    except (TypeError, ValueError, OverflowError) as err:
        raise bad_value(keyword, value, what) from err
    if not all(math.isfinite(v) for v in parsed):
        raise bad_value(keyword, value, what)
    return parsed


def positive_int(header: Dataset, keyword: str, *, what: str, limit: int = 0xFFFF) -> int:
    """A required positive integer attribute (Rows, Columns, BitsAllocated, ...), at most ``limit``."""
    value = header.get(keyword)
    if value is None or value == "":
        raise HeaderError(f"{tag_label(keyword)} is missing")
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise bad_value(keyword, value, what) from err
    if not 0 < number <= limit:
        raise bad_value(keyword, value, what)
    return number


def position_mm(value: Any) -> tuple[float, float, float]:
    """ImagePositionPatient as three finite coordinates within MAX_ABS_POSITION_MM."""
    x, y, z = numbers(value, "ImagePositionPatient", count=3, what="a usable position")
    if max(abs(x), abs(y), abs(z)) > MAX_ABS_POSITION_MM:
        raise bad_value("ImagePositionPatient", value, "a usable position")
    return x, y, z


def orientation_of(value: Any) -> tuple[float, float, float, float, float, float]:
    """ImageOrientationPatient as two orthogonal unit vectors (row, then column direction cosines)."""
    cosines = numbers(value, "ImageOrientationPatient", count=6, what="a usable orientation")
    row, col = np.asarray(cosines[:3]), np.asarray(cosines[3:])
    unit = math.isclose(float(np.linalg.norm(row)), 1.0, abs_tol=1e-2) and math.isclose(
        float(np.linalg.norm(col)), 1.0, abs_tol=1e-2
    )
    if not unit or abs(float(np.dot(row, col))) > 1e-2:
        raise bad_value("ImageOrientationPatient", value, "two orthogonal unit vectors")
    return cosines  # type: ignore[return-value]


def pixel_spacing_mm(value: Any) -> tuple[float, float]:
    """PixelSpacing as two positive, finite spacings of at most MAX_PIXEL_SPACING_MM."""
    row, col = numbers(value, "PixelSpacing", count=2, what="a usable pixel spacing")
    if not (0 < row <= MAX_PIXEL_SPACING_MM and 0 < col <= MAX_PIXEL_SPACING_MM):
        raise bad_value("PixelSpacing", value, "a usable pixel spacing")
    return row, col


def rescale_pair(slope: Any, intercept: Any) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (1 and 0 when absent): finite, and the slope not zero."""
    slope_value = _optional_number(slope, "RescaleSlope", default=1.0, what="a usable slope")
    if slope_value == 0:
        raise bad_value("RescaleSlope", slope, "a usable slope")
    return slope_value, _optional_number(
        intercept, "RescaleIntercept", default=0.0, what="a usable intercept"
    )


def _optional_number(value: Any, keyword: str, *, default: float, what: str) -> float:
    return default if value is None or value == "" else numbers(value, keyword, count=1, what=what)[0]


def check_pixel_module(header: Dataset) -> None:
    """BitsAllocated, BitsStored and PixelRepresentation describe pixels a CT reader can decode.

    BitsAllocated is 8, 16 or 32; BitsStored lies in 1..BitsAllocated; PixelRepresentation is 0
    (unsigned) or 1 (signed).
    """
    allocated = positive_int(header, "BitsAllocated", what="8, 16 or 32")
    if allocated not in _BITS_ALLOCATED:
        raise bad_value("BitsAllocated", header.BitsAllocated, "8, 16 or 32")
    stored = positive_int(header, "BitsStored", what="a usable bit depth")
    if stored > allocated:
        raise HeaderError(
            f"{tag_label('BitsStored')} = {shown_value(header.BitsStored)} is more than "
            f"{tag_label('BitsAllocated')} = {shown_value(header.BitsAllocated)}"
        )
    representation = header.get("PixelRepresentation")
    if representation not in (0, 1):
        raise bad_value("PixelRepresentation", representation, "0 (unsigned) or 1 (signed)")


def frame_count(header: Dataset) -> int:
    """NumberOfFrames (1 when absent): a positive integer."""
    value = header.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    return positive_int(header, "NumberOfFrames", what="a usable frame count", limit=2**31 - 1)


def declared_bytes(header: Dataset) -> int:
    """Bytes of stored pixels the header declares: Rows × Columns × samples × bytes × frames."""
    samples = int(header.get("SamplesPerPixel") or 1)
    bits = int(header.get("BitsAllocated") or 16)
    rows = positive_int(header, "Rows", what="a usable image size")
    columns = positive_int(header, "Columns", what="a usable image size")
    return rows * columns * samples * ((bits + 7) // 8) * frame_count(header)


def check_declared_size(header: Dataset, *, limit: int) -> None:
    """Refuse a file that declares more than ``limit`` bytes of pixels, before decoding it."""
    size = declared_bytes(header)
    if size > limit:
        raise TooLargeError(
            f"{tag_label('Rows')} × {tag_label('Columns')} × frames = {int(header.Rows)} × "
            f"{int(header.Columns)} × {frame_count(header)} declares {_size(size)} of pixels, more "
            f"than the limit of {_size(limit)}"
        )


def check_volume_size(shape: Sequence[int], *, limit: int) -> None:
    """Refuse a series whose float32 HU volume and mask would take more than ``limit`` bytes."""
    size = math.prod(shape) * 5
    if size > limit:
        raise TooLargeError(
            f"a volume of {' × '.join(map(str, shape))} voxels needs {_size(size)}, more than the "
            f"limit of {_size(limit)}"
        )


def check_hu_range(
    hu: npt.NDArray[np.float32],
    padding: npt.NDArray[np.bool_],
    *,
    header: Dataset,
    rescale: tuple[float, float],
) -> None:
    """Refuse HU above MAX_PLAUSIBLE_HU outside padding: the stored values were misread.

    The usual cause is signed data labelled unsigned (PixelRepresentation 0), so that -2000
    reads as 63,536 and becomes 62,512 HU.
    """
    body = hu[~padding]
    if not body.size or float(body.max()) <= MAX_PLAUSIBLE_HU:
        return
    raise HeaderError(
        f"HU up to {float(body.max()):.0f} (more than {MAX_PLAUSIBLE_HU:.0f}) from "
        f"{tag_label('PixelRepresentation')} = {shown_value(header.get('PixelRepresentation'))}, "
        f"{tag_label('BitsStored')} = {shown_value(header.get('BitsStored'))}, RescaleSlope "
        f"{rescale[0]:g} and RescaleIntercept {rescale[1]:g}: the stored values are misdescribed"
    )


def _size(size: int) -> str:
    """Bytes in words: ``"8.0 GiB"``, ``"32.0 KiB"``, ``"1000 bytes"``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
