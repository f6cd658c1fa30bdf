"""Inputs the reader fuzzer (and the hostile corpus) found, kept as plain tests.

Each input once escaped ``find_series``/``read_series`` as something other than a
``MeddenoiseError`` (a raw warning, a builtin exception) or was read wrongly.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.uid import ImplicitVRLittleEndian, JPEG2000Lossless

from meddenoise.dicom import find_series, read_series
from meddenoise.errors import SeriesError
from tests.dicom.synthetic import make_series, truncate


def test_nul_in_the_transfer_syntax_uid_never_escapes_as_a_raw_warning(tmp_path: Path) -> None:
    """Found by the fuzzer: the UID was first converted in read_series, outside any warning capture."""
    written = make_series(tmp_path, n_slices=2, nested=False)
    data = written.paths[0].read_bytes()
    written.paths[0].write_bytes(data.replace(b"1.2.840.10008.1.2.1\x00", b"\x00.2.840.10008.1.2.1\x00", 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (info,) = find_series(tmp_path).series
        try:
            assert read_series(info).hu.shape == (2, 128, 128)
        except SeriesError as err:  # either outcome is fine; a raw warning is not
            assert "transfer syntax" in str(err)


@pytest.mark.parametrize("value", [[-2000, 5], "abc"])
def test_unusable_pixel_padding_value_names_the_tag(tmp_path: Path, value: object) -> None:
    """A padding value that is not one integer was an uncaught TypeError/ValueError in read_series."""
    written = make_series(tmp_path, n_slices=2, nested=False, padding_value=-2000)
    ds = dcmread(written.paths[1])
    vr = "LO" if isinstance(value, str) else "SS"
    ds[0x00280120] = DataElement(0x00280120, vr, value)
    ds.save_as(written.paths[1])
    info = find_series(tmp_path).series[0]
    with pytest.raises(
        SeriesError, match=r"PixelPaddingValue \(0028,0120\) = .* is not a usable padding value"
    ):
        read_series(info)


def test_a_bare_dataset_without_preamble_or_meta_is_decoded(tmp_path: Path) -> None:
    """Found by the corpus: discovery accepted a preamble-less file, decoding then refused it."""
    written = make_series(tmp_path, n_slices=2, nested=False)
    for path in written.paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True)
        data = path.read_bytes()[132:]
        meta_end = 12 + int.from_bytes(data[8:12], "little")
        path.write_bytes(data[meta_end:])
    np.testing.assert_array_equal(read_series(find_series(tmp_path).series[0]).hu, written.hu)


def test_pydicom_log_records_are_logged_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """pydicom both warns and logs (decoder failures with a traceback): one line each, ours."""
    written = make_series(tmp_path, n_slices=3, nested=False, transfer_syntax=JPEG2000Lossless)
    truncate(written.paths[2], drop_bytes=3000)
    with caplog.at_level(logging.WARNING):
        read_series(find_series(tmp_path, allow_gaps=True).series[0])
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    ours = [r.getMessage() for r in caplog.records if r.name == "meddenoise.dicom.header"]
    assert ours and all(m.startswith(str(written.paths[2])) and "\n" not in m for m in ours)
    assert len(ours) == len(set(ours)) and not any(r.exc_info for r in caplog.records)


def test_an_invalid_series_number_never_escapes_as_a_raw_warning(tmp_path: Path) -> None:
    """Found by the fuzzer: SeriesNumber '0.0' (not an IS) was converted, and warned, while sorting."""
    written = make_series(tmp_path, n_slices=2, nested=False)
    for path in written.paths:
        ds = dcmread(path)
        ds[0x00200011] = DataElement(0x00200011, "IS", "0.0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path)
    make_series(tmp_path / "other", n_slices=1, nested=False)  # two series, so they are sorted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan = find_series(tmp_path)
    assert len(scan.series) == 2
