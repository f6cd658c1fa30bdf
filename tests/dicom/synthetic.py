"""Build synthetic CT series on disk from pydicom's real CT slice (``pydicom.examples.ct``).

Files get random names (no extension), nested folders and shuffled InstanceNumbers, so a reader
that sorts by anything but the slice normal gets them wrong. ``make_series`` returns what was
written in true spatial order, with the stored values and the HU a reader must produce.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import examples
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ENHANCED_CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")


@dataclass(frozen=True)
class SyntheticSeries:
    """What ``make_series`` wrote, in order along the slice normal."""

    folder: Path
    series_uid: str
    paths: tuple[Path, ...]
    positions_mm: tuple[tuple[float, float, float], ...]
    stored: npt.NDArray[np.int16]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]

    @property
    def hu(self) -> npt.NDArray[np.float32]:
        """The HU a reader must produce: stored × slope + intercept, per slice, float32."""
        slope = np.asarray(self.slopes, dtype=np.float64)[:, None, None]
        intercept = np.asarray(self.intercepts, dtype=np.float64)[:, None, None]
        return (self.stored * slope + intercept).astype(np.float32)


def normal_of(orientation: Sequence[float]) -> npt.NDArray[np.float64]:
    """Unit slice normal of an ImageOrientationPatient."""
    normal = np.cross(np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:], dtype=float))
    return normal / np.linalg.norm(normal)


def oblique(angle_deg: float) -> tuple[float, float, float, float, float, float]:
    """An orientation rotated by ``angle_deg`` about the x axis (rows stay along x)."""
    a = np.radians(angle_deg)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(a)), float(np.sin(a)))


def slice_positions(
    *,
    n_slices: int,
    spacing_mm: float,
    orientation: Sequence[float],
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    tilt_deg: float = 0.0,
) -> list[tuple[float, float, float]]:
    """Positions along the normal; with ``tilt_deg`` the travel leans towards the column direction."""
    normal = normal_of(orientation)
    column = np.asarray(orientation[3:], dtype=float)
    t = np.radians(tilt_deg)
    travel = np.cos(t) * normal + np.sin(t) * column
    return [tuple(float(v) for v in np.asarray(origin_mm) + k * spacing_mm * travel) for k in range(n_slices)]  # type: ignore[misc]


def make_series(
    folder: Path,
    *,
    n_slices: int = 5,
    shuffle: bool = True,
    spacing_mm: float = 2.5,
    orientation: Sequence[float] = AXIAL,
    positions_mm: Sequence[Sequence[float]] | None = None,
    tilt_deg: float = 0.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    padding_value: int | None = None,
    modality: str = "CT",
    nested: bool = True,
    seed: int = 0,
) -> SyntheticSeries:
    """Write a CT series of ``n_slices`` slices of ``examples.ct`` (128×128, int16) into ``folder``.

    Slice ``k`` holds ``examples.ct`` pixels plus ``10 * k`` (so slices differ); with
    ``padding_value`` its top-left 4×4 pixels hold that value and the tag is set (else removed).
    ``modality="MR"`` writes MR Image Storage instead. Files get random names, are spread over
    nested folders when ``nested``, and InstanceNumbers are shuffled when ``shuffle``.
    """
    rng = random.Random(seed)
    positions: list[tuple[float, ...]] = (
        [tuple(map(float, p)) for p in positions_mm]
        if positions_mm is not None
        else list(
            slice_positions(
                n_slices=n_slices, spacing_mm=spacing_mm, orientation=orientation, tilt_deg=tilt_deg
            )
        )
    )
    n = len(positions)
    slopes = tuple(slopes) if slopes is not None else (1.0,) * n
    intercepts = tuple(intercepts) if intercepts is not None else (-1024.0,) * n
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    numbers = list(range(1, n + 1))
    if shuffle:
        rng.shuffle(numbers)
    base = examples.ct.pixel_array.astype(np.int16)
    stored = np.stack([base + 10 * k for k in range(n)]).astype(np.int16)
    if padding_value is not None:
        stored[:, :4, :4] = padding_value
    paths = []
    for k in range(n):
        ds = _slice_dataset(
            modality=modality, study_uid=study_uid, series_uid=series_uid, frame_uid=frame_uid
        )
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.SliceLocation = f"{positions[k][2]:.6f}"
        ds.InstanceNumber = numbers[k]
        ds.RescaleSlope = f"{slopes[k]:g}"
        ds.RescaleIntercept = f"{intercepts[k]:g}"
        ds.GantryDetectorTilt = f"{tilt_deg:g}"
        _set_padding(ds, padding_value)
        ds.PixelData = stored[k].tobytes()
        paths.append(_save(ds, folder, rng=rng, nested=nested, transfer_syntax=transfer_syntax))
    return SyntheticSeries(
        folder=folder,
        series_uid=series_uid,
        paths=tuple(paths),
        positions_mm=tuple(positions),  # type: ignore[arg-type]
        stored=stored,
        slopes=slopes,
        intercepts=intercepts,
    )


def make_enhanced_series(
    path: Path,
    *,
    n_frames: int = 4,
    spacing_mm: float = 2.0,
    orientation: Sequence[float] = AXIAL,
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    frame_order: Sequence[int] | None = None,
) -> SyntheticSeries:
    """Write one Enhanced CT file whose frames are stored in ``frame_order`` (a permutation).

    Geometry lives in the functional groups: orientation and pixel spacing shared, position and
    rescale per frame. The returned series lists frames in spatial order.
    """
    order = list(frame_order) if frame_order is not None else list(range(n_frames))
    positions = slice_positions(n_slices=n_frames, spacing_mm=spacing_mm, orientation=orientation)
    slopes = tuple(slopes) if slopes is not None else (1.0,) * n_frames
    intercepts = tuple(intercepts) if intercepts is not None else (-1024.0,) * n_frames
    base = examples.ct.pixel_array.astype(np.int16)
    stored = np.stack([base + 10 * k for k in range(n_frames)]).astype(np.int16)
    ds = _slice_dataset(
        modality="CT", study_uid=generate_uid(), series_uid=generate_uid(), frame_uid=generate_uid()
    )
    ds.SOPClassUID = ENHANCED_CT_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT_STORAGE
    for keyword in (
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "RescaleSlope",
        "RescaleIntercept",
    ):
        if keyword in ds:
            del ds[keyword]
    ds.NumberOfFrames = n_frames
    shared = Dataset()
    shared.PlaneOrientationSequence = DicomSequence([_item(ImageOrientationPatient=list(orientation))])
    shared.PixelMeasuresSequence = DicomSequence(
        [_item(PixelSpacing=[0.66, 0.66], SliceThickness=spacing_mm)]
    )
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in order:
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([_item(ImagePositionPatient=list(positions[k]))])
        item.PixelValueTransformationSequence = DicomSequence(
            [_item(RescaleSlope=slopes[k], RescaleIntercept=intercepts[k], RescaleType="HU")]
        )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = stored[order].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return SyntheticSeries(
        folder=path.parent,
        series_uid=str(ds.SeriesInstanceUID),
        paths=(path,) * n_frames,
        positions_mm=tuple(positions),
        stored=stored,
        slopes=slopes,
        intercepts=intercepts,
    )


def truncate(path: Path, *, drop_bytes: int) -> None:
    """Cut the last ``drop_bytes`` bytes off a file (a broken copy or transfer)."""
    data = path.read_bytes()
    path.write_bytes(data[:-drop_bytes])


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _slice_dataset(*, modality: str, study_uid: str, series_uid: str, frame_uid: str) -> Dataset:
    ds = copy.deepcopy(examples.ct)
    sop_class = MR_IMAGE_STORAGE if modality == "MR" else str(ds.SOPClassUID)
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.SeriesDescription = "synthetic"
    return ds


def _set_padding(ds: Dataset, padding_value: int | None) -> None:
    if padding_value is None:
        if "PixelPaddingValue" in ds:
            del ds.PixelPaddingValue
        return
    ds.PixelPaddingValue = padding_value


def _save(ds: Dataset, folder: Path, *, rng: random.Random, nested: bool, transfer_syntax: str) -> Path:
    syntax = UID(transfer_syntax)
    if syntax.is_compressed:
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    sub = folder / f"d{rng.randrange(3)}" / f"e{rng.randrange(2)}" if nested else folder
    sub.mkdir(parents=True, exist_ok=True)
    path = sub / f"{rng.getrandbits(48):012x}"
    ds.save_as(path, enforce_file_format=True)
    return path
