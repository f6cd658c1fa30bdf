"""The FDA LCD phantom fixture (MetaImage) through read_volume.

Its layout: ``dose_{010,055,100}/signal_{absent,present}/signal_*.mhd``, each a 256×256×10 int16
volume whose 10 "slices" are noise realisations, with ``ElementSpacing = 1 1 1``; and a 2D
``ground_truth.mhd`` (uint16) that stores no spacing. The values are HU + 1000 (air ≈ 0, the
water-equivalent disc ≈ 1000, the low-contrast inserts a few units above), so read_volume refuses
them as stored values until ``hu_offset=-1000`` is declared.
"""

from __future__ import annotations

import numpy as np
import pytest

from meddenoise.errors import SeriesError
from meddenoise.volume.image import pair_volumes
from meddenoise.volume.io import read_volume
from tests.conftest import require_shared

DOSES = ("dose_010", "dose_055", "dose_100")


@pytest.mark.parametrize("dose", DOSES)
def test_phantom_is_refused_as_stored_values(dose: str) -> None:
    path = require_shared(f"fixtures/lcd-ct-phantom-3doses/{dose}/signal_absent/signal_absent.mhd")
    with pytest.raises(
        SeriesError, match=r"signal_absent\.mhd: looks like raw stored values 0\.\.4095.*--hu-offset"
    ):
        read_volume(path)


@pytest.mark.parametrize("dose", DOSES)
def test_phantom_reads_as_hu_once_the_offset_is_declared(dose: str) -> None:
    path = require_shared(f"fixtures/lcd-ct-phantom-3doses/{dose}/signal_present/signal_present.mhd")
    volume = read_volume(path, hu_offset=-1000.0)
    assert volume.hu.shape == (10, 256, 256)
    assert volume.spacing_mm == (1.0, 1.0, 1.0)
    assert volume.pixel_id == "int16"
    centre = volume.hu[:, 118:138, 118:138]  # inside the water-equivalent disc
    corner = volume.hu[:, :16, :16]  # air
    assert abs(float(np.median(centre))) < 30.0
    assert abs(float(np.median(corner)) + 1000.0) < 30.0


def test_the_three_doses_share_one_grid() -> None:
    root = require_shared("fixtures/lcd-ct-phantom-3doses")
    volumes = [
        read_volume(root / d / "signal_absent" / "signal_absent.mhd", hu_offset=-1000.0) for d in DOSES
    ]
    for volume in volumes[:-1]:
        pair_volumes(denoised=volume, reference=volumes[-1])


def test_ground_truth_without_spacing_is_refused() -> None:
    path = require_shared("fixtures/lcd-ct-phantom-3doses/ground_truth.mhd")
    with pytest.raises(SeriesError, match=r"ground_truth\.mhd: the file stores no voxel spacing"):
        read_volume(path, hu_offset=-1000.0)
