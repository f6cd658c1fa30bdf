"""Fuzz the DICOM reader: header parse, geometry, pixel decode and HU, for a fixed time budget.

Hypothesis mutates real seed files (``pydicom.examples.ct`` series in native, JPEG 2000 and RLE
encodings, an Enhanced CT file, pydicom's ``CT_small.dcm`` and, when present, slices of the shared
fixtures): bytes flipped, overwritten, inserted, deleted or cut, and header values replaced by
hostile ones (NaN, huge, negative, text, wrong multiplicity). Each input is written to a folder and
goes through ``find_series`` and ``read_series``. The only exception allowed out is
``MeddenoiseError`` (and its subclasses); anything else, a warning escaping, or an input that takes
more than ``PER_INPUT_SECONDS`` is a bug, and Hypothesis shrinks it to a small reproducer.

The budget is ``MEDDENOISE_FUZZ_SECONDS`` (default 120 when ``CI=true``, 15 otherwise; 0 skips).
The number of inputs executed is printed and written to ``$MEDDENOISE_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.uid import JPEG2000Lossless, RLELossless

from meddenoise.dicom import find_series, read_series
from meddenoise.errors import MeddenoiseError
from tests.conftest import SHARED_DATA
from tests.dicom.synthetic import make_enhanced_series, make_series

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, Verbosity, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.fuzz

PER_INPUT_SECONDS = 30
MAX_DECODED_BYTES = 64 * 1024**2
MAX_VOLUME_BYTES = 256 * 1024**2

TAGS = [
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SOPClassUID",
    "SeriesInstanceUID",
    "SliceThickness",
    "SpacingBetweenSlices",
    "GantryDetectorTilt",
    "PlanarConfiguration",
    "Modality",
    "SeriesNumber",
    "ConvolutionKernel",
    "FrameOfReferenceUID",
]
INTERESTING = [
    b"\x00",
    b"\xff",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\x80\x00",
    b"\xfe\xff\x00\xe0",  # an item tag
    b"\xfe\xff\xdd\xe0",  # a sequence delimiter
    b"SQ\x00\x00\xff\xff\xff\xff",
    b"\xe0\x7f\x10\x00",  # the PixelData tag
    b"\xff\x4f\xff\x51",  # a J2K codestream start
]


def fuzz_seconds() -> float:
    default = "120" if os.environ.get("CI", "").lower() == "true" else "15"
    return float(os.environ.get("MEDDENOISE_FUZZ_SECONDS", default))


@dataclass(frozen=True)
class Seed:
    """One seed series: its files' bytes (the fuzzer mutates some of them)."""

    name: str
    files: tuple[bytes, ...]


def _read_all(paths: list[Path]) -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted(paths))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    root = tmp_path_factory.mktemp("seeds")
    found = [
        Seed("native", _read_all(list(make_series(root / "n", n_slices=3, nested=False).paths))),
        Seed(
            "j2k",
            _read_all(list(make_series(root / "j", n_slices=2, transfer_syntax=JPEG2000Lossless).paths)),
        ),
        Seed("rle", _read_all(list(make_series(root / "r", n_slices=2, transfer_syntax=RLELossless).paths))),
        Seed("padded", _read_all(list(make_series(root / "p", n_slices=2, padding_value=-2000).paths))),
        Seed("enhanced", _read_all([make_enhanced_series(root / "e.dcm", n_frames=3).paths[0]])),
        Seed("ct_small", (Path(get_testdata_file("CT_small.dcm")).read_bytes(),)),  # type: ignore[arg-type]
    ]
    for fixture, count in (("dcmqi-ct-3slice", 2), ("totalseg-example-ct-j2k", 2)):
        folder = SHARED_DATA / "fixtures" / fixture
        if folder.is_dir():
            found.append(Seed(fixture, _read_all(sorted(p for p in folder.rglob("*.dcm"))[:count])))
    return found


# ---------------------------------------------------------------------------- mutations


byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(0, 255)),
    st.tuples(st.just("put"), st.integers(0, 2**31), st.sampled_from(INTERESTING)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**31), st.integers(1, 64)),
    st.tuples(st.just("cut"), st.integers(0, 2**31), st.just(0)),
)
"""(kind, position, argument); the position is taken modulo a header-biased range of the file."""

number_text = st.one_of(
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e308", "-1e308", "1e-320", "0", "-0", "", " ", "1e9"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**40), 2**40).map(str),
    st.text(min_size=0, max_size=12),
)
tag_value = st.one_of(
    number_text,
    st.lists(number_text, min_size=0, max_size=7).map("\\".join),
    st.integers(-(2**31), 2**32),
)
tag_mutation = st.tuples(st.just("tag"), st.sampled_from(TAGS), tag_value)


@st.composite
def fuzz_inputs(draw: st.DrawFn, count: int) -> tuple[int, list[tuple[int, tuple[object, ...]]], bool]:
    seed = draw(st.integers(0, count - 1))
    mutations = draw(
        st.lists(st.tuples(st.integers(0, 7), st.one_of(byte_mutation, tag_mutation)), min_size=1, max_size=4)
    )
    return seed, mutations, draw(st.booleans())


def mutate_bytes(data: bytes, kind: str, where: int, arg: object) -> bytes:
    if not data:
        return data
    span = len(data) if where % 3 == 0 else min(len(data), 2048)  # two in three in the header
    at = where % span
    if kind == "flip":
        return data[:at] + bytes([int(arg)]) + data[at + 1 :]  # type: ignore[call-overload]
    if kind == "put":
        assert isinstance(arg, bytes)
        return data[:at] + arg + data[at + len(arg) :]
    if kind == "insert":
        assert isinstance(arg, bytes)
        return data[:at] + arg + data[at:]
    if kind == "delete":
        return data[:at] + data[at + int(arg) :]  # type: ignore[call-overload]
    return data[:at]


def mutate_tag(path: Path, keyword: str, value: object) -> None:
    """Store ``value`` under ``keyword`` with its dictionary VR (or as text when that fails)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = dcmread(path, force=True)
            vr = dictionary_VR(tag)
            if vr in ("US", "SS", "UL", "SL", "US or SS") and isinstance(value, str):
                vr = "LO"
            ds[tag] = DataElement(tag, "US" if vr == "US or SS" else vr, value)
            ds.save_as(path)
        except Exception:  # pydicom cannot store it this way: the value is the mutation, try as text
            try:
                ds = dcmread(path, force=True)
                ds[tag] = DataElement(tag, "LO", str(value))
                ds.save_as(path)
            except Exception:
                return  # an unwritable mutation of an already broken file: leave the file as it is


# ---------------------------------------------------------------------------- the target


@dataclass
class Tally:
    inputs: int = 0
    series_read: int = 0
    refused: Counter[str] | None = None


def run_reader(folder: Path, *, allow_gaps: bool, tally: Tally) -> None:
    """find_series + read_series on ``folder``; only MeddenoiseError may escape, and no warning."""
    assert tally.refused is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            scan = find_series(folder, allow_gaps=allow_gaps)
        except MeddenoiseError as err:
            tally.refused[type(err).__name__] += 1
            return
        for info in scan.series:
            if info.fatal_problems:
                tally.refused["fatal"] += 1
                continue
            try:
                series = read_series(
                    info, max_decoded_bytes=MAX_DECODED_BYTES, max_volume_bytes=MAX_VOLUME_BYTES
                )
            except MeddenoiseError as err:
                tally.refused[type(err).__name__] += 1
                continue
            assert series.hu.shape == series.info.shape
            assert series.hu.dtype.name == "float32"
            tally.series_read += 1


class InputTimeoutError(Exception):
    """One input ran longer than PER_INPUT_SECONDS (a hang)."""


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def _expired(signum: int, frame: object) -> None:
        raise InputTimeoutError(f"one input took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_reader_allows_only_meddenoise_errors(
    seeds: list[Seed], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    budget = fuzz_seconds()
    if budget <= 0:
        pytest.skip("MEDDENOISE_FUZZ_SECONDS=0")
    deadline = time.monotonic() + budget
    tally = Tally(refused=Counter())
    folder = tmp_path / "input"

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(fuzz_inputs(len(seeds)))
    def one_input(case: tuple[int, list[tuple[int, tuple[object, ...]]], bool]) -> None:
        if time.monotonic() > deadline:
            return
        seed_index, mutations, allow_gaps = case
        seed = seeds[seed_index]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        files = [folder / f"{k:02d}.dcm" for k in range(len(seed.files))]
        for path, data in zip(files, seed.files, strict=True):
            path.write_bytes(data)
        for which, (kind, where, arg) in mutations:
            path = files[which % len(files)]
            if kind == "tag":
                mutate_tag(path, str(where), arg)
            else:
                path.write_bytes(mutate_bytes(path.read_bytes(), str(kind), int(where), arg))  # type: ignore[call-overload]
        with alarm(PER_INPUT_SECONDS):
            run_reader(folder, allow_gaps=allow_gaps, tally=tally)
        tally.inputs += 1

    while time.monotonic() < deadline:
        one_input()
    assert tally.refused is not None
    line = (
        f"fuzz: {tally.inputs} inputs executed in {budget:g} s ({tally.series_read} series read, "
        f"refused: {dict(sorted(tally.refused.items()))})"
    )
    with capsys.disabled():
        print(f"\n{line}")
    report = os.environ.get("MEDDENOISE_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"inputs": tally.inputs, "seconds": budget, **tally.refused}))
    assert tally.inputs > 0 and math.isfinite(budget)
