"""Write a derived CT series next to (never over) its source, atomically.

The folder is written under a temporary name inside ``out_dir``, every file is fsync'ed, and the
folder is renamed into place, so a reader never sees half a series (ARCHITECTURE.md rule 5). What
goes into each file is decided in ``meddenoise.dicom.derive``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset

from meddenoise.dicom.derive import (
    SMOOTHING,
    Derivation,
    DerivationCode,
    DerivedIdentity,
    derive_slice,
    derived_identity,
    hu_to_stored,
    is_valid_uid,
)
from meddenoise.dicom.series import SeriesInfo
from meddenoise.errors import OutputError, SeriesError

__all__ = [
    "SMOOTHING",
    "Derivation",
    "DerivationCode",
    "check_output_location",
    "derived_series_folder",
    "write_derived_series",
    "write_series_files",
]

logger = logging.getLogger(__name__)


def check_output_location(*, input_root: Path, out_dir: Path) -> None:
    """Refuse an output folder that is the input folder or lies anywhere inside it.

    Raises
    ------
    OutputError
        When ``out_dir`` resolves to ``input_root`` or to a folder below it.

    Examples
    --------
    >>> check_output_location(input_root=Path("/data/in"), out_dir=Path("/data/out"))
    """
    root = input_root.resolve()
    out = out_dir.resolve()
    if out == root or root in out.parents:
        raise OutputError(f"output folder {out_dir} is inside the input folder {input_root}; choose another")


def derived_series_folder(*, out_dir: Path, source: SeriesInfo, derivation: Derivation) -> Path:
    """``out_dir/<source SeriesInstanceUID>-<folder_suffix>``, never built from unchecked tag text.

    A source whose SeriesInstanceUID is not a valid UID gets ``series-<sha256 prefix>`` instead.

    Examples
    --------
    The result for a series ``1.2.3`` and a derivation with ``folder_suffix="denoised"`` is
    ``out_dir / "1.2.3-denoised"``.
    """
    uid = source.series_uid
    if is_valid_uid(uid):
        stem = uid
    else:
        stem = "series-" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:16]
        logger.warning("source SeriesInstanceUID %r is not a valid UID; naming its output %s", uid, stem)
    return out_dir / f"{stem}-{derivation.folder_suffix}"


def write_derived_series(
    *,
    source: SeriesInfo,
    hu: npt.NDArray[np.floating],
    out_dir: Path,
    derivation: Derivation,
    padding_mask: npt.NDArray[np.bool_] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    identity: DerivedIdentity | None = None,
) -> Path:
    """Write ``hu`` as a new derived series of ``source`` and return its folder.

    Parameters
    ----------
    source
        The series the volume was computed from; its slice headers are copied.
    hu
        HU volume shaped like ``source.shape``, slices in ``source.slices`` order.
    out_dir
        Parent folder; the series goes to ``derived_series_folder(...)`` inside it.
    derivation
        What the derived series is (descriptions, suffixes, SeriesNumber offset).
    padding_mask
        Pixels to restore to PixelPaddingValue (``CTSeries.padding_mask``), or None.
    overwrite
        Replace an existing series folder of the same name (atomically).
    progress
        Called with 1 after each slice is written (fits ``tqdm.update``).
    identity
        The new series' UIDs (:func:`derived_identity`), when the caller needs to know them
        without reading the files back; None makes new ones.

    Raises
    ------
    OutputError
        If the destination is unsafe, already holds a series, or cannot be written.
    SeriesError
        If the volume cannot be stored in the source's pixel format.

    Examples
    --------
    >>> folder = write_derived_series(source=series.info, hu=denoised, out_dir=Path("out"),
    ...                               derivation=Derivation(description="Denoised by ...",
    ...                               series_description_suffix="denoised",
    ...                               folder_suffix="denoised"))  # doctest: +SKIP
    """
    _check_volume(source=source, hu=hu, padding_mask=padding_mask)
    final = derived_series_folder(out_dir=out_dir, source=source, derivation=derivation)
    for parent in {ref.path.parent for ref in source.slices}:
        check_output_location(input_root=parent, out_dir=final)
    identity = identity or derived_identity(source=source, derivation=derivation)
    datasets = _derived_datasets(
        source=source, hu=hu, padding_mask=padding_mask, derivation=derivation, identity=identity
    )
    write_series_files(
        datasets=datasets, count=len(source.slices), final=final, overwrite=overwrite, progress=progress
    )
    return final


def _check_volume(
    *, source: SeriesInfo, hu: npt.NDArray[np.floating], padding_mask: npt.NDArray[np.bool_] | None
) -> None:
    if hu.shape != source.shape:
        raise ValueError(f"hu has shape {hu.shape}, but the series {source.series_uid} is {source.shape}")
    if padding_mask is not None and padding_mask.shape != source.shape:
        raise ValueError(f"padding_mask has shape {padding_mask.shape}, but the series is {source.shape}")
    bad = int(np.count_nonzero(~np.isfinite(hu)))
    if bad:
        raise SeriesError(f"series {source.series_uid}: the HU volume holds {bad} NaN or infinite values")


def _derived_datasets(
    *,
    source: SeriesInfo,
    hu: npt.NDArray[np.floating],
    padding_mask: npt.NDArray[np.bool_] | None,
    derivation: Derivation,
    identity: DerivedIdentity,
) -> Iterator[Dataset]:
    for index, ref in enumerate(source.slices):
        stored = hu_to_stored(
            hu=hu[index],
            header=ref.header,
            padding=None if padding_mask is None else padding_mask[index],
        )
        yield derive_slice(
            ref=ref, instance_number=index + 1, stored=stored, identity=identity, derivation=derivation
        )


def write_series_files(
    *,
    datasets: Iterable[Dataset],
    count: int,
    final: Path,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``datasets`` as ``0001.dcm ...`` into ``final``, atomically (temp folder, fsync, rename).

    Raises OutputError when ``final`` exists and ``overwrite`` is False, or cannot be written.
    """
    if final.exists() and not overwrite:
        raise OutputError(f"{final} already holds a series; pass --overwrite to replace it")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        temp.chmod(0o755)  # mkdtemp makes it private; the series is an ordinary folder
    except OSError as err:
        raise OutputError(f"cannot create output folder {final.parent}: {err.strerror or err}") from err
    try:
        width = max(4, len(str(count)))
        for index, ds in enumerate(datasets):
            _write_file(ds, temp / f"{index + 1:0{width}d}.dcm")
            if progress is not None:
                progress(1)
        _fsync_dir(temp)
        _move_into_place(temp=temp, final=final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    logger.info("wrote %d slices to %s", count, final)
    return final


def _write_file(ds: Dataset, path: Path) -> None:
    try:
        with path.open("wb") as handle:
            pydicom.dcmwrite(handle, ds, enforce_file_format=True)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise OutputError(f"cannot write {path}: {_os_reason(err)}") from err


def _os_reason(err: OSError) -> str:
    """The operating system's words for ``err``, even when pydicom re-raised it with a traceback inside."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return " ".join(str(err).split())[:200]


def _move_into_place(*, temp: Path, final: Path, overwrite: bool) -> None:
    """Rename ``temp`` to ``final``; with ``overwrite``, swap out an existing folder first."""
    old: Path | None = None
    try:
        if final.exists() or final.is_symlink():
            if not overwrite:
                raise OutputError(f"{final} already holds a series; pass --overwrite to replace it")
            if not final.is_dir() or final.is_symlink():
                raise OutputError(f"{final} exists and is not a series folder; remove it yourself")
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
            old.rmdir()
            final.rename(old)
        try:
            temp.rename(final)
        except OSError:
            if old is not None:
                old.rename(final)
            raise
    except OSError as err:
        raise OutputError(f"cannot move the new series into {final}: {err.strerror or err}") from err
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    """Make a folder's entries durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
