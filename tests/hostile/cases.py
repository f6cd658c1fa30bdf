"""The hostile corpus: one table of cases, each building its input tree and the exact outcome expected.

A case's ``build(root)`` writes its input under ``root / "in"`` (from ``pydicom.examples.ct`` through
``make_series``, pydicom's test files or the shared fixtures) and returns an :class:`Expect`: the exit
code, the ``error:`` lines (one per refused series, each naming the series, the file and the
problem), the series that must be written and with how many slices, and the extra flags.
``tests/hostile/test_corpus.py`` runs every case through the real CLI (``denoise``), and the cases
marked ``batch`` again through ``meddenoise batch`` in one mixed tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from meddenoise.dicom.derive import is_valid_uid
from tests.conftest import require_shared
from tests.dicom.hostile import (
    POSITION_ELEMENT,
    cut_before,
    make_long_path,
    nest_sequences,
    rewrite,
    rewrite_as_text,
)
from tests.dicom.synthetic import (
    CORONAL,
    make_enhanced_series,
    make_series,
    oblique,
    truncate,
)

BS = "\\"


@dataclass(frozen=True)
class Expect:
    """The exact outcome of one case.

    ``refused`` maps each series that must be refused to the words its ``error:`` line holds (the
    line also names the series); ``errors`` are further ``error:`` lines not tied to a series (no
    series at all, a bad option). ``written`` maps each source SeriesInstanceUID that must be
    written to its slice count; nothing else may appear in OUT. ``usage`` lists words of a usage
    error (exit 2). ``volume_output`` says OUT is a volume file that exists exactly when the run
    succeeded. ``batch`` puts the case into the mixed tree that ``meddenoise batch`` runs.
    """

    code: int
    refused: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    errors: tuple[tuple[str, ...], ...] = ()
    written: Mapping[str, int] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    usage: tuple[str, ...] = ()
    stdout: tuple[str, ...] = ()
    input: str = "in"
    output: str = "out"
    volume_output: bool = False
    batch: bool = False


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    build: Callable[[Path], Expect]
    shared: bool = False
    xfail: str = ""
    """Why the case fails today (a bug outside ``meddenoise/dicom`` with a proposed patch); strict."""


def output_folder_name(series_uid: str) -> str:
    """The folder a derived series of ``series_uid`` goes to (see dicom.derived_series_folder)."""
    if is_valid_uid(series_uid):
        return f"{series_uid}-denoised"
    return "series-" + hashlib.sha256(series_uid.encode("utf-8", "replace")).hexdigest()[:16] + "-denoised"


# ------------------------------------------------------------------------------------ helpers


def good(root: Path, *, n: int = 3, seed: int = 1, name: str = "good", **kw: object):  # type: ignore[no-untyped-def]
    return make_series(root / "in" / name, n_slices=n, nested=False, seed=seed, **kw)  # type: ignore[arg-type]


def bad(root: Path, *, n: int = 4, seed: int = 2, **kw: object):  # type: ignore[no-untyped-def]
    return make_series(root / "in" / "bad", n_slices=n, nested=False, seed=seed, **kw)  # type: ignore[arg-type]


def with_good(
    root: Path, *, code: int, refused: Mapping[str, tuple[str, ...]] | None = None, **kw: object
) -> Expect:
    """A good series beside the hostile input: it must be written whatever happens to the other."""
    g = good(root, seed=11, name="zz-good")
    written = dict(kw.pop("written", {}))  # type: ignore[call-overload]
    written[g.series_uid] = 3
    return Expect(code=code, refused=refused or {}, written=written, **kw)  # type: ignore[arg-type]


def refuse_one(root: Path, mutate: Callable[[tuple[Path, ...]], object], *needles: str, n: int = 4) -> Expect:
    """A bad series (mutated by ``mutate``) refused with ``needles``, beside a good one written."""
    b = bad(root, n=n)
    mutate(b.paths)
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def resize(path: Path, size: int) -> None:
    ds = dcmread(path)
    pixels = np.ascontiguousarray(ds.pixel_array[:size, :size])
    ds.Rows, ds.Columns = size, size
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)


def relabel_syntax(paths: tuple[Path, ...], syntax: str) -> None:
    for path in paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.save_as(path, implicit_vr=False, little_endian=True)


def set_raw(path: Path, keyword: str, vr: str, value: object) -> None:
    """Store ``value`` under ``keyword`` with ``vr``, whatever pydicom thinks of it."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None
    ds = dcmread(path)
    ds[tag] = DataElement(tag, vr, value)
    ds.save_as(path)


def copy_shared(root: Path, relative: str, *, files: int | None = None) -> tuple[Path, ...]:
    source = require_shared(relative)
    chosen = sorted(p for p in source.rglob("*") if p.is_file())[:files]
    target = root / "in" / Path(relative).name
    target.mkdir(parents=True)
    for path in chosen:
        shutil.copy2(path, target / path.name)
    return tuple(sorted(target.iterdir()))


def uid_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


# ------------------------------------------------------------------------------------ structure


def s_empty_file(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "empty.dcm").write_bytes(b"")
    return with_good(root, code=0, stdout=("empty.dcm: not DICOM",))


def s_garbage_after_preamble(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "junk").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 8)
    return with_good(root, code=0, stdout=("junk",))


def s_meta_longer_than_file(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "short-meta").write_bytes(b"\0" * 128 + b"DICM\x02\x00\x10\x00UI\xff\xff")
    return with_good(root, code=0, stdout=("short-meta",))


def s_nested_sequences(root: Path) -> Expect:
    b = bad(root)
    nest_sequences(b.paths[3], depth=5000)
    return with_good(
        root,
        code=1,
        refused={b.series_uid: (f"{b.paths[3].name} skipped: unreadable DICOM header: RecursionError",)},
        batch=True,
    )


def s_header_cut_short(root: Path) -> Expect:
    return refuse_one(
        root,
        lambda p: cut_before(p[0], POSITION_ELEMENT),
        "skipped: no usable geometry: no valid ImagePositionPatient",
    )


def s_truncated_middle(root: Path) -> Expect:
    b = bad(root)
    truncate(b.paths[1], drop_bytes=1000)
    needles = (f"{b.paths[1].name} skipped: pixel data truncated", "gap of")
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def s_truncated_end(root: Path) -> Expect:
    b = bad(root)
    truncate(b.paths[3], drop_bytes=600)
    return with_good(
        root,
        code=1,
        refused={b.series_uid: (f"{b.paths[3].name} skipped: pixel data truncated",)},
        batch=True,
    )


def s_truncated_end_allow_gaps(root: Path) -> Expect:
    b = bad(root)
    truncate(b.paths[3], drop_bytes=600)
    return with_good(root, code=0, written={b.series_uid: 3}, args=("--allow-gaps",))


def s_no_pixel_data(root: Path) -> Expect:
    b = bad(root)
    ds = dcmread(b.paths[1])
    del ds.PixelData
    ds.save_as(b.paths[1])
    return with_good(
        root, code=1, refused={b.series_uid: (f"no pixel data in {b.paths[1].name}",)}, batch=True
    )


def s_dicomdir(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    shutil.copy(get_testdata_file("DICOMDIR"), root / "in" / "DICOMDIR")  # type: ignore[arg-type]
    return with_good(root, code=0, stdout=("DICOMDIR (a media directory, not an image)",))


def s_only_mr(root: Path) -> Expect:
    make_series(root / "in", n_slices=2, modality="MR")
    return Expect(code=1, errors=(("no CT series in", "found only MR"),))


def s_multiframe_ct_image_storage(root: Path) -> Expect:
    def mutate(paths: tuple[Path, ...]) -> None:
        ds = dcmread(paths[1])
        rewrite(paths[1], NumberOfFrames=3, PixelData=ds.PixelData * 3)

    return refuse_one(root, mutate, "NumberOfFrames (0028,0008) = '3'", "multi-frame CT Image Storage")


def s_enhanced_ct_good(root: Path) -> Expect:
    """Enhanced CT is read frame by frame, but the writer refuses it, by name (not silently)."""
    e = make_enhanced_series(root / "in" / "enhanced.dcm", n_frames=3)
    return with_good(root, code=1, refused={e.series_uid: ("multi-frame",)}, batch=True)


def s_enhanced_ct_frames_lie(root: Path) -> Expect:
    """The only file of its series is skipped: the series is lost, and that must fail the run."""
    e = make_enhanced_series(root / "in" / "enhanced.dcm", n_frames=4)
    rewrite(e.paths[0], NumberOfFrames=2)
    return with_good(root, code=1, errors=((e.series_uid, "NumberOfFrames (0028,0008) = '2'"),))


def s_no_series_uid(root: Path) -> Expect:
    b = bad(root, n=2)
    for path in b.paths:
        rewrite(path, SeriesInstanceUID=None)
    return with_good(root, code=0, stdout=("no SeriesInstanceUID",))


def s_same_file_copied(root: Path) -> Expect:
    b = bad(root)
    shutil.copy(b.paths[1], b.paths[1].with_name("copy-of-slice"))
    return with_good(root, code=1, refused={b.series_uid: ("duplicate slice position",)}, batch=True)


def s_rgb_samples(root: Path) -> Expect:
    b = bad(root, n=2)
    for path in b.paths:
        rewrite(path, SamplesPerPixel=3)
    return with_good(root, code=0, stdout=("SamplesPerPixel 3, not a greyscale CT image",))


def s_no_preamble(root: Path) -> Expect:
    b = bad(root, n=3)
    for path in b.paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True)
        data = path.read_bytes()
        body = data[132:]
        meta_end = 12 + struct.unpack("<I", body[8:12])[0]  # skip group 0002, keep the bare dataset
        path.write_bytes(body[meta_end:])
    return with_good(root, code=0, written={b.series_uid: 3})


def s_implicit_vr(root: Path) -> Expect:
    b = bad(root, n=3, transfer_syntax="1.2.840.10008.1.2")
    return with_good(root, code=0, written={b.series_uid: 3})


def s_deflated(root: Path) -> Expect:
    b = bad(root, n=3)
    for path in b.paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(path)
    return with_good(root, code=0, written={b.series_uid: 3})


def s_element_length_past_end(root: Path) -> Expect:
    """A header element (before SeriesInstanceUID) claims 4 GB: pydicom cannot parse the file."""
    b = bad(root)
    data = b.paths[3].read_bytes()
    at = data.index(b"\x08\x00\x60\x00CS")  # Modality
    b.paths[3].write_bytes(data[:at] + b"\x08\x00\x60\x00UT\x00\x00\xff\xff\xff\x7f" + data[at + 8 :])
    return with_good(root, code=1, refused={b.series_uid: (b.paths[3].name, "skipped")}, batch=True)


# ------------------------------------------------------------------------------------ header values


def h_value(keyword: str, value: object, *needles: str, index: int = 1) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        b = bad(root)
        rewrite(b.paths[index], **{keyword: value})
        return with_good(root, code=1, refused={b.series_uid: (b.paths[index].name, *needles)}, batch=True)

    return build


def h_text(keyword: str, text: str, *needles: str) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        b = bad(root)
        from pydicom.datadict import tag_for_keyword

        rewrite_as_text(b.paths[2], tag_for_keyword(keyword), text)  # type: ignore[arg-type]
        return with_good(root, code=1, refused={b.series_uid: (b.paths[2].name, *needles)}, batch=True)

    return build


def h_signed_as_unsigned(root: Path) -> Expect:
    b = make_series(root / "in" / "bad", n_slices=2, nested=False, padding_value=-2000, seed=3)
    rewrite(b.paths[1], PixelRepresentation=0, PixelPaddingValue=None)
    needles = (b.paths[1].name, "HU up to 62512", "PixelRepresentation (0028,0103) = '0'")
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def h_rows_smaller_than_data(root: Path) -> Expect:
    """Rows/Columns say 64×64 but 128×128 pixels follow: the slice does not fit its series."""
    b = bad(root)
    rewrite(b.paths[1], Rows=64, Columns=64)
    return with_good(root, code=1, refused={b.series_uid: ("mixed image sizes", b.paths[1].name)}, batch=True)


def h_all_rows_larger_than_data(root: Path) -> Expect:
    b = bad(root, n=2)
    for path in b.paths:
        rewrite(path, Rows=256)
    return with_good(root, code=1, refused={b.series_uid: ("pixel data truncated",)}, batch=True)


def h_empty_series_uid(root: Path) -> Expect:
    b = bad(root, n=2)
    for path in b.paths:
        set_raw(path, "SeriesInstanceUID", "UI", "")
    return with_good(root, code=0, written={"": 2})


# ------------------------------------------------------------------------------------ geometry


def g_all_one_position(root: Path) -> Expect:
    def mutate(paths: tuple[Path, ...]) -> None:
        for path in paths:
            rewrite(path, ImagePositionPatient=["0", "0", "0"])

    return refuse_one(root, mutate, "duplicate slice position (0, 0, 0) mm")


def g_mixed_orientation(root: Path) -> Expect:
    axial = bad(root, n=2)
    make_series(
        root / "in" / "bad",
        orientation=CORONAL,
        positions_mm=[(0.0, 40.0, 0.0)],
        series_uid=axial.series_uid,
        nested=False,
        seed=5,
    )
    return with_good(root, code=1, refused={axial.series_uid: ("mixed orientations",)}, batch=True)


def g_mixed_sizes(root: Path) -> Expect:
    return refuse_one(root, lambda p: resize(p[2], 64), "mixed image sizes")


def g_mixed_spacing(root: Path) -> Expect:
    return refuse_one(root, lambda p: rewrite(p[2], PixelSpacing=["0.5", "0.5"]), "mixed pixel spacing")


def g_gap(root: Path) -> Expect:
    b = bad(root, n=5)
    b.paths[2].unlink()
    return with_good(
        root, code=1, refused={b.series_uid: ("gap of 5.00 mm", "1 slice(s) missing")}, batch=True
    )


def g_gap_allowed(root: Path) -> Expect:
    b = bad(root, n=5)
    b.paths[2].unlink()
    return with_good(root, code=0, written={b.series_uid: 4}, args=("--allow-gaps",))


def g_tilt(root: Path) -> Expect:
    b = bad(root, n=3, tilt_deg=20.0)
    return with_good(root, code=0, written={b.series_uid: 3})


def g_uneven(root: Path) -> Expect:
    b = bad(root, positions_mm=[(0, 0, 0), (0, 0, 2.5), (0, 0, 5.5), (0, 0, 8)])
    return with_good(root, code=0, written={b.series_uid: 4})


def g_single_slice(root: Path) -> Expect:
    b = bad(root, n=1)
    return with_good(root, code=0, written={b.series_uid: 1})


def g_oblique(root: Path) -> Expect:
    b = bad(root, n=3, orientation=oblique(30.0))
    return with_good(root, code=0, written={b.series_uid: 3})


def g_coronal(root: Path) -> Expect:
    b = bad(root, n=3, orientation=CORONAL)
    return with_good(root, code=0, written={b.series_uid: 3})


def g_position_tag_only_in_one(root: Path) -> Expect:
    return refuse_one(
        root, lambda p: rewrite(p[1], ImagePositionPatient=None), "skipped: no usable geometry", "gap of"
    )


# ------------------------------------------------------------------------------------ compression


def c_j2k_good(root: Path) -> Expect:
    b = bad(root, n=3, transfer_syntax=JPEG2000Lossless)
    return with_good(root, code=0, written={b.series_uid: 3})


def c_rle_good(root: Path) -> Expect:
    b = bad(root, n=3, transfer_syntax=RLELossless)
    return with_good(root, code=0, written={b.series_uid: 3})


def c_j2k_corrupt(root: Path) -> Expect:
    b = bad(root, transfer_syntax=JPEG2000Lossless)
    truncate(b.paths[1], drop_bytes=3000)
    return with_good(
        root,
        code=1,
        refused={b.series_uid: (f"{b.paths[1].name} skipped: cannot decode pixel data",)},
        batch=True,
    )


def c_j2k_garbage_stream(root: Path) -> Expect:
    b = bad(root, n=3, transfer_syntax=JPEG2000Lossless)
    data = bytearray(b.paths[2].read_bytes())
    start = data.index(b"\xff\x4f\xff\x51")  # the J2K codestream
    data[start + 40 : start + 400] = bytes(range(256)) + bytes(104)
    b.paths[2].write_bytes(bytes(data))
    return with_good(root, code=1, refused={b.series_uid: (b.paths[2].name,)}, batch=True)


def c_unknown_syntax(root: Path) -> Expect:
    b = bad(root, n=2, transfer_syntax=JPEG2000Lossless)
    relabel_syntax(b.paths, "1.3.6.1.4.1.5962.99.1.4")
    needles = ("cannot decode transfer syntax", "1.3.6.1.4.1.5962.99.1.4", "no decoder")
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def c_huge_declared_size(root: Path) -> Expect:
    b = bad(root, n=2, transfer_syntax=JPEG2000Lossless)
    for path in b.paths:
        rewrite(path, Rows=65535, Columns=65535)
    needles = ("65535 × 65535 × 1 declares 8.0 GiB of pixels, more than the limit of 2.0 GiB",)
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def c_j2k_labelled_native(root: Path) -> Expect:
    """A JPEG 2000 slice whose header says native pixels: its encapsulated bytes are not pixels."""
    b = bad(root, n=3, transfer_syntax=JPEG2000Lossless)
    data = bytearray(b.paths[1].read_bytes())
    at = data.index(b"1.2.840.10008.1.2.4.90")
    data[at : at + 22] = b"1.2.840.10008.1.2.1\0\0\0"  # same length: explicit VR little endian
    b.paths[1].write_bytes(bytes(data))
    return with_good(root, code=1, refused={b.series_uid: (b.paths[1].name,)}, batch=True)


def c_totalseg_j2k(root: Path) -> Expect:
    files = copy_shared(root, "fixtures/totalseg-example-ct-j2k", files=3)
    return with_good(root, code=0, written={uid_of(files[0]): 3})


def c_totalseg_j2k_one_corrupt(root: Path) -> Expect:
    files = copy_shared(root, "fixtures/totalseg-example-ct-j2k", files=3)
    truncate(files[2], drop_bytes=20000)
    return with_good(root, code=1, refused={uid_of(files[0]): (files[2].name, "skipped")}, batch=True)


def c_dcmqi_good(root: Path) -> Expect:
    files = copy_shared(root, "fixtures/dcmqi-ct-3slice")
    return with_good(root, code=0, written={uid_of(files[0]): 3})


def c_dcmqi_zero_slope(root: Path) -> Expect:
    files = copy_shared(root, "fixtures/dcmqi-ct-3slice")
    rewrite(files[1], RescaleSlope="0")
    needles = (files[1].name, "RescaleSlope (0028,1053) = '0' is not a usable slope")
    return with_good(root, code=1, refused={uid_of(files[0]): needles}, batch=True)


# ------------------------------------------------------------------------------------ file system


def f_fifo(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    os.mkfifo(root / "in" / "pipe")
    return with_good(root, code=0, stdout=("pipe: not a regular file (a named pipe)",))


def f_socket_and_device(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "null").symlink_to("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "in" / "sock"))
    server.close()
    return with_good(
        root, code=0, stdout=("not a regular file (a socket)", "not a regular file (a character device)")
    )


def f_folder_link_loop(root: Path) -> Expect:
    b = bad(root, n=3)
    (root / "in" / "bad" / "loop").symlink_to("..")
    return with_good(
        root, code=0, written={b.series_uid: 3}, stdout=("loop: a link to a folder already scanned",)
    )


def f_file_link_loop(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "self").symlink_to(root / "in" / "self")
    return with_good(root, code=0, stdout=("self: cannot open",))


def f_dangling_link_for_middle_slice(root: Path) -> Expect:
    b = bad(root)
    b.paths[1].unlink()
    b.paths[1].symlink_to(root / "nowhere")
    return with_good(root, code=1, refused={b.series_uid: ("gap of",)}, stdout=("cannot open",), batch=True)


def f_duplicate_link(root: Path) -> Expect:
    b = bad(root, n=3)
    (root / "in" / "zz-link").symlink_to(b.paths[0])
    return with_good(root, code=0, written={b.series_uid: 3}, stdout=("read once",))


def f_deep_path(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    make_long_path(root / "in")
    return with_good(root, code=0, stdout=("File name too long",))


def f_hostile_file_name(root: Path) -> Expect:
    b = bad(root)
    evil = b.paths[1].with_name("evil\n\x1b[31mred\r.dcm")
    shutil.move(b.paths[1], evil)
    rewrite(evil, RescaleSlope="0")
    needles = ("evil\\n\\x1b[31mred\\r.dcm: RescaleSlope (0028,1053) = '0' is not a usable slope",)
    return with_good(root, code=1, refused={b.series_uid: needles}, batch=True)


def f_undecodable_file_name(root: Path) -> Expect:
    b = bad(root)
    raw = os.fsencode(b.paths[2].parent) + b"/caf\xe9\xff"
    os.rename(b.paths[2], raw)
    rewrite(Path(os.fsdecode(raw)), RescaleSlope="nan")
    return with_good(
        root, code=1, refused={b.series_uid: ("caf\\xe9\\xff", "'nan' is not a usable slope")}, batch=True
    )


def f_stale_temp_in_input(root: Path) -> Expect:
    b = bad(root, n=3)
    stale = root / "in" / ".tmp-x-denoised-abc"
    make_series(stale, n_slices=2, nested=False, seed=7)
    return with_good(root, code=0, written={b.series_uid: 3})


def f_stale_temp_in_output(root: Path) -> Expect:
    b = bad(root, n=3)
    leftover = root / "out" / f".tmp-{output_folder_name(b.series_uid)}-k1ll3d"
    leftover.mkdir(parents=True)
    (leftover / "0001.dcm").write_bytes(b"half")
    return with_good(root, code=0, written={b.series_uid: 3})


def f_input_missing(root: Path) -> Expect:
    root.mkdir(parents=True, exist_ok=True)
    return Expect(code=1, errors=(("does not exist",),))


def f_input_empty(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    return Expect(code=1, errors=(("no files",),))


def f_input_single_file(root: Path) -> Expect:
    b = bad(root, n=1)
    return Expect(code=0, written={b.series_uid: 1}, input=str(b.paths[0].relative_to(root)))


def f_output_inside_input(root: Path) -> Expect:
    good(root)
    return Expect(code=1, errors=(("inside the input folder",),), output="in/sub/out")


def f_output_is_a_file(root: Path) -> Expect:
    g = good(root)
    (root / "out").write_text("a file")
    return Expect(code=1, refused={g.series_uid: ("cannot create output folder",)})


def f_only_text_files(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "notes.txt").write_text("hello")
    return Expect(code=1, errors=(("no DICOM files in", "1 files skipped"),))


# ------------------------------------------------------------------------------------ volumes


def _volume(path: Path, hu: np.ndarray, spacing: tuple[float, ...] = (0.7, 0.7, 2.5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))


def _ct_block(shape: tuple[int, ...] = (3, 32, 32)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[..., 8:24, 8:24] = 40
    return hu


def v_good_nifti(root: Path) -> Expect:
    _volume(root / "in" / "ct.nii.gz", _ct_block())
    return Expect(code=0, input="in/ct.nii.gz", output="out/ct.nii.gz", volume_output=True)


def v_nan(ext: str) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        hu = _ct_block().astype(np.float32)
        hu[1, 5, 5] = np.nan
        _volume(root / "in" / f"ct{ext}", hu)
        return Expect(
            code=1,
            errors=((f"ct{ext}", "NaN"),),
            input=f"in/ct{ext}",
            output=f"out/ct{ext}",
            volume_output=True,
        )

    return build


def v_4d(root: Path) -> Expect:
    _volume(root / "in" / "ct.nii.gz", np.zeros((2, 3, 16, 16), np.int16) - 1000, (1, 1, 1, 1))
    return Expect(
        code=1,
        errors=(("ct.nii.gz", "components per pixel"),),
        input="in/ct.nii.gz",
        output="out/ct.nii.gz",
        volume_output=True,
    )


def v_rgb(root: Path) -> Expect:
    path = root / "in" / "ct.mha"
    path.parent.mkdir(parents=True)
    image = sitk.GetImageFromArray(np.zeros((3, 16, 16, 3), np.uint8), isVector=True)
    sitk.WriteImage(image, str(path))
    return Expect(
        code=1, errors=(("ct.mha", "components"),), input="in/ct.mha", output="out/ct.mha", volume_output=True
    )


def v_garbage(root: Path) -> Expect:
    (root / "in").mkdir(parents=True)
    (root / "in" / "ct.nii.gz").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    return Expect(
        code=1,
        errors=(("ct.nii.gz", "cannot read"),),
        input="in/ct.nii.gz",
        output="out/ct.nii.gz",
        volume_output=True,
    )


def v_mha_huge_dims(root: Path) -> Expect:
    """A MetaImage header that declares 65535³ voxels over two bytes of data."""
    (root / "in").mkdir(parents=True)
    header = (
        "ObjectType = Image\nNDims = 3\nDimSize = 65535 65535 65535\nElementSpacing = 1 1 1\n"
        "ElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    )
    (root / "in" / "big.mha").write_bytes(header.encode() + b"xx")
    return Expect(
        code=1, errors=(("big.mha",),), input="in/big.mha", output="out/big.mha", volume_output=True
    )


def v_not_hu(root: Path) -> Expect:
    _volume(root / "in" / "ct.mha", np.full((3, 16, 16), 1e7, np.float32))
    return Expect(code=1, errors=(("ct.mha",),), input="in/ct.mha", output="out/ct.mha", volume_output=True)


def v_one_slice_2d(root: Path) -> Expect:
    _volume(root / "in" / "ct.mha", _ct_block((32, 32)), (0.7, 0.7))
    return Expect(code=0, input="in/ct.mha", output="out/ct.mha", volume_output=True)


# ------------------------------------------------------------------------------------ options


def o_option(
    *args: str, code: int = 1, needles: tuple[str, ...] = (), usage: tuple[str, ...] = ()
) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        good(root)
        errors = (needles,) if code == 1 else ()
        return Expect(code=code, args=args, errors=errors, usage=usage)

    return build


def o_also_save_on_tilt(root: Path) -> Expect:
    good(root)
    t = bad(root, n=3, tilt_deg=20.0)
    return Expect(
        code=1,
        args=("--also-save", "mha"),
        errors=((t.series_uid, "cannot be saved as a volume", "gantry tilt"),),
    )


def o_unknown_series(root: Path) -> Expect:
    g = good(root)
    return Expect(code=1, args=("--series", "1.2.3.4"), errors=(("unknown series 1.2.3.4", g.series_uid),))


def o_existing_output(root: Path) -> Expect:
    g = good(root)
    existing = root / "out" / output_folder_name(g.series_uid)
    existing.mkdir(parents=True)
    for k in range(3):
        (existing / f"{k + 1:04d}.dcm").write_bytes(b"x")
    return Expect(code=1, errors=((str(existing), "--overwrite"),), written={g.series_uid: 3})


# ------------------------------------------------------------------------------------ tag contents


def t_series_uid(value: str) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        b = bad(root, n=2, series_uid=value)
        return with_good(root, code=0, written={uid_of(b.paths[0]): 2})

    return build


def t_tag(keyword: str, value: str) -> Callable[[Path], Expect]:
    def build(root: Path) -> Expect:
        b = bad(root, n=2)
        for path in b.paths:
            rewrite(path, **{keyword: value})
        return with_good(root, code=0, written={b.series_uid: 2})

    return build


def t_refused_hostile_uid(root: Path) -> Expect:
    """A refused series whose UID holds a newline and an escape: its error stays on one line."""
    uid = "1.2.3\n\x1b[2Jevil"
    b = bad(root, n=4, series_uid=uid)
    rewrite(b.paths[1], RescaleSlope="0")
    return with_good(root, code=1, refused={uid: ("not a usable slope",)})


TRAVERSALS = {
    "uid-dotdot": "../../escaped",
    "uid-absolute": "/tmp/meddenoise-escaped",
    "uid-dot": "..",
    "uid-slashes": "1.2/../../3",
    "uid-nul": "1.2.3\x00/../x",
    "uid-long": "1." + "2" * 300,
    "uid-newline": "1.2\n3",
}


# ------------------------------------------------------------------------------------ the table


def _cases() -> list[Case]:
    c: list[Case] = []

    def add(category: str, id_: str, build: Callable[[Path], Expect], shared: bool = False) -> None:
        c.append(Case(id_, category, build, shared))

    for id_, build in [
        ("empty-file", s_empty_file),
        ("garbage-after-preamble", s_garbage_after_preamble),
        ("meta-element-longer-than-file", s_meta_longer_than_file),
        ("sequences-nested-5000-deep", s_nested_sequences),
        ("header-cut-short", s_header_cut_short),
        ("truncated-middle-slice", s_truncated_middle),
        ("truncated-end-slice", s_truncated_end),
        ("truncated-end-slice-allow-gaps", s_truncated_end_allow_gaps),
        ("no-pixel-data", s_no_pixel_data),
        ("dicomdir", s_dicomdir),
        ("only-mr", s_only_mr),
        ("multiframe-ct-image-storage", s_multiframe_ct_image_storage),
        ("enhanced-ct", s_enhanced_ct_good),
        ("enhanced-ct-frame-count-lies", s_enhanced_ct_frames_lie),
        ("no-series-uid", s_no_series_uid),
        ("same-file-copied", s_same_file_copied),
        ("rgb-samples", s_rgb_samples),
        ("no-preamble-implicit", s_no_preamble),
        ("implicit-vr", s_implicit_vr),
        ("deflated", s_deflated),
        ("element-length-past-end", s_element_length_past_end),
    ]:
        add("structure", id_, build)
    for id_, build in [
        (
            "position-nan",
            h_value("ImagePositionPatient", ["nan", "0", "0"], "'nan\\0\\0' is not a usable position"),
        ),
        ("position-two-values", h_value("ImagePositionPatient", ["0", "0"], "is not a usable position")),
        ("position-1e300", h_value("ImagePositionPatient", ["0", "0", "1e300"], "is not a usable position")),
        (
            "orientation-zeros",
            h_value("ImageOrientationPatient", ["0"] * 6, "is not two orthogonal unit vectors"),
        ),
        (
            "orientation-parallel",
            h_value("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], "orthogonal"),
        ),
        (
            "pixel-spacing-zero",
            h_value("PixelSpacing", ["0", "0.5"], "'0\\0.5' is not a usable pixel spacing"),
        ),
        ("pixel-spacing-negative", h_value("PixelSpacing", ["-0.5", "0.5"], "is not a usable pixel spacing")),
        ("rows-zero", h_value("Rows", 0, "Rows (0028,0010) = '0' is not a usable image size")),
        ("slope-zero", h_value("RescaleSlope", "0", "RescaleSlope (0028,1053) = '0' is not a usable slope")),
        ("slope-nan", h_value("RescaleSlope", "nan", "RescaleSlope (0028,1053) = 'nan'")),
        ("intercept-inf", h_value("RescaleIntercept", "inf", "RescaleIntercept (0028,1052) = 'inf'")),
        ("bits-stored-17", h_value("BitsStored", 17, "BitsStored (0028,0101) = '17' is more than")),
        (
            "pixel-representation-2",
            h_value("PixelRepresentation", 2, "PixelRepresentation (0028,0103) = '2'"),
        ),
        ("bits-allocated-12", h_value("BitsAllocated", 12, "BitsAllocated (0028,0100) = '12'")),
        (
            "slope-text",
            h_text("RescaleSlope", "abc", "RescaleSlope (0028,1053) = 'abc' is not a usable slope"),
        ),
        ("intercept-text", h_text("RescaleIntercept", "abc", "RescaleIntercept (0028,1052) = 'abc'")),
        ("frames-text", h_text("NumberOfFrames", "abc", "NumberOfFrames (0028,0008) = 'abc'")),
        (
            "position-text",
            h_text("ImagePositionPatient", "abc\\0\\0", "ImagePositionPatient (0020,0032) = 'abc"),
        ),
        ("signed-labelled-unsigned", h_signed_as_unsigned),
        ("rows-smaller-than-data", h_rows_smaller_than_data),
        ("rows-larger-than-data", h_all_rows_larger_than_data),
        ("empty-series-uid", h_empty_series_uid),
    ]:
        add("header", id_, build)
    for id_, build in [
        ("all-slices-one-position", g_all_one_position),
        ("mixed-orientations", g_mixed_orientation),
        ("mixed-sizes", g_mixed_sizes),
        ("mixed-pixel-spacing", g_mixed_spacing),
        ("gap", g_gap),
        ("gap-allowed", g_gap_allowed),
        ("gantry-tilt", g_tilt),
        ("uneven-spacing", g_uneven),
        ("single-slice", g_single_slice),
        ("oblique", g_oblique),
        ("coronal", g_coronal),
        ("one-slice-without-position", g_position_tag_only_in_one),
    ]:
        add("geometry", id_, build)
    for id_, build, shared in [
        ("j2k", c_j2k_good, False),
        ("rle", c_rle_good, False),
        ("j2k-truncated", c_j2k_corrupt, False),
        ("j2k-garbage-codestream", c_j2k_garbage_stream, False),
        ("unknown-transfer-syntax", c_unknown_syntax, False),
        ("j2k-declares-65535x65535", c_huge_declared_size, False),
        ("j2k-labelled-native", c_j2k_labelled_native, False),
        ("totalseg-j2k", c_totalseg_j2k, True),
        ("totalseg-j2k-one-truncated", c_totalseg_j2k_one_corrupt, True),
        ("dcmqi", c_dcmqi_good, True),
        ("dcmqi-zero-slope", c_dcmqi_zero_slope, True),
    ]:
        add("compression", id_, build, shared)
    for id_, build in [
        ("fifo", f_fifo),
        ("socket-and-device", f_socket_and_device),
        ("folder-link-loop", f_folder_link_loop),
        ("file-link-loop", f_file_link_loop),
        ("dangling-link-for-middle-slice", f_dangling_link_for_middle_slice),
        ("duplicate-link", f_duplicate_link),
        ("path-longer-than-path-max", f_deep_path),
        ("file-name-newline-escape", f_hostile_file_name),
        ("file-name-undecodable-bytes", f_undecodable_file_name),
        ("stale-temp-folder-in-input", f_stale_temp_in_input),
        ("stale-temp-folder-in-output", f_stale_temp_in_output),
        ("input-missing", f_input_missing),
        ("input-empty", f_input_empty),
        ("input-single-file", f_input_single_file),
        ("output-inside-input", f_output_inside_input),
        ("output-is-a-file", f_output_is_a_file),
        ("only-text-files", f_only_text_files),
    ]:
        add("filesystem", id_, build)
    for id_, build in [
        ("nifti", v_good_nifti),
        ("nifti-nan", v_nan(".nii.gz")),
        ("mha-nan", v_nan(".mha")),
        ("nrrd-nan", v_nan(".nrrd")),
        ("nifti-4d", v_4d),
        ("mha-rgb", v_rgb),
        ("nifti-garbage", v_garbage),
        ("mha-declares-65535-cubed", v_mha_huge_dims),
        ("mha-not-hu", v_not_hu),
        ("mha-2d-slice", v_one_slice_2d),
    ]:
        add("volume", id_, build)
    for id_, build in [
        ("tile-zero", o_option("--tile", "0", needles=("--tile 0",))),
        ("tile-negative", o_option("--tile", "-5", needles=("--tile -5",))),
        ("tile-text", o_option("--tile", "abc", code=2, usage=("--tile",))),
        ("noise-level-text", o_option("--noise-level", "abc", needles=("--noise-level 'abc'",))),
        ("noise-level-negative", o_option("--noise-level", "-1", needles=("--noise-level '-1'",))),
        ("noise-level-nan", o_option("--noise-level", "nan", needles=("--noise-level 'nan'",))),
        ("also-save-exe", o_option("--also-save", "exe", needles=("unknown --also-save exe", "nifti"))),
        ("strength-2", o_option("--strength", "2", code=2, usage=("--strength",))),
        ("overlap-1.5", o_option("--overlap", "1.5", code=2, usage=("--overlap",))),
        ("batch-size-0", o_option("--batch-size", "0", code=2, usage=("--batch-size",))),
        ("threads-0", o_option("--threads", "0", code=2, usage=("--threads",))),
        ("device-tpu", o_option("--device", "tpu", needles=("tpu",))),
        ("model-unknown", o_option("--model", "no-such-model", needles=("unknown model 'no-such-model'",))),
        ("also-save-on-tilted-series", o_also_save_on_tilt),
        ("unknown-series", o_unknown_series),
        ("existing-output", o_existing_output),
    ]:
        add("options", id_, build)
    for id_, value in TRAVERSALS.items():
        add("tags", id_, t_series_uid(value))
    add("tags", "description-traversal", t_tag("SeriesDescription", "../../../x/y"))
    add("tags", "study-uid-traversal", t_tag("StudyInstanceUID", "../../study"))
    add("tags", "sop-uid-traversal", t_tag("SOPInstanceUID", "../../sop"))
    add("tags", "patient-name-escape", t_tag("PatientName", "\x1b]0;pwned\x07^../x"))
    add("tags", "refused-uid-with-newline", t_refused_hostile_uid)
    return [replace(case, xfail=XFAIL.get(case.id, "")) for case in c]


XFAIL: dict[str, str] = {}


CASES = _cases()
