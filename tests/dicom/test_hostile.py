"""Hostile input, class by class: one bad file or series never stops the others (issue 14).

Each case plants one defect in a copy of real slices (``pydicom.examples.ct`` through
``make_series``, or the shared dcmqi fixture) next to a good series, and checks the exact outcome:
what is skipped or fatal, with which ProblemCode, that the message names the file, the tag and the
value on one line, that the good series is still found and read, and that no input file changed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from meddenoise.dicom import (
    Problem,
    ProblemCode,
    ScanResult,
    SeriesInfo,
    TooLargeError,
    find_series,
    read_series,
    shown_path,
)
from meddenoise.errors import SeriesError
from tests.conftest import require_shared
from tests.dicom.hostile import (
    POSITION_ELEMENT,
    cut_before,
    make_long_path,
    nest_sequences,
    rewrite,
    rewrite_as_text,
    tree_hashes,
)
from tests.dicom.synthetic import SyntheticSeries, make_enhanced_series, make_series, truncate

BS = "\\"  # the DICOM multi-value separator, as messages show it


@dataclass(frozen=True)
class Pair:
    """A good series and a series to break, side by side under ``root``."""

    root: Path
    good: SyntheticSeries
    bad: SyntheticSeries


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    good = make_series(tmp_path / "good", n_slices=3, nested=False, seed=1)
    bad = make_series(tmp_path / "bad", n_slices=4, nested=False, seed=2)
    return Pair(tmp_path, good, bad)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail (instead of hanging the suite) when a scan blocks for more than 20 seconds."""

    def _timeout(signum: int, frame: object) -> None:
        raise TimeoutError("the scan blocked")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def scan(root: Path, *, allow_gaps: bool = False) -> ScanResult:
    """find_series, proving that it changed no file under ``root``."""
    before = tree_hashes(root)
    result = find_series(root, allow_gaps=allow_gaps)
    assert tree_hashes(root) == before, "scanning must never modify the input"
    return result


def by_uid(result: ScanResult, uid: str) -> SeriesInfo:
    (info,) = [s for s in result.series if s.series_uid == uid]
    return info


def assert_good_read(result: ScanResult, pair: Pair) -> None:
    """The good series beside the bad one is found, valid and read exactly (input unchanged)."""
    info = by_uid(result, pair.good.series_uid)
    assert info.fatal_problems == () and info.issues == ()
    before = tree_hashes(pair.root)
    np.testing.assert_array_equal(read_series(info).hu, pair.good.hu)
    assert tree_hashes(pair.root) == before


def skipped_of(result: ScanResult, path: Path) -> Problem:
    (problem,) = [s.problem for s in result.skipped_files if s.path == path]
    return problem


def one_line(text: str) -> bool:
    return "\n" not in text and "\r" not in text and "\x1b" not in text


# ------------------------------------------------ values that place a slice: the file is skipped

PLACEMENT = [
    ("ImagePositionPatient", ["nan", "0", "0"], f"'nan{BS}0{BS}0' is not a usable position"),
    ("ImagePositionPatient", ["0", "inf", "0"], f"'0{BS}inf{BS}0' is not a usable position"),
    ("ImagePositionPatient", ["0", "0", "1e300"], f"'0{BS}0{BS}1e300' is not a usable position"),
    ("ImagePositionPatient", ["0", "0"], f"'0{BS}0' is not a usable position"),
    ("ImageOrientationPatient", ["nan", "0", "0", "0", "1", "0"], "is not a usable orientation"),
    ("ImageOrientationPatient", ["0"] * 6, "is not two orthogonal unit vectors"),
    ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], "is not two orthogonal unit vectors"),
    ("PixelSpacing", ["nan", "0.5"], f"'nan{BS}0.5' is not a usable pixel spacing"),
    ("PixelSpacing", ["0", "0.5"], f"'0{BS}0.5' is not a usable pixel spacing"),
    ("PixelSpacing", ["-0.5", "0.5"], f"'-0.5{BS}0.5' is not a usable pixel spacing"),
    ("Rows", 0, "'0' is not a usable image size"),
    ("Columns", 0, "'0' is not a usable image size"),
]
TAGS = {
    "ImagePositionPatient": "(0020,0032)",
    "ImageOrientationPatient": "(0020,0037)",
    "PixelSpacing": "(0028,0030)",
    "Rows": "(0028,0010)",
    "Columns": "(0028,0011)",
}


@pytest.mark.parametrize(("keyword", "value", "expected"), PLACEMENT)
def test_unplaceable_slice_is_skipped_and_its_series_is_incomplete(
    pair: Pair, keyword: str, value: object, expected: str
) -> None:
    broken = pair.bad.paths[1]
    rewrite(broken, **{keyword: value})
    result = scan(pair.root)
    problem = skipped_of(result, broken)
    assert problem.code == ProblemCode.BAD_HEADER
    assert problem.message.startswith(f"no usable geometry: {keyword} {TAGS[keyword]} = ")
    assert problem.message.endswith(expected) and one_line(problem.message)
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.shape[0] == 3 and bad.has_problem(ProblemCode.INCOMPLETE, fatal=True)
    assert bad.has_problem(ProblemCode.GAP, fatal=True)  # the missing middle slice leaves a gap
    assert f"{broken.name} skipped: {problem.message}" in bad.fatal_problems
    with pytest.raises(SeriesError, match=f"{broken.name} skipped: no usable geometry"):
        read_series(bad)
    assert_good_read(result, pair)


def test_non_numeric_position_is_skipped_naming_tag_and_value(pair: Pair) -> None:
    broken = pair.bad.paths[0]
    rewrite_as_text(broken, 0x00200032, f"abc{BS}0{BS}0")
    result = scan(pair.root)
    assert skipped_of(result, broken).message == (
        f"no usable geometry: ImagePositionPatient (0020,0032) = 'abc{BS}0{BS}0' is not a usable position"
    )
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.problem_codes == {ProblemCode.INCOMPLETE} and bad.shape[0] == 3  # an end slice: no gap
    assert_good_read(result, pair)


# ------------------------------------------------ values that make HU: the series is refused

HU_VALUES = [
    ("RescaleSlope", "0", "RescaleSlope (0028,1053) = '0' is not a usable slope"),
    ("RescaleSlope", "nan", "RescaleSlope (0028,1053) = 'nan' is not a usable slope"),
    ("RescaleIntercept", "inf", "RescaleIntercept (0028,1052) = 'inf' is not a usable intercept"),
    ("BitsStored", 17, "BitsStored (0028,0101) = '17' is more than BitsAllocated (0028,0100) = '16'"),
    ("PixelRepresentation", 2, "PixelRepresentation (0028,0103) = '2' is not 0 (unsigned) or 1 (signed)"),
    ("BitsAllocated", 12, "BitsAllocated (0028,0100) = '12' is not 8, 16 or 32"),
]


@pytest.mark.parametrize(("keyword", "value", "expected"), HU_VALUES)
def test_unusable_pixel_header_value_is_fatal_naming_file_tag_and_value(
    pair: Pair, keyword: str, value: object, expected: str
) -> None:
    broken = pair.bad.paths[2]
    rewrite(broken, **{keyword: value})
    _assert_bad_header(pair, broken, expected)


@pytest.mark.parametrize(
    ("tag", "text", "expected"),
    [
        (0x00281053, "abc", "RescaleSlope (0028,1053) = 'abc' is not a usable slope"),
        (0x00281052, "abc", "RescaleIntercept (0028,1052) = 'abc' is not a usable intercept"),
        (0x00280008, "abc", "NumberOfFrames (0028,0008) = 'abc' is not a usable frame count"),
    ],
)
def test_non_numeric_pixel_header_value_is_fatal(pair: Pair, tag: int, text: str, expected: str) -> None:
    broken = pair.bad.paths[2]
    rewrite_as_text(broken, tag, text)
    _assert_bad_header(pair, broken, expected)


def _assert_bad_header(pair: Pair, broken: Path, expected: str) -> None:
    result = scan(pair.root)
    assert result.skipped == ()
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.shape[0] == 4 and bad.problem_codes == {ProblemCode.BAD_HEADER}
    assert bad.fatal_problems == (f"{broken.name}: {expected}",)
    with pytest.raises(SeriesError) as err:
        read_series(bad)
    assert str(err.value) == f"series {bad.series_uid}: {broken.name}: {expected}"
    assert_good_read(result, pair)


def test_enhanced_ct_frame_with_zero_slope_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "enhanced"
    make_enhanced_series(path, n_frames=4, slopes=[1, 1, 0, 1])
    info = scan(tmp_path).series[0]
    assert info.problem_codes == {ProblemCode.BAD_HEADER}
    (message,) = info.fatal_problems
    assert message.startswith("enhanced: RescaleSlope (0028,1053) = '0")
    assert message.endswith("is not a usable slope")


@pytest.mark.parametrize(
    ("frames", "code", "reason"),
    [
        (2, ProblemCode.BAD_HEADER, "no usable geometry: NumberOfFrames (0028,0008) = '2' but "),
        (1_000_000, ProblemCode.TRUNCATED, "pixel data truncated (131072 of 32768000000 bytes)"),
    ],
)
def test_enhanced_ct_frame_count_that_lies_is_skipped(
    tmp_path: Path, frames: int, code: ProblemCode, reason: str
) -> None:
    path = tmp_path / "enhanced"
    written = make_enhanced_series(path, n_frames=4)
    rewrite(path, NumberOfFrames=frames)
    result = scan(tmp_path)
    assert result.series == ()
    (skipped,) = result.skipped_files
    assert skipped.problem.code == code and skipped.problem.message.startswith(reason)
    assert skipped.series_uid == written.series_uid


def test_signed_pixels_labelled_unsigned_are_refused_when_read(pair: Pair) -> None:
    good = make_series(pair.root / "padded", n_slices=2, nested=False, padding_value=-2000, seed=3)
    broken = good.paths[1]
    rewrite(broken, PixelRepresentation=0, PixelPaddingValue=None)  # -2000 now reads as 63,536
    info = by_uid(scan(pair.root), good.series_uid)
    assert info.fatal_problems == ()  # the header alone is legal
    with pytest.raises(SeriesError) as err:
        read_series(info)
    message = str(err.value)
    assert message.startswith(f"{broken.name}: HU up to 62512 (more than 32767) from ")
    assert "PixelRepresentation (0028,0103) = '0'" in message and one_line(message)


def test_unsigned_ge_style_data_with_intercept_minus_1024_reads(pair: Pair) -> None:
    for path in pair.good.paths:
        rewrite(path, PixelRepresentation=0, BitsStored=12, HighBit=11)
    result = scan(pair.root)
    assert_good_read(result, pair)


# ------------------------------------------------ sizes are checked before anything is allocated


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    written = make_series(tmp_path, n_slices=2, nested=False, transfer_syntax=JPEG2000Lossless)
    for path in written.paths:  # compressed, so the file size does not betray the lie
        rewrite(path, Rows=65535, Columns=65535)
    info = scan(tmp_path).series[0]
    assert info.fatal_problems == () and info.shape == (2, 65535, 65535)
    with pytest.raises(TooLargeError) as err:
        read_series(info)
    message = str(err.value)
    assert message.startswith(f"{shown_path(info.slices[0].path)}: Rows (0028,0010) × Columns (0028,0011)")
    assert "65535 × 65535 × 1 declares 8.0 GiB of pixels, more than the limit of 2.0 GiB" in message


def test_size_limits_can_be_set_per_read(pair: Pair) -> None:
    info = by_uid(scan(pair.root), pair.good.series_uid)
    with pytest.raises(
        TooLargeError, match=r"declares 32\.0 KiB of pixels, more than the limit of 1000 bytes$"
    ):
        read_series(info, max_decoded_bytes=1000)
    with pytest.raises(TooLargeError, match=r"a volume of 3 × 128 × 128 voxels needs 240\.0 KiB, more than"):
        read_series(info, max_volume_bytes=1000)
    assert read_series(info, max_decoded_bytes=32768).hu.shape == (3, 128, 128)


# ------------------------------------------------ series-level geometry never raises


def test_all_slices_at_one_position_is_a_fatal_duplicate_not_a_crash(pair: Pair) -> None:
    for path in pair.bad.paths:
        rewrite(path, ImagePositionPatient=["0", "0", "0"])
    result = scan(pair.root)
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.problem_codes == {ProblemCode.DUPLICATE_POSITION} and bad.tilt_deg == 0.0
    assert bad.fatal_problems[0].startswith("duplicate slice position (0, 0, 0) mm in ")
    assert_good_read(result, pair)


def test_a_gap_is_fatal_unless_allowed(pair: Pair) -> None:
    pair.bad.paths[2].unlink()
    assert by_uid(scan(pair.root), pair.bad.series_uid).has_problem(ProblemCode.GAP, fatal=True)
    bad = by_uid(scan(pair.root, allow_gaps=True), pair.bad.series_uid)
    assert bad.has_problem(ProblemCode.GAP, fatal=False) and bad.fatal_problems == ()
    np.testing.assert_array_equal(read_series(bad).hu, pair.bad.hu[[0, 1, 3]])


# ------------------------------------------------ files that cannot be parsed


def test_sequences_nested_thousands_deep_skip_one_file(pair: Pair) -> None:
    broken = pair.bad.paths[3]  # the end slice: no gap betrays it, only the skipped file
    nest_sequences(broken, depth=5000)
    result = scan(pair.root)
    skipped = next(s for s in result.skipped_files if s.path == broken)
    assert skipped.problem.code == ProblemCode.UNREADABLE
    assert skipped.problem.message.startswith("unreadable DICOM header: RecursionError")
    assert skipped.series_uid == pair.bad.series_uid  # recovered without pydicom
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.shape[0] == 3 and bad.problem_codes == {ProblemCode.INCOMPLETE}
    assert bad.fatal_problems == (f"{broken.name} skipped: {skipped.problem.message}",)
    assert_good_read(result, pair)
    allowed = by_uid(scan(pair.root, allow_gaps=True), pair.bad.series_uid)
    assert allowed.fatal_problems == () and allowed.has_problem(ProblemCode.INCOMPLETE, fatal=False)
    np.testing.assert_array_equal(read_series(allowed).hu, pair.bad.hu[:3])


def test_header_cut_short_leaves_its_series_incomplete(pair: Pair) -> None:
    broken = pair.bad.paths[0]
    cut_before(broken, POSITION_ELEMENT)
    result = scan(pair.root)
    skipped = next(s for s in result.skipped_files if s.path == broken)
    assert skipped.series_uid == pair.bad.series_uid
    assert skipped.problem.message == "no usable geometry: no valid ImagePositionPatient"
    assert by_uid(result, pair.bad.series_uid).problem_codes == {ProblemCode.INCOMPLETE}
    assert_good_read(result, pair)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", ProblemCode.NOT_DICOM),
        (b"\0" * 128 + b"DICM" + bytes(range(256)) * 8, ProblemCode.NOT_CT),  # pydicom is lenient
        (b"\0" * 128 + b"DICM\x02\x00\x10\x00UI\xff\xff", ProblemCode.NOT_CT),
    ],
    ids=["empty", "garbage-after-preamble", "meta-element-longer-than-file"],
)
def test_garbage_files_are_skipped(pair: Pair, content: bytes, code: ProblemCode) -> None:
    junk = pair.bad.paths[0].parent / "junk"
    junk.write_bytes(content)
    result = scan(pair.root)
    skipped = next(s for s in result.skipped_files if s.path == junk)
    assert skipped.problem.code == code and skipped.series_uid == "" and one_line(skipped.problem.message)
    assert by_uid(result, pair.bad.series_uid).issues == ()
    assert_good_read(result, pair)


def test_multiframe_ct_image_storage_is_refused_naming_the_frames(pair: Pair) -> None:
    broken = pair.bad.paths[1]
    ds = dcmread(broken)
    rewrite(broken, NumberOfFrames=3, PixelData=ds.PixelData * 3)
    result = scan(pair.root)
    bad = by_uid(result, pair.bad.series_uid)
    assert bad.problem_codes == {ProblemCode.MULTIFRAME} and bad.shape[0] == 4
    assert bad.fatal_problems == (
        f"{broken.name}: NumberOfFrames (0028,0008) = '3' in a CT Image Storage file; "
        "multi-frame CT Image Storage is not supported",
    )
    assert_good_read(result, pair)


# ------------------------------------------------ what is in the tree besides files


def test_a_named_pipe_is_skipped_without_opening_it(pair: Pair, no_hang: None) -> None:
    fifo = pair.bad.paths[0].parent / "pipe"
    os.mkfifo(fifo)
    result = scan(pair.root)
    assert skipped_of(result, fifo) == Problem(ProblemCode.NOT_A_FILE, "not a regular file (a named pipe)")
    assert by_uid(result, pair.bad.series_uid).issues == ()
    assert_good_read(result, pair)
    alone = find_series(fifo)
    assert alone.series == () and alone.skipped == ((fifo, "not a regular file (a named pipe)"),)


def test_sockets_and_devices_are_skipped(pair: Pair, no_hang: None) -> None:
    folder = pair.bad.paths[0].parent
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "sock"))
        (folder / "null").symlink_to("/dev/null")
        result = scan(pair.root)
    finally:
        server.close()
    assert skipped_of(result, folder / "sock").message == "not a regular file (a socket)"
    assert skipped_of(result, folder / "null").message == "not a regular file (a character device)"
    assert_good_read(result, pair)


def test_folder_link_loops_end_and_each_series_is_found_once(pair: Pair) -> None:
    (pair.root / "bad" / "loop").symlink_to("..")
    (pair.root / "zz-again").symlink_to(pair.root / "good")
    result = scan(pair.root)
    assert sorted(s.series_uid for s in result.series) == sorted([pair.good.series_uid, pair.bad.series_uid])
    assert {s.path.name: s.problem.code for s in result.skipped_files} == {
        "loop": ProblemCode.SEEN_BEFORE,
        "zz-again": ProblemCode.SEEN_BEFORE,
    }
    assert by_uid(result, pair.bad.series_uid).issues == ()
    assert_good_read(result, pair)


def test_file_links_loop_and_duplicates_are_skipped(pair: Pair) -> None:
    folder = pair.bad.paths[0].parent
    (folder / "self").symlink_to(folder / "self")
    (folder / "zz-copy").symlink_to(pair.bad.paths[0])
    result = scan(pair.root)
    loop = skipped_of(result, folder / "self")
    assert loop.code == ProblemCode.UNREADABLE and "symbolic links" in loop.message
    duplicate = skipped_of(result, folder / "zz-copy")
    assert duplicate == Problem(ProblemCode.SEEN_BEFORE, f"the same file as {pair.bad.paths[0]}, read once")
    assert by_uid(result, pair.bad.series_uid).issues == ()
    assert_good_read(result, pair)


def test_paths_longer_than_path_max_are_reported_not_lost(pair: Pair) -> None:
    deep = make_long_path(pair.root / "bad")
    result = scan(pair.root)
    unreachable = [s for s in result.skipped_files if len(str(s.path)) > 4000]
    assert unreachable and all(s.problem.code == ProblemCode.UNREADABLE for s in unreachable)
    assert "File name too long" in unreachable[0].problem.message
    assert str(unreachable[0].path) in str(deep) or str(deep).startswith(str(unreachable[0].path))
    assert_good_read(result, pair)
    alone = find_series(deep)
    assert alone.series == () and "File name too long" in alone.skipped[0][1]


def test_hostile_file_names_are_escaped_in_every_message(pair: Pair) -> None:
    evil = pair.bad.paths[1].with_name("evil\n\x1b[31mred\r.dcm")
    shutil.move(pair.bad.paths[1], evil)
    rewrite(evil, RescaleSlope="0")
    (pair.root / "bad" / "note\nx.txt").write_text("not DICOM")
    result = scan(pair.root)
    bad = by_uid(result, pair.bad.series_uid)
    (message,) = bad.fatal_problems
    assert message == "evil\\n\\x1b[31mred\\r.dcm: RescaleSlope (0028,1053) = '0' is not a usable slope"
    with pytest.raises(SeriesError) as err:
        read_series(bad)
    assert one_line(str(err.value))
    assert shown_path(pair.root / "note\nx.txt").endswith("note\\nx.txt")
    assert_good_read(result, pair)


def test_undecodable_file_names_are_escaped() -> None:
    assert shown_path(Path(os.fsdecode(b"a\xffb"))) == "a\\xffb"
    assert shown_path("tab\there\u202e") == "tab\\there\\u202e"


# ------------------------------------------------ library warnings go to logging, once, escaped


def test_pydicom_warnings_are_logged_not_printed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    written = make_series(tmp_path, n_slices=4, nested=False, transfer_syntax=JPEG2000Lossless)
    broken = written.paths[0].with_name("warn\nme")
    shutil.move(written.paths[0], broken)
    truncate(broken, drop_bytes=3000)  # pydicom warns: end of file before the sequence delimiter
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        series = read_series(scan(tmp_path, allow_gaps=True).series[0])
    assert [str(w.message) for w in caught] == []
    assert series.info.problem_codes == {ProblemCode.INCOMPLETE} and series.hu.shape[0] == 3
    ours = [r.getMessage() for r in caplog.records if r.name == "meddenoise.dicom.header"]
    assert ours and all(one_line(m) and m.startswith(shown_path(broken) + ": ") for m in ours)
    assert "End of file reached before delimiter" in ours[0]
    assert len(ours) == len(set(ours))


# ------------------------------------------------ the same classes on real scanner files


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("keyword", "value", "code"),
    [
        ("ImagePositionPatient", ["nan", "0", "0"], ProblemCode.INCOMPLETE),
        ("RescaleSlope", "0", ProblemCode.BAD_HEADER),
        ("PixelSpacing", ["0", "0"], ProblemCode.INCOMPLETE),
    ],
)
def test_real_fixture_with_one_bad_slice(
    tmp_path: Path, keyword: str, value: object, code: ProblemCode
) -> None:
    source = require_shared("fixtures/dcmqi-ct-3slice")
    copy = tmp_path / "dcmqi"
    shutil.copytree(source, copy)
    beside = make_series(tmp_path / "beside", n_slices=2, nested=False)
    before = tree_hashes(source)
    files = sorted(copy.rglob("*.dcm"))
    rewrite(files[1], **{keyword: value})
    result = scan(tmp_path)
    (real,) = [s for s in result.series if s.series_uid != beside.series_uid]
    assert code in real.problem_codes and real.fatal_problems
    assert any(files[1].name in p for p in real.fatal_problems)
    np.testing.assert_array_equal(read_series(by_uid(result, beside.series_uid)).hu, beside.hu)
    assert tree_hashes(source) == before
