"""Two readers agree: the project's pydicom reader and SimpleITK's (GDCM) ImageSeriesReader.

Every DICOM series in ../shared/data is read both ways. SimpleITK picks and orders the files
itself (``GetGDCMSeriesFileNames``), so the slice order is compared for real. They must agree on
the slice order, the in-plane spacing (exactly), the slice spacing (1e-3 mm), the origin
(1e-3 mm), the direction (1e-6) and every HU value (exactly). This guards against silent geometry
bugs in either reader.

Documented disagreements and oddities:

- ``ge-head-gantry-tilt`` (18.5° tilt, steps 4.0 mm then 7.0 mm): both readers take the direction
  from ImageOrientationPatient (orthogonal; identical) and agree on origin, order and HU, but not
  on the slice spacing. The project reports the median step *along the slice normal* (4.00 mm)
  and names the tilt and the uneven spacing as problems. SimpleITK divides the distance from the
  first to the last ImagePositionPatient, measured *along the tilted line of travel*, by n - 1
  (5.63 mm), so its regular grid misplaces every slice but the first. That is why
  ``write_series_as_volume`` refuses tilted series.
- ``totalseg-example-ct-j2k`` has empty SeriesInstanceUID, SOPInstanceUID and SOPClassUID in the
  dataset (the SOP UIDs survive only in the file meta). Both readers group its 20 files as one
  series whose UID is the empty string; GDCM lists it under the series ID "".
- Where the spacing is regular but written with rounding (rider-pilot-0117), the project's median
  step and SimpleITK's (last - first) / (n - 1) differ by a few micrometres; hence 1e-3 mm on z.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from meddenoise.dicom import SeriesInfo, find_series, read_series
from tests.conftest import require_shared

FAST_SETS = (
    "fixtures/atcm-phantom-ge-revolution",
    "fixtures/dcmqi-ct-3slice",
    "fixtures/ge-head-gantry-tilt",
    "fixtures/totalseg-example-ct-j2k",
)
SLOW_SETS = (
    "ct/acrin-flt-breast",
    "ct/lidc-idri-0001",
    "ct/lidc-idri-0002-0003-partial",
    "ct/lung-pet-ct-dx",
    "ct/lungfcp-01-0001",
    "ct/nsclc-radiogenomics-R01-001",
    "ct/pancreatic-ct-cbct-seg-001",
    "ct/rider-pilot-0117",
)
NOT_DICOM = ("fixtures/lcd-ct-phantom-3doses",)  # MetaImage; see tests/volume/test_lcd_phantom.py
TILTED = "fixtures/ge-head-gantry-tilt"
EMPTY_UIDS = "fixtures/totalseg-example-ct-j2k"

Z_TOLERANCE_MM = 1e-3
ORIGIN_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-6


def test_every_set_in_shared_data_is_compared() -> None:
    root = require_shared()
    present = {f"{top}/{p.name}" for top in ("ct", "fixtures") for p in (root / top).iterdir() if p.is_dir()}
    assert present == {*FAST_SETS, *SLOW_SETS, *NOT_DICOM}


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "relative", [*FAST_SETS, *(pytest.param(s, marks=pytest.mark.slow) for s in SLOW_SETS)]
)
def test_pydicom_and_simpleitk_agree(relative: str) -> None:
    scan = find_series(require_shared(relative))
    assert scan.series, f"no CT series found in {relative}"
    for info in scan.series:
        assert not info.fatal_problems
        image, files = _read_with_simpleitk(info)
        _assert_same_order(info, files)
        series = read_series(info)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image).astype(np.float32), series.hu)
        spacing = image.GetSpacing()
        assert spacing[:2] == (info.spacing_mm[2], info.spacing_mm[1])
        np.testing.assert_allclose(image.GetOrigin(), info.origin_mm, rtol=0, atol=ORIGIN_TOLERANCE_MM)
        np.testing.assert_allclose(image.GetDirection(), info.direction.ravel(), atol=DIRECTION_TOLERANCE)
        if relative == TILTED:
            _assert_tilt_disagreement(info, spacing[2])
        else:
            assert spacing[2] == pytest.approx(info.spacing_mm[0], abs=Z_TOLERANCE_MM)
            assert info.tilt_deg == 0.0
        if relative == EMPTY_UIDS:
            assert info.series_uid == ""
            assert sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(files[0].parent)) == ("",)


def _read_with_simpleitk(info: SeriesInfo) -> tuple[sitk.Image, list[Path]]:
    """GDCM's own choice and order of files for this SeriesInstanceUID, then its volume."""
    parents = {str(ref.path.parent) for ref in info.slices}
    folder = os.path.commonpath(sorted(parents))
    assert info.series_uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or len(parents) > 1
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, info.series_uid, recursive=len(parents) > 1)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute(), [Path(n) for n in names]


def _assert_same_order(info: SeriesInfo, files: list[Path]) -> None:
    """SimpleITK's file order maps onto the same ImagePositionPatient sequence as the project's."""
    by_path = {ref.path: ref.position_mm for ref in info.slices}
    assert sorted(files) == sorted(by_path)
    assert [by_path[f] for f in files] == [ref.position_mm for ref in info.slices]


def _assert_tilt_disagreement(info: SeriesInfo, sitk_step_mm: float) -> None:
    """The documented difference: SimpleITK's step runs along the tilted travel, averaged."""
    first, last = np.asarray(info.slices[0].position_mm), np.asarray(info.slices[-1].position_mm)
    along_travel = float(np.linalg.norm(last - first)) / (len(info.slices) - 1)
    assert sitk_step_mm == pytest.approx(along_travel, abs=1e-6)
    assert info.spacing_mm[0] == pytest.approx(4.0019, abs=1e-3)  # the median step along the normal
    assert sitk_step_mm - info.spacing_mm[0] > 1.5
    assert info.tilt_deg == pytest.approx(18.5, abs=0.05)
    assert any(p.startswith("gantry tilt") for p in info.problems)
    assert any(p.startswith("uneven slice spacing") for p in info.problems)
