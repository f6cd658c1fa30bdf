"""read_series: HU from stored values per slice, compressions, padding, broken files."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from meddenoise.dicom import find_series, read_series
from meddenoise.errors import SeriesError
from tests.conftest import require_shared
from tests.dicom.synthetic import make_enhanced_series, make_series, truncate


def _hashes(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_hu_round_trip_uses_each_slices_slope_and_intercept(tmp_path: Path) -> None:
    written = make_series(
        tmp_path, n_slices=4, slopes=[1.0, 0.5, 2.0, 1.0], intercepts=[-1024.0, -1000.0, 0.0, -3.5]
    )
    before = _hashes(tmp_path)
    calls: list[int] = []
    series = read_series(find_series(tmp_path).series[0], progress=calls.append)
    assert series.hu.dtype == np.float32
    np.testing.assert_array_equal(series.hu, written.hu)
    assert series.hu[1, 50, 50] == np.float32(written.stored[1, 50, 50] * 0.5 - 1000.0)
    assert series.padding_mask is None
    assert calls == [1, 1, 1, 1]
    assert _hashes(tmp_path) == before, "reading must never modify the input files"


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_compressed_series_decode_exactly(tmp_path: Path, syntax: str) -> None:
    written = make_series(tmp_path, n_slices=3, transfer_syntax=syntax, intercepts=[-1024, -1024, -1000])
    series = read_series(find_series(tmp_path).series[0])
    np.testing.assert_array_equal(series.hu, written.hu)


def _as_ct(source: str, folder: Path) -> Path:
    """A copy of one of pydicom's MR test files relabelled as a CT slice (pixels untouched)."""
    ds = dcmread(get_testdata_file(source, download=False))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "slice")
    return folder / "slice"


@pytest.mark.parametrize(
    "source",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_pydicom_compressed_files_decode_to_the_uncompressed_values(tmp_path: Path, source: str) -> None:
    _as_ct(source, tmp_path)
    reference = dcmread(get_testdata_file("MR_small.dcm", download=False)).pixel_array
    series = read_series(find_series(tmp_path).series[0])
    np.testing.assert_array_equal(series.hu[0], reference.astype(np.float32) - 1024)


def test_real_jpeg2000_ct_slice_decodes() -> None:
    path = get_testdata_file("693_J2KI.dcm", download=False)
    assert path is not None
    series = read_series(find_series(Path(path)).series[0])
    reference = dcmread(path)
    expected = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    np.testing.assert_array_equal(series.hu[0], expected.astype(np.float32))


def test_unreadable_compression_names_the_file_and_syntax(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=2, transfer_syntax=JPEG2000Lossless)
    private_syntax = "1.3.6.1.4.1.5962.99.1.4"  # same bytes, labelled with a compression nobody here knows
    for path in written.paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = private_syntax
        ds.save_as(path, implicit_vr=False, little_endian=True)
    info = find_series(tmp_path).series[0]  # header-only discovery does not care
    assert info.fatal_problems == ()
    with pytest.raises(SeriesError) as err:
        read_series(info)
    message = str(err.value)
    assert message.startswith(str(info.slices[0].path)) and "\n" not in message
    assert f"cannot decode transfer syntax {private_syntax}: no decoder exists" in message


def test_padding_mask_in_stored_space(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=2, padding_value=-2000)
    series = read_series(find_series(tmp_path).series[0])
    assert series.padding_mask is not None
    assert series.padding_mask.sum() == 2 * 16 and series.padding_mask[:, :4, :4].all()
    assert np.all(series.hu[series.padding_mask] == -2000 - 1024)
    np.testing.assert_array_equal(series.hu, written.hu)


def test_padding_value_written_as_unsigned_still_matches_signed_pixels(tmp_path: Path) -> None:
    make_series(tmp_path, n_slices=1, padding_value=-2000, nested=False)
    (path,) = [p for p in tmp_path.iterdir()]
    ds = dcmread(path)
    ds["PixelPaddingValue"].VR = "US"
    ds.PixelPaddingValue = 63536  # the same 16 bits read as unsigned, as some scanners write it
    ds.save_as(path)
    series = read_series(find_series(tmp_path).series[0])
    assert series.padding_mask is not None and series.padding_mask.sum() == 16


def test_truncated_middle_slice_is_named_as_a_gap(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=5)
    truncate(written.paths[2], drop_bytes=1000)  # examples.ct has 138 bytes after its pixel data
    scan = find_series(tmp_path)
    assert scan.skipped == ((written.paths[2], "pixel data truncated (31906 of 32768 bytes)"),)
    info = scan.series[0]
    assert info.fatal_problems[0].startswith(f"gap of 5.00 mm between {written.paths[1].name} and ")
    assert (
        info.fatal_problems[-1]
        == f"{written.paths[2].name} skipped: pixel data truncated (31906 of 32768 bytes)"
    )
    with pytest.raises(SeriesError, match=f"{written.paths[2].name} skipped: pixel data truncated"):
        read_series(info)


def test_truncated_end_slice_is_named_and_the_rest_read(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=4)
    truncate(written.paths[3], drop_bytes=148)
    info = find_series(tmp_path, allow_gaps=True).series[0]  # by default a lost slice is fatal
    assert info.fatal_problems == ()
    assert info.problems == (f"{written.paths[3].name} skipped: pixel data truncated (32758 of 32768 bytes)",)
    np.testing.assert_array_equal(read_series(info).hu, written.hu[:3])


def test_corrupt_compressed_slice_is_left_out_when_the_series_stays_complete(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=4, transfer_syntax=JPEG2000Lossless)
    truncate(written.paths[0], drop_bytes=3000)
    info = find_series(tmp_path, allow_gaps=True).series[0]  # by default a lost slice is fatal
    series = read_series(info)
    np.testing.assert_array_equal(series.hu, written.hu[1:])
    assert series.info.shape == (3, 128, 128)
    assert series.info.problems[0].startswith(f"{written.paths[0].name} skipped: cannot decode pixel data")


def test_corrupt_compressed_slice_in_the_middle_is_a_named_error(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=4, transfer_syntax=JPEG2000Lossless)
    truncate(written.paths[1], drop_bytes=3000)
    with pytest.raises(SeriesError) as err:
        read_series(find_series(tmp_path).series[0])
    message = str(err.value)
    assert (
        "gap of 5.00 mm" in message
        and f"{written.paths[1].name} skipped: cannot decode pixel data" in message
    )
    assert "\n" not in message


def test_enhanced_ct_frames_read_with_their_own_rescale(tmp_path: Path) -> None:
    written = make_enhanced_series(
        tmp_path / "enhanced",
        n_frames=4,
        frame_order=[3, 1, 0, 2],
        slopes=[1, 2, 1, 0.5],
        intercepts=[0, -1, -2, -3],
    )
    series = read_series(find_series(tmp_path).series[0])
    np.testing.assert_array_equal(series.hu, written.hu)


def test_headers_are_kept_without_pixel_data(tmp_path: Path) -> None:
    make_series(tmp_path, n_slices=2)
    info = find_series(tmp_path).series[0]
    for ref in info.slices:
        assert "PixelData" not in ref.header
        assert ref.header.SOPInstanceUID == ref.sop_instance_uid
    copy.deepcopy(info.slices[0].header).SeriesInstanceUID = generate_uid()  # headers copy cleanly


@pytest.mark.shared_data
def test_real_fixture_with_padding_reads_hu() -> None:
    folder = require_shared("fixtures/dcmqi-ct-3slice")
    before = _hashes(folder)
    series = read_series(find_series(folder).series[0])
    assert series.hu.shape == (3, 512, 512) and series.hu.dtype == np.float32
    assert series.padding_mask is not None and 0.1 < series.padding_mask.mean() < 0.5
    body = series.hu[~series.padding_mask]
    assert float(np.percentile(body, 1)) > -1100 and float(np.percentile(body, 99)) < 2000
    assert _hashes(folder) == before


@pytest.mark.slow
@pytest.mark.shared_data
def test_every_shared_series_reads_with_sensible_hu() -> None:
    roots = [*sorted(require_shared("fixtures").iterdir()), *sorted(require_shared("ct").iterdir())]
    for root in roots:
        for info in find_series(root).series:
            series = read_series(info)
            assert series.hu.shape == info.shape and series.info == info
            air = float(np.percentile(series.hu, 5))
            assert -3100 <= air <= -900, (root.name, air)
            assert float(series.hu.max()) < 4000, root.name
