"""find_series / select_series: walking folders, skipping what is not CT, sorting along the normal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from meddenoise.dicom import find_series, select_series
from meddenoise.errors import SeriesError
from tests.conftest import require_shared
from tests.dicom.synthetic import AXIAL, CORONAL, make_enhanced_series, make_series, normal_of, oblique

DICOMDIR = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "DICOMDIR"


@pytest.mark.parametrize(
    "orientation",
    [AXIAL, (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), CORONAL, oblique(30.0)],
    ids=["axial", "normal-towards-minus-z", "coronal", "oblique-30"],
)
def test_slices_sort_along_the_normal_not_by_instance_number_or_name(tmp_path: Path, orientation) -> None:
    written = make_series(tmp_path, n_slices=7, orientation=orientation, spacing_mm=1.5, seed=3)
    info = find_series(tmp_path).series[0]
    assert [r.path for r in info.slices] == list(written.paths)
    offsets = [r.normal_offset_mm for r in info.slices]
    assert np.all(np.diff(offsets) > 0)
    numbers = [int(r.header.InstanceNumber) for r in info.slices]
    assert numbers != sorted(numbers), "the synthetic series should shuffle InstanceNumbers"
    assert info.shape == (7, 128, 128)
    assert info.spacing_mm[0] == pytest.approx(1.5, abs=1e-4)
    assert np.allclose(info.direction[:, 2], normal_of(orientation))
    assert info.problems == () and info.fatal_problems == ()


def test_nested_folders_dicomdir_and_non_dicom_files_are_skipped_and_reported(tmp_path: Path) -> None:
    make_series(tmp_path / "a" / "b", n_slices=3)
    shutil.copy(DICOMDIR, tmp_path / "DICOMDIR")
    (tmp_path / "a" / "notes.txt").write_text("not an image\n")
    scan = find_series(tmp_path)
    assert len(scan.series) == 1 and scan.series[0].shape[0] == 3
    reasons = {path.name: reason for path, reason in scan.skipped}
    assert reasons == {"DICOMDIR": "DICOMDIR (a media directory, not an image)", "notes.txt": "not DICOM"}


def test_a_single_file_is_a_valid_single_slice_series(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=1, nested=False)
    info = find_series(written.paths[0]).series[0]
    assert info.shape == (1, 128, 128)
    assert info.spacing_mm[0] == pytest.approx(5.0)  # examples.ct's SpacingBetweenSlices
    assert info.fatal_problems == () and info.problems == ()


def test_several_series_in_one_folder_are_grouped(tmp_path: Path) -> None:
    first = make_series(tmp_path, n_slices=3, nested=False, seed=1)
    second = make_series(tmp_path, n_slices=4, nested=False, seed=2, orientation=CORONAL)
    scan = find_series(tmp_path)
    by_uid = {s.series_uid: s for s in scan.series}
    assert set(by_uid) == {first.series_uid, second.series_uid}
    assert by_uid[first.series_uid].shape[0] == 3 and by_uid[second.series_uid].shape[0] == 4
    assert select_series(scan, [second.series_uid]) == (by_uid[second.series_uid],)


def test_unknown_series_uid_lists_the_valid_ones(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=2)
    scan = find_series(tmp_path)
    with pytest.raises(
        SeriesError, match=rf"unknown series 1\.2\.3; the CT series found are: {written.series_uid}"
    ):
        select_series(scan, ["1.2.3"])


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match=f"no files in {tmp_path}$"):
        find_series(tmp_path)


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match="does not exist"):
        find_series(tmp_path / "nowhere")


def test_only_non_dicom_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 4)
    scan = find_series(tmp_path)
    with pytest.raises(SeriesError) as err:
        select_series(scan, None)
    assert str(err.value) == f"no DICOM files in {tmp_path} (2 files skipped, e.g. a.txt: not DICOM)"


def test_non_ct_series_is_skipped_with_its_modality(tmp_path: Path) -> None:
    make_series(tmp_path, n_slices=2, modality="MR", nested=False)
    scan = find_series(tmp_path)
    assert scan.series == ()
    assert [reason for _, reason in scan.skipped] == ["modality MR, not CT"] * 2
    with pytest.raises(SeriesError, match=r"no CT series in .*: found only MR \(2 files skipped"):
        select_series(scan, None)


def test_ct_next_to_mr_keeps_the_ct(tmp_path: Path) -> None:
    ct = make_series(tmp_path / "ct", n_slices=2)
    make_series(tmp_path / "mr", n_slices=2, modality="MR")
    scan = find_series(tmp_path)
    assert [s.series_uid for s in select_series(scan, None)] == [ct.series_uid]
    assert len(scan.skipped) == 2


def test_enhanced_ct_gives_one_slice_per_frame_sorted(tmp_path: Path) -> None:
    make_enhanced_series(tmp_path / "enhanced.dcm", n_frames=4, frame_order=[2, 0, 3, 1])
    info = find_series(tmp_path).series[0]
    assert info.shape == (4, 128, 128)
    assert [r.frame_index for r in info.slices] == [1, 3, 0, 2]
    assert info.spacing_mm == pytest.approx((2.0, 0.66, 0.66))
    assert info.fatal_problems == ()


@pytest.mark.shared_data
def test_every_shared_series_has_sensible_headers() -> None:
    """Header-only discovery over all the real data: every CT series valid, the tilt only named."""
    roots = [*sorted(require_shared("fixtures").iterdir()), *sorted(require_shared("ct").iterdir())]
    counts = {}
    for root in roots:
        scan = find_series(root)
        counts[root.name] = len(scan.series)
        for info in scan.series:
            assert info.fatal_problems == (), (root.name, info.fatal_problems)
            assert info.shape[1:] == (512, 512)
            assert 0.5 <= info.spacing_mm[0] <= 10 and 0.4 <= info.spacing_mm[1] <= 1.5
            offsets = [r.normal_offset_mm for r in info.slices]
            assert np.all(np.diff(offsets) > 0)
            if root.name != "ge-head-gantry-tilt":
                assert info.problems == (), (root.name, info.problems)
    assert counts["acrin-flt-breast"] == 3 and counts["lung-pet-ct-dx"] == 2
    assert counts["lcd-ct-phantom-3doses"] == 0 and counts["totalseg-example-ct-j2k"] == 1


def test_blank_sop_uids_fall_back_to_the_file_meta() -> None:
    """The totalseg fixture blanks SOPInstanceUID in the dataset but keeps it in the file meta."""
    info = find_series(require_shared("fixtures/totalseg-example-ct-j2k")).series[0]
    uids = [ref.sop_instance_uid for ref in info.slices]
    assert all(uids) and len(set(uids)) == len(uids)
    assert all(ref.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2" for ref in info.slices)
