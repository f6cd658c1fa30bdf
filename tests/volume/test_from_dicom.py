"""A DICOM series written as a volume on SimpleITK's grid (``--also-save nifti|mha``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from meddenoise.dicom import SeriesInfo, find_series, read_series
from meddenoise.errors import SeriesError
from meddenoise.volume.from_dicom import dicom_series_to_sitk, volume_from_dicom, write_series_as_volume
from meddenoise.volume.io import read_volume
from tests.conftest import require_shared
from tests.dicom.synthetic import AXIAL, make_series, oblique


def _sorted_files(folder: Path) -> tuple[list[Path], npt.NDArray[np.float32], SeriesInfo]:
    info = find_series(folder).series[0]
    series = read_series(info)
    return [ref.path for ref in info.slices], series.hu, info


@pytest.mark.parametrize("extension", ["mha", "nii.gz"])
def test_oblique_series_is_written_with_the_project_geometry(tmp_path: Path, extension: str) -> None:
    make_series(tmp_path / "dicom", n_slices=5, spacing_mm=2.5, orientation=oblique(20.0))
    files, hu, info = _sorted_files(tmp_path / "dicom")
    denoised = hu - 5.0
    path = write_series_as_volume(denoised, dicom_files_sorted=files, path=tmp_path / f"out.{extension}")
    volume = read_volume(path)
    tolerance = 0.0 if extension == "mha" else 1e-5
    np.testing.assert_allclose(volume.origin_mm, info.origin_mm, rtol=tolerance)
    np.testing.assert_allclose(volume.spacing_mm, info.spacing_mm, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(volume.direction, (3, 3)), info.direction, atol=1e-6)
    np.testing.assert_array_equal(volume.hu, np.rint(denoised))
    assert volume.pixel_id == "int16"


def test_files_in_reverse_order_give_the_reversed_grid(tmp_path: Path) -> None:
    make_series(tmp_path / "dicom", n_slices=4, spacing_mm=3.0, orientation=AXIAL)
    files, hu, _ = _sorted_files(tmp_path / "dicom")
    forward, backward = volume_from_dicom(files), volume_from_dicom(files[::-1])
    np.testing.assert_array_equal(backward.hu, forward.hu[::-1])
    assert forward.direction[8] == pytest.approx(1.0)
    assert backward.direction[8] == pytest.approx(-1.0)
    np.testing.assert_array_equal(forward.hu, hu)


def test_tilted_series_is_refused(tmp_path: Path) -> None:
    make_series(tmp_path / "dicom", n_slices=4, tilt_deg=15.0)
    files, hu, _ = _sorted_files(tmp_path / "dicom")
    with pytest.raises(SeriesError, match=r"gantry tilt 15\.0°; it cannot be written as a regular volume"):
        write_series_as_volume(hu, dicom_files_sorted=files, path=tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()


def test_unevenly_spaced_series_is_refused(tmp_path: Path) -> None:
    positions = [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 6.5, 9.0)]
    make_series(tmp_path / "dicom", positions_mm=positions)
    files, hu, _ = _sorted_files(tmp_path / "dicom")
    with pytest.raises(SeriesError, match=r"uneven slice spacing \(steps from 2\.00 to 2\.50 mm\)"):
        write_series_as_volume(hu, dicom_files_sorted=files, path=tmp_path / "out.mha")


def test_shape_must_match_the_series(tmp_path: Path) -> None:
    make_series(tmp_path / "dicom", n_slices=3)
    files, hu, _ = _sorted_files(tmp_path / "dicom")
    with pytest.raises(ValueError, match="differs from like's"):
        write_series_as_volume(hu[:2], dicom_files_sorted=files, path=tmp_path / "out.mha")


def test_unreadable_files_are_a_series_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.dcm"
    bogus.write_bytes(b"not dicom" * 50)
    with pytest.raises(SeriesError, match=r"bogus\.dcm: SimpleITK cannot read the series") as caught:
        dicom_series_to_sitk([bogus])
    assert "\n" not in str(caught.value)


def test_real_gantry_tilt_fixture_is_refused(tmp_path: Path) -> None:
    files, hu, _ = _sorted_files(require_shared("fixtures/ge-head-gantry-tilt"))
    with pytest.raises(SeriesError, match=r"gantry tilt 18\.5°"):
        write_series_as_volume(hu, dicom_files_sorted=files, path=tmp_path / "out.nii.gz")


def test_real_jpeg2000_fixture_round_trips(tmp_path: Path) -> None:
    files, hu, info = _sorted_files(require_shared("fixtures/totalseg-example-ct-j2k"))
    path = write_series_as_volume(hu, dicom_files_sorted=files, path=tmp_path / "ct.nrrd")
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.hu, hu)
    np.testing.assert_allclose(volume.origin_mm, info.origin_mm, atol=1e-9)
    np.testing.assert_allclose(volume.spacing_mm, info.spacing_mm, atol=1e-9)
