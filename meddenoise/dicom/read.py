"""Decode a validated series into a float32 HU volume, with its padding mask.

HU are computed per slice, ``hu = stored * RescaleSlope + RescaleIntercept`` (ARCHITECTURE.md
rule 2). Pixel decoding is pydicom's, with pylibjpeg for JPEG 2000, JPEG lossless and JPEG-LS,
and pydicom's own RLE decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from meddenoise.dicom import validate
from meddenoise.dicom.discover import rescale_values, series_info_from
from meddenoise.dicom.geometry import describe
from meddenoise.dicom.header import warnings_logged
from meddenoise.dicom.problems import ProblemCode, shown_path, shown_text
from meddenoise.dicom.series import CTSeries, SeriesInfo, SliceRef
from meddenoise.dicom.validate import MAX_DECODED_BYTES, MAX_VOLUME_BYTES, HeaderError, TooLargeError
from meddenoise.dicom.walk import open_regular
from meddenoise.errors import SeriesError

logger = logging.getLogger(__name__)

StoredArray = npt.NDArray[np.integer]


def read_series(
    info: SeriesInfo,
    *,
    progress: Callable[[int], None] | None = None,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    max_volume_bytes: int = MAX_VOLUME_BYTES,
) -> CTSeries:
    """Decode the slices of ``info`` into HU (float32, shaped (slices, rows, columns)).

    ``progress`` is called with 1 after each slice is decoded (so ``tqdm.update`` fits). A file
    whose pixels cannot be decoded makes the series incomplete, which is an error unless the
    series was found with ``allow_gaps=True``: the file is then left out when no gap results, and
    named in ``CTSeries.info.problems``. Before anything is decoded or allocated, each file's
    declared pixel size is checked against ``max_decoded_bytes`` and the volume against
    ``max_volume_bytes``; each slice's rescale is validated, and HU that no CT can hold are refused.

    Raises
    ------
    SeriesError
        When ``info`` has fatal problems, a transfer syntax has no decoder here, a file is too
        large, a rescale value or the decoded HU are impossible, or an undecodable file leaves the
        series incomplete. The message is one line naming the series or file.

    Examples
    --------
    >>> from pydicom import examples
    >>> from meddenoise.dicom.discover import find_series
    >>> series = read_series(find_series(examples.get_path("ct")).series[0])
    >>> series.hu.dtype, series.hu.shape
    (dtype('float32'), (1, 128, 128))
    """
    if info.fatal_problems:
        raise SeriesError(f"series {shown_text(info.series_uid)}: {'; '.join(info.fatal_problems)}")
    _check_decoders(info.slices)
    _check_sizes(info, max_decoded_bytes=max_decoded_bytes, max_volume_bytes=max_volume_bytes)
    hu = np.empty(info.shape, dtype=np.float32)
    mask = np.zeros(info.shape, dtype=np.bool_)
    cache: dict[Path, StoredArray] = {}
    failed: dict[Path, str] = {}
    for index, ref in enumerate(info.slices):
        try:
            stored = _stored_frame(ref, info.shape[1:], cache, limit=max_decoded_bytes)
        except _DecodeError as err:
            failed[ref.path] = str(err)
            continue
        hu[index], mask[index] = _hu_of(ref, stored)
        if progress is not None:
            progress(1)
    has_padding = any("PixelPaddingValue" in r.header for r in info.slices)
    if not failed:
        return CTSeries(info=info, hu=hu, padding_mask=mask if has_padding else None)
    keep = [i for i, r in enumerate(info.slices) if r.path not in failed]
    reduced = _without(info, failed)
    return CTSeries(info=reduced, hu=hu[keep], padding_mask=mask[keep] if has_padding else None)


class _DecodeError(Exception):
    """One file's pixels could not be decoded (the message says why)."""


def _check_decoders(refs: Sequence[SliceRef]) -> None:
    """Refuse, naming a file, a transfer syntax that no installed decoder can read."""
    seen: set[str] = set()
    for ref in refs:
        with warnings_logged(ref.path):  # a malformed UID warns when it is first converted
            syntax = _transfer_syntax(ref.header)
            if syntax in seen:
                continue
            seen.add(syntax)
            _check_decoder(ref, syntax)


def _check_decoder(ref: SliceRef, syntax: UID) -> None:
    label = shown_text(f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax))
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise SeriesError(
            f"{shown_path(ref.path)}: cannot decode transfer syntax {label}: no decoder exists"
        ) from err
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise SeriesError(f"{shown_path(ref.path)}: cannot decode transfer syntax {label}: needs {needs}")


def _transfer_syntax(header: Dataset) -> UID:
    meta = getattr(header, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(syntax) if syntax else ImplicitVRLittleEndian


def _check_sizes(info: SeriesInfo, *, max_decoded_bytes: int, max_volume_bytes: int) -> None:
    """Refuse, before allocating anything, a file that declares too many pixels, or the volume."""
    checked: set[Path] = set()
    for ref in info.slices:
        if ref.path not in checked:
            checked.add(ref.path)
            try:
                with warnings_logged(ref.path):
                    validate.check_declared_size(ref.header, limit=max_decoded_bytes)
            except HeaderError as err:
                raise err.at(ref.path) from err
    try:
        validate.check_volume_size(info.shape, limit=max_volume_bytes)
    except TooLargeError as err:
        raise TooLargeError(f"series {shown_text(info.series_uid)}: {err}") from err


def _stored_frame(
    ref: SliceRef, shape: tuple[int, int], cache: dict[Path, StoredArray], *, limit: int
) -> StoredArray:
    """The stored values of one slice (decoding a multi-frame file once)."""
    if ref.path not in cache:
        with warnings_logged(ref.path):
            pixels, frames = _decode(ref, limit=limit)
        pixels = pixels.reshape(frames, *pixels.shape[-2:]) if pixels.ndim == len(shape) else pixels
        if pixels.shape[1:] != shape:
            raise _DecodeError(f"decoded shape {pixels.shape[1:]} is not {shape}")
        cache.clear()
        cache[ref.path] = pixels
    return cache[ref.path][ref.frame_index or 0]


def _decode(ref: SliceRef, *, limit: int) -> tuple[StoredArray, int]:
    """Read a whole file and decode its pixels, re-checking its declared size (it may have changed)."""
    try:
        with open_regular(ref.path) as fp:
            try:
                ds: Dataset = dcmread(fp)
            except InvalidDicomError:  # a bare dataset without preamble, as discovery accepted it
                fp.seek(0)
                ds = _with_syntax(dcmread(fp, force=True))
    except Exception as err:  # a file replaced or damaged since discovery: it cannot be decoded
        raise _DecodeError(_why("cannot read", err)) from err
    try:
        validate.check_declared_size(ds, limit=limit)
        return ds.pixel_array, validate.frame_count(ds)
    except TooLargeError as err:
        raise err.at(ref.path) from err
    except Exception as err:  # decoders raise assorted types for corrupt data; name the file
        raise _DecodeError(_why("cannot decode pixel data", err)) from err


def _with_syntax(ds: Dataset) -> Dataset:
    """A bare dataset (no file meta) with the TransferSyntaxUID its encoding implies, for decoding."""
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little in (True, None)
            else ExplicitVRBigEndian
        )
    return ds


def _why(what: str, err: BaseException) -> str:
    return shown_text(f"{what} ({type(err).__name__}: {err})".splitlines()[0])


def _hu_of(ref: SliceRef, stored: StoredArray) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """HU of one slice (its own validated rescale, in float32) and its padding mask."""
    try:
        with warnings_logged(ref.path):  # header values are converted (and may warn) on first access
            return _checked_hu(ref, stored)
    except HeaderError as err:
        raise err.at(describe(ref)) from err


def _checked_hu(ref: SliceRef, stored: StoredArray) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    rescale = validate.rescale_pair(*rescale_values(ref.header, ref.frame_index))
    hu = (stored.astype(np.float64) * rescale[0] + rescale[1]).astype(np.float32)
    mask = _padding_mask(stored, ref.header)
    validate.check_hu_range(hu, mask, header=ref.header, rescale=rescale)
    return hu, mask


def _padding_mask(stored: StoredArray, header: Dataset) -> npt.NDArray[np.bool_]:
    """Pixels equal to PixelPaddingValue (or within PixelPaddingRangeLimit), in stored space."""
    value = _padding_number(header, "PixelPaddingValue")
    if value is None:
        return np.zeros(stored.shape, dtype=np.bool_)
    bits = int(header.get("BitsAllocated") or 16)
    signed = int(header.get("PixelRepresentation") or 0) == 1
    low = high = _as_stored(value, bits=bits, signed=signed)
    limit = _padding_number(header, "PixelPaddingRangeLimit")
    if limit is not None:
        other = _as_stored(limit, bits=bits, signed=signed)
        low, high = min(low, other), max(low, other)
    return (stored >= low) & (stored <= high)


def _padding_number(header: Dataset, keyword: str) -> int | None:
    """PixelPaddingValue or PixelPaddingRangeLimit as one integer (None when absent)."""
    value = header.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise validate.bad_value(keyword, value, "a usable padding value") from err


def _as_stored(value: int, *, bits: int, signed: bool) -> int:
    """Reinterpret a padding value in the pixel's own signedness (US/SS tags are often mixed up)."""
    pattern = value & ((1 << bits) - 1)
    if signed and pattern >= 1 << (bits - 1):
        pattern -= 1 << bits
    return pattern


def _without(info: SeriesInfo, failed: dict[Path, str]) -> SeriesInfo:
    """Re-validate the series without the files that failed to decode; raise if now unusable.

    Unless the series was found with ``allow_gaps``, a file left out makes it incomplete (fatal).
    """
    names = ", ".join(f"{describe(r)}" for r in info.slices if r.path in failed)
    remaining = [r for r in info.slices if r.path not in failed]
    if not remaining:
        path, reason = next(iter(failed.items()))
        raise SeriesError(
            f"series {shown_text(info.series_uid)}: no slice could be decoded ({shown_path(path)}: {reason})"
        )
    reduced = series_info_from(
        remaining,
        dropped=list(failed.items()),
        carried=[p for p in info.issues if p.code == ProblemCode.INCOMPLETE],
        allow_gaps=info.gaps_allowed,
    )
    if reduced.fatal_problems:
        raise SeriesError(f"series {shown_text(info.series_uid)}: {'; '.join(reduced.fatal_problems)}")
    logger.warning(
        "series %s: left out %s (%s)", shown_text(info.series_uid), names, "; ".join(failed.values())
    )
    return reduced
