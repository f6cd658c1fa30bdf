"""Small phantom series on disk for report tests: full dose, low dose, denoised (smoothed), with PHI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from meddenoise.dicom import write_series_files
from meddenoise.dicom.create import new_ct_datasets
from meddenoise.phantom import torso_phantom

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "JD-4711-PHI"
PIXEL_MM = 1.5
SLICE_MM = 3.0


@dataclass(frozen=True)
class PhantomSet:
    """Folders of one phantom scanned at full and low dose, and a smoothed 'denoised' low dose."""

    full: Path
    low: Path
    denoised: Path
    full_hu: npt.NDArray[np.float32]
    low_hu: npt.NDArray[np.float32]


def write_hu(hu: npt.NDArray[np.floating], folder: Path, description: str) -> Path:
    """Write ``hu`` as a CT series of patient DOE^JANE (same study UID for every call is not needed)."""
    datasets = new_ct_datasets(
        hu=hu,
        pixel_mm=PIXEL_MM,
        slice_mm=SLICE_MM,
        patient_name=PATIENT_NAME,
        patient_id=PATIENT_ID,
        series_description=description,
    )
    return write_series_files(datasets=datasets, count=len(datasets), final=folder)


def make_phantom_set(root: Path, *, size: int = 128, slices: int = 4, sigma_hu: float = 30.0) -> PhantomSet:
    """Phantom + white noise as 'full dose' (σ/2) and 'low dose' (σ); the denoised is a Gaussian blur."""
    clean = torso_phantom(size=size, slices=slices, pixel_mm=PIXEL_MM, seed=1)
    rng = np.random.default_rng(7)
    full = clean + rng.normal(0.0, sigma_hu / 2, clean.shape).astype(np.float32)
    low = clean + rng.normal(0.0, sigma_hu, clean.shape).astype(np.float32)
    smooth = ndimage.gaussian_filter(low, sigma=(0, 1.2, 1.2)).astype(np.float32)
    return PhantomSet(
        full=write_hu(full, root / "full", "phantom full dose"),
        low=write_hu(low, root / "low", "phantom low dose"),
        denoised=write_hu(smooth, root / "denoised", "phantom smoothed"),
        full_hu=full,
        low_hu=low,
    )
