"""new_ct_datasets / write_new_series: an original CT series from an HU volume, read back exactly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from meddenoise.dicom import find_series, read_series
from meddenoise.dicom.create import new_ct_datasets, write_new_series
from meddenoise.errors import OutputError


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1100, 3000, size=(3, 16, 12)).astype(np.float32)


def test_written_series_reads_back_with_its_geometry_and_rounded_hu(tmp_path: Path) -> None:
    hu = _volume()
    folder = write_new_series(
        hu=hu, pixel_mm=0.8, slice_mm=2.5, folder=tmp_path / "s", series_description="test"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["0001.dcm", "0002.dcm", "0003.dcm"]
    info = find_series(folder).series[0]
    assert info.shape == (3, 16, 12) and info.description == "test" and info.kernel == "PHANTOM"
    assert info.spacing_mm == pytest.approx((2.5, 0.8, 0.8))
    assert info.problems == () and info.fatal_problems == ()
    np.testing.assert_array_equal(read_series(info).hu, np.rint(hu))
    datasets = [dcmread(p) for p in sorted(folder.iterdir())]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3]
    assert all(ds.Modality == "CT" and ds.ImageType[0] == "ORIGINAL" for ds in datasets)


def test_extreme_hu_are_clipped_to_int16_and_shape_is_checked() -> None:
    hu = np.array([[[-40000.0, 40000.0]]])
    (ds,) = new_ct_datasets(hu=hu, pixel_mm=1.0, slice_mm=1.0)
    assert ds.pixel_array.tolist() == [[-32768, 32767]]
    with pytest.raises(ValueError, match="slices, rows, columns"):
        new_ct_datasets(hu=np.zeros((4, 4)), pixel_mm=1.0, slice_mm=1.0)


def test_an_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    write_new_series(hu=_volume(), pixel_mm=1.0, slice_mm=1.0, folder=tmp_path / "s")
    with pytest.raises(OutputError, match="already holds a series; pass --overwrite"):
        write_new_series(hu=_volume(), pixel_mm=1.0, slice_mm=1.0, folder=tmp_path / "s")
    write_new_series(hu=_volume()[:1], pixel_mm=1.0, slice_mm=1.0, folder=tmp_path / "s", overwrite=True)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["0001.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="needs dciodvfy (Debian package dicom3tools)")
def test_dciodvfy_reports_no_errors(tmp_path: Path) -> None:
    folder = write_new_series(hu=_volume(), pixel_mm=1.0, slice_mm=2.0, folder=tmp_path / "s")
    done = subprocess.run(["dciodvfy", str(folder / "0001.dcm")], check=False, capture_output=True, text=True)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
