"""Small shared pieces for the PACS tests: a tiny checkpoint and a corrupt series."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom

from tests.dicom.synthetic import make_series

PYTHON = sys.executable


def make_corrupt_series(folder: Path, *, seed: int = 99) -> str:
    """A CT series whose middle slice lost its pixel data (found by the walk, refused on reading)."""
    series = make_series(folder, n_slices=3, seed=seed)
    victim = series.paths[1]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    return str(series.series_uid)
