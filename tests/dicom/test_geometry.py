"""Validation in words: what is fatal (orientation, size, duplicates, gaps) and what is only named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from meddenoise.dicom import find_series, read_series
from meddenoise.dicom.geometry import plane_of
from meddenoise.errors import SeriesError
from tests.conftest import require_shared
from tests.dicom.synthetic import AXIAL, make_series, oblique


def _rewrite(path: Path, **values: object) -> None:
    ds = dcmread(path)
    for keyword, value in values.items():
        if value is None:
            del ds[keyword]
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def test_mixed_orientations_are_fatal(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=4)
    _rewrite(written.paths[2], ImageOrientationPatient=list(oblique(10.0)))
    info = find_series(tmp_path).series[0]
    assert len(info.fatal_problems) == 1
    assert info.fatal_problems[0].startswith(f"mixed orientations: {written.paths[2].name} has")
    with pytest.raises(SeriesError, match=f"series {info.series_uid}: mixed orientations: "):
        read_series(info)


def test_mixed_pixel_spacing_is_fatal(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=3)
    _rewrite(written.paths[1], PixelSpacing=[0.5, 0.5])
    (problem,) = find_series(tmp_path).series[0].fatal_problems
    assert problem.startswith("mixed pixel spacing:") and written.paths[1].name in problem


def test_duplicate_positions_are_fatal_and_named(tmp_path: Path) -> None:
    positions = [(0, 0, 0), (0, 0, 2), (0, 0, 2), (0, 0, 4)]
    written = make_series(tmp_path, positions_mm=positions)
    (problem,) = find_series(tmp_path).series[0].fatal_problems
    assert problem.startswith("duplicate slice position (0, 0, 2) mm in ")
    assert written.paths[1].name in problem and written.paths[2].name in problem


def test_a_missing_slice_is_a_fatal_gap_that_says_where(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=6, spacing_mm=2.0)
    written.paths[3].unlink()
    info = find_series(tmp_path).series[0]
    assert info.fatal_problems == (
        f"gap of 4.00 mm between {written.paths[2].name} and {written.paths[4].name} "
        "where the spacing is 2.00 mm: about 1 slice(s) missing",
    )


def test_uneven_spacing_without_a_gap_is_named_not_fatal(tmp_path: Path) -> None:
    # like the real GE head series: a run at 4 mm, one short step, then a run at 7 mm
    positions = [(0, 0, z) for z in (0.0, 4.0, 8.0, 12.0, 13.0, 20.0, 27.0, 34.0)]
    make_series(tmp_path, positions_mm=positions)
    info = find_series(tmp_path).series[0]
    assert info.fatal_problems == ()
    assert info.problems == ("uneven slice spacing: steps from 1.00 to 7.00 mm (median 4.00 mm)",)


def test_two_missing_slices_apart_are_two_gaps(tmp_path: Path) -> None:
    positions = [(0, 0, z) for z in (0.0, 2.0, 6.0, 10.0, 12.0, 14.0)]
    written = make_series(tmp_path, positions_mm=positions)
    problems = find_series(tmp_path).series[0].fatal_problems
    assert len(problems) == 2
    assert problems[0].startswith(
        f"gap of 4.00 mm between {written.paths[1].name} and {written.paths[2].name}"
    )


def test_overlapping_slices_are_not_a_gap(tmp_path: Path) -> None:
    make_series(tmp_path, n_slices=4, spacing_mm=1.0)  # examples.ct slices are 5 mm thick
    info = find_series(tmp_path).series[0]
    assert info.problems == () and info.fatal_problems == ()


def test_gantry_tilt_is_named_but_not_fatal(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=5, tilt_deg=15.0)
    info = find_series(tmp_path).series[0]
    assert info.tilt_deg == pytest.approx(15.0, abs=0.01)
    assert info.problems == ("gantry tilt 15.0°",) and info.fatal_problems == ()
    assert read_series(info).hu.shape == (5, 128, 128)
    assert [r.path for r in info.slices] == list(written.paths)


def test_single_slice_tilt_comes_from_the_tag(tmp_path: Path) -> None:
    make_series(tmp_path, n_slices=1, tilt_deg=12.0)
    assert find_series(tmp_path).series[0].problems == ("gantry tilt 12.0°",)


def test_missing_pixel_data_is_fatal_and_named(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=3)
    _rewrite(written.paths[1], PixelData=None)
    info = find_series(tmp_path).series[0]
    assert info.fatal_problems == (f"no pixel data in {written.paths[1].name}",)
    with pytest.raises(SeriesError, match=f"no pixel data in {written.paths[1].name}"):
        read_series(info)


def test_missing_geometry_skips_the_file_with_the_reason(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=3)
    _rewrite(written.paths[0], ImagePositionPatient=None)
    scan = find_series(tmp_path)
    assert scan.skipped == ((written.paths[0], "no usable geometry: no valid ImagePositionPatient"),)
    assert scan.series[0].shape[0] == 2


def test_plane_of_reads_the_header() -> None:
    from pydicom import examples

    plane = plane_of(examples.ct)
    assert plane.orientation == AXIAL and (plane.rows, plane.columns) == (128, 128)
    assert plane.position_mm == pytest.approx((-158.135803, -179.035797, -75.699997))


@pytest.mark.shared_data
def test_real_gantry_tilt_series_is_readable_with_its_problems_named() -> None:
    info = find_series(require_shared("fixtures/ge-head-gantry-tilt")).series[0]
    assert info.tilt_deg == pytest.approx(18.5, abs=0.05)
    assert info.problems == (
        "gantry tilt 18.5°",
        "uneven slice spacing: steps from 1.08 to 7.00 mm (median 4.00 mm)",
    )
    assert info.fatal_problems == ()


@pytest.mark.shared_data
def test_real_overlapping_j2k_series_has_no_gap() -> None:
    info = find_series(require_shared("fixtures/totalseg-example-ct-j2k")).series[0]
    assert info.spacing_mm[0] == pytest.approx(2.0)
    assert float(info.slices[0].header.SliceThickness) == pytest.approx(3.0)
    assert info.problems == () and info.fatal_problems == ()
