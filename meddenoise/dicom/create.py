"""Build a new, original CT series from an HU volume (the demo's phantom, test fixtures).

Real scans come from scanners; this makes a minimal but valid CT Image Storage series so the
demo runs on a fresh machine without any patient data. Values are stored as signed 16-bit with
RescaleIntercept 0 and slope 1, so HU round-trip exactly after rounding.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from meddenoise import __version__
from meddenoise.dicom.derive import ct_file_meta
from meddenoise.dicom.write import write_series_files

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def new_ct_datasets(
    *,
    hu: npt.NDArray[np.floating],
    pixel_mm: float,
    slice_mm: float,
    patient_name: str = "MEDDENOISE^PHANTOM",
    patient_id: str = "PHANTOM-0001",
    series_description: str = "Digital torso phantom",
    orientation: Sequence[float] = AXIAL,
) -> list[Dataset]:
    """One CT Image Storage dataset per slice of ``hu`` (slices, rows, columns), first slice at z = 0.

    Examples
    --------
    >>> datasets = new_ct_datasets(hu=np.zeros((2, 8, 8)), pixel_mm=1.0, slice_mm=2.0)
    >>> [float(d.ImagePositionPatient[2]) for d in datasets]
    [0.0, 2.0]
    """
    if hu.ndim != 3:
        raise ValueError(f"hu must be (slices, rows, columns), got shape {hu.shape}")
    stored = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    now = dt.datetime.now()
    shared = _shared_header(hu.shape[1:], pixel_mm, slice_mm, now)
    shared.update(
        {"PatientName": patient_name, "PatientID": patient_id, "SeriesDescription": series_description}
    )
    shared["ImageOrientationPatient"] = [f"{v:g}" for v in orientation]
    normal = np.cross(np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:], dtype=float))
    datasets = []
    for index, plane in enumerate(stored):
        ds = Dataset()
        for keyword, value in shared.items():
            setattr(ds, keyword, value)
        sop_uid = generate_uid()
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = index + 1
        origin = normal * index * slice_mm
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin]
        ds.SliceLocation = f"{float(np.dot(origin, normal)):.4f}"
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(plane.min()), int(plane.max())
        ds.PixelData = plane.tobytes()
        ds.file_meta = ct_file_meta(sop_uid)
        datasets.append(ds)
    return datasets


def _shared_header(
    shape: tuple[int, ...], pixel_mm: float, slice_mm: float, now: dt.datetime
) -> dict[str, object]:
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return {
        "SOPClassUID": CTImageStorage,
        "Modality": "CT",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "PatientBirthDate": "",
        "PatientSex": "O",
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
        "StudyDate": date,
        "StudyTime": time,
        "SeriesDate": date,
        "SeriesTime": time,
        "ContentDate": date,
        "ContentTime": time,
        "AcquisitionDate": date,
        "AcquisitionTime": time,
        "ReferringPhysicianName": "",
        "StudyID": "1",
        "AccessionNumber": "",
        "SeriesNumber": 1,
        "AcquisitionNumber": 1,
        "Manufacturer": "meddenoise (digital phantom)",
        "SoftwareVersions": __version__,
        "KVP": "120",
        "SliceThickness": f"{slice_mm:g}",
        "SpacingBetweenSlices": f"{slice_mm:g}",
        "ConvolutionKernel": "PHANTOM",
        "PatientPosition": "HFS",
        "Laterality": None,  # Type 2C in General Series: present, empty (dciodvfy requires it)
        "PixelSpacing": [f"{pixel_mm:g}", f"{pixel_mm:g}"],
        "Rows": shape[0],
        "Columns": shape[1],
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleIntercept": "0",
        "RescaleSlope": "1",
        "RescaleType": "HU",
        "WindowCenter": "40",
        "WindowWidth": "400",
        "BurnedInAnnotation": "NO",
    }


def write_new_series(
    *,
    hu: npt.NDArray[np.floating],
    pixel_mm: float,
    slice_mm: float,
    folder: Path,
    overwrite: bool = False,
    series_description: str = "Digital torso phantom",
) -> Path:
    """Write ``hu`` as a new original CT series into ``folder`` (atomically); returns the folder."""
    datasets = new_ct_datasets(
        hu=hu, pixel_mm=pixel_mm, slice_mm=slice_mm, series_description=series_description
    )
    return write_series_files(datasets=datasets, count=len(datasets), final=folder, overwrite=overwrite)
