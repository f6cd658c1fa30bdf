"""The hostile corpus through the real CLI: exact exit code, error lines, output and untouched input.

Every case of ``tests/hostile/cases.py`` runs ``meddenoise denoise`` in-process (as ``tests/test_cli.py``
does) and is checked for: the exit code; exactly one ``error:`` line per refused series, naming the
series and the problem (and no traceback, no raw control character on the terminal); exactly the
expected series in OUT, each whole (every slice a readable DICOM of one new series, no ``.tmp-*``
left); the input unchanged (sha256 of every file); and nothing written outside OUT. The cases
marked ``batch`` then run together, with two good series, through ``meddenoise batch``; and pydicom's
own folder of test files goes through ``denoise``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from pydicom import dcmread
from pydicom.data import get_testdata_file

from meddenoise.batch.ledger import LEDGER_NAME, Ledger
from meddenoise.cli import main
from meddenoise.dicom.problems import shown_text
from tests.dicom.hostile import tree_hashes
from tests.hostile.cases import CASES, Case, Expect, output_folder_name

ESCAPED_MARKER = "meddenoise-escaped"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path, *, skip: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following links, not opening FIFOs), except under ``skip``."""
    entries: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            dirs[:] = []
            continue
        for name in dirs:
            if Path(folder, name) != skip:
                entries[os.path.join(folder, name)] = "folder"
        for name in files:
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    with open(path, "rb") as fp:
                        entries[path] = hashlib.sha256(fp.read()).hexdigest()
                else:
                    entries[path] = f"mode {stat.S_IFMT(mode)}"
            except OSError as err:
                entries[path] = f"unreachable {err.errno}"
    return entries


def case_params() -> list[object]:
    params = []
    for case in CASES:
        marks = [pytest.mark.shared_data] if case.shared else []
        if case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
        params.append(pytest.param(case, id=f"{case.category}-{case.id}", marks=marks))
    return params


@pytest.mark.parametrize("case", case_params())
def test_hostile_case_through_denoise(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    expect = case.build(root)
    source, out = root / expect.input, root / expect.output
    skip = out.parent if expect.volume_output else out
    before = snapshot(tmp_path, skip=skip)
    inputs = tree_hashes(source) if os.path.lexists(source) else {}
    out_before = snapshot(out, skip=out / "none") if out.is_dir() else {}
    args = ["denoise", source, out, "--model", tiny_model, "--device", "cpu", "--threads", 1, *expect.args]
    code, stdout, stderr = run_cli(capsys, *args)

    assert code == expect.code, (stdout, stderr)
    assert "Traceback" not in stderr + stdout
    for char in ("\x1b", "\r", "\x07", "\x00"):
        assert char not in stderr + stdout, f"a raw {char!r} reached the terminal"
    if expect.usage:
        assert all(word in stderr for word in expect.usage), stderr
    else:
        assert_error_lines(stderr, expect)
    for needle in expect.stdout:
        assert needle in stdout, (needle, stdout)
    assert (tree_hashes(source) if os.path.lexists(source) else {}) == inputs, "the input changed"
    assert snapshot(tmp_path, skip=skip) == before, "something was written outside OUT"
    assert not list(Path("/tmp").glob(f"{ESCAPED_MARKER}*"))
    if expect.volume_output:
        assert_volume_output(out, written=code == 0)
    else:
        assert_series_output(out, expect, out_before)


def assert_error_lines(stderr: str, expect: Expect) -> None:
    """One ``error:`` line per refused series (naming it) and per expected error, and no others."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == len(expect.refused) + len(expect.errors), stderr
    unmatched = list(lines)
    groups = [(shown_text(uid), *needles) for uid, needles in expect.refused.items()]
    for needles in [*groups, *expect.errors]:
        hit = next((line for line in unmatched if all(n in line for n in needles)), None)
        assert hit is not None, (needles, lines)
        unmatched.remove(hit)


def assert_series_output(out: Path, expect: Expect, out_before: dict[str, str]) -> None:
    """OUT holds exactly the expected series, each whole and new; nothing half-written, no temp left."""
    if not out.is_dir():
        assert not expect.written, f"{out} missing"
        return
    folders = {output_folder_name(uid): n for uid, n in expect.written.items()}
    assert sorted(p.name for p in out.iterdir()) == sorted(folders)
    for name, count in folders.items():
        folder = out / name
        files = sorted(folder.iterdir())
        assert len(files) == count, f"{name}: {len(files)} of {count} slices"
        existing = {k: v for k, v in out_before.items() if k.startswith(str(folder) + os.sep)}
        if existing:
            assert snapshot(folder, skip=folder / "none") == existing, "an existing series was changed"
            continue
        headers = [dcmread(p) for p in files]
        assert len({str(ds.SeriesInstanceUID) for ds in headers}) == 1
        assert len({str(ds.SOPInstanceUID) for ds in headers}) == count
        assert all(ds.pixel_array.shape == (ds.Rows, ds.Columns) for ds in headers)


def assert_volume_output(out: Path, *, written: bool) -> None:
    if written:
        image = sitk.ReadImage(str(out))
        assert image.GetDimension() == 3
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    else:
        assert not out.exists()
        assert not out.parent.exists() or not any(out.parent.iterdir())


# ---------------------------------------------------------------------------- the corpus as one batch


def test_batch_over_a_tree_of_every_bad_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    """Every ``batch`` case in one tree, with two good series: good ones done, each bad one failed."""
    tree = tmp_path / "tree"
    done: dict[str, int] = {}
    failed: dict[str, tuple[str, ...]] = {}
    kept_good = 0
    for case in CASES:
        if (case.shared and not _shared_present()) or case.xfail:
            continue
        expect = case.build(tree / case.id)
        if not expect.batch:
            shutil.rmtree(tree / case.id, ignore_errors=True)
            continue
        good = tree / case.id / "in" / "zz-good"
        good_uid = _series_uid(good)
        if kept_good < 2:
            kept_good += 1
        else:
            shutil.rmtree(good)
        for uid, count in expect.written.items():
            if uid != good_uid or good.exists():
                done[uid] = count
        failed.update(expect.refused)
    assert kept_good == 2 and len(failed) >= 30
    out = tmp_path / "out"
    inputs = tree_hashes(tree)
    args = ["batch", tree, out, "--model", tiny_model, "--device", "cpu", "--threads", 1]
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 1 and "Traceback" not in stderr + stdout and "\x1b" not in stderr + stdout
    assert tree_hashes(tree) == inputs
    with Ledger(out / LEDGER_NAME) as ledger:
        records = {r.series_uid: r for r in ledger.records()}
    for uid, count in done.items():
        record = records[uid]
        assert record.state == "done" and record.output_instances == count, record
        assert len(list(Path(record.output_folder).iterdir())) == count
    for uid, needles in failed.items():
        record = records[uid]
        assert record.state == "failed", record
        assert all(n in record.error for n in needles), (needles, record.error)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            LEDGER_NAME,
            *(f"{LEDGER_NAME}-{s}" for s in ("wal", "shm") if (out / f"{LEDGER_NAME}-{s}").exists()),
        ]
        + [output_folder_name(uid) for uid in done]
    )
    # Resuming: nothing is redone, nothing new is written.
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    assert stdout.count("done before") == len(done) and stdout.count("failed before") == len(failed)


def _shared_present() -> bool:
    from tests.conftest import SHARED_DATA

    return (SHARED_DATA / "fixtures").is_dir()


def _series_uid(folder: Path) -> str:
    return str(dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID)


# ---------------------------------------------------------------------------- pydicom's test files


def test_pydicom_test_files_folder_denoises_every_real_ct_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path
) -> None:
    """86 real-world files, scouts and series with gaps among them: no stop at the first bad one."""
    folder = Path(get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
    inputs = tree_hashes(folder)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, "denoise", folder, out, "--model", tiny_model, "--device", "cpu", "--threads", 1
    )
    assert code == 1 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and all(line.startswith("error: series ") for line in errors)
    assert any("mixed orientations" in line for line in errors)
    assert any("gap of" in line for line in errors)
    assert any("no usable slice" in line for line in errors)  # a series whose one file is unusable
    written = sorted(out.iterdir())
    assert len(written) == 4 and all(not p.name.startswith(".") for p in written)
    assert stdout.count("wrote ") == 4 and "done: 4 series written, 3 failed or refused" in stdout
    for series in written:
        files = sorted(series.iterdir())
        assert files and len({str(dcmread(p).SOPInstanceUID) for p in files}) == len(files)
    assert tree_hashes(folder) == inputs
