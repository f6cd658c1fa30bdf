"""The command line end to end: every bad input is one ``error:`` line and exit 1, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom import dcmread
from pydicom.uid import UID

from meddenoise import __version__
from meddenoise.cli import main
from meddenoise.models import DEFAULT_MODEL_NAME, shipped_models
from meddenoise.models.card import ModelCard
from meddenoise.models.checkpoint import card_path
from meddenoise.pipeline import read_series
from tests.conftest import REPO_ROOT, require_shared
from tests.dicom.synthetic import AXIAL, CORONAL, make_series, truncate
from tests.test_pipeline import write_phantom

WEIGHTS = REPO_ROOT / "meddenoise" / "models" / "weights"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def denoise(capsys: pytest.CaptureFixture[str], src: Path, out: Path, model: Path, *extra: object):
    return run(capsys, "denoise", src, out, "--model", model, "--device", "cpu", "--threads", 1, *extra)


def assert_one_error(code: int, err: str, *needles: str) -> str:
    """Exit 1 and exactly one stderr line, ``error: ...``, holding every needle."""
    assert code == 1, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def hashes(folder: Path) -> dict[Path, tuple[str, float]]:
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- bad inputs ------------------------------------------------------------------------------


def test_empty_folder(tmp_path: Path, capsys, tiny_model: Path) -> None:
    (tmp_path / "in").mkdir()
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, str(tmp_path / "in"), "no files")
    assert not (tmp_path / "out").exists()


def test_only_non_dicom_files(tmp_path: Path, capsys, tiny_model: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("hello\n")
    (tmp_path / "in" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, str(tmp_path / "in"), "no DICOM files", "2 files skipped")


def test_truncated_end_slice_refuses_the_series_by_name_unless_gaps_are_allowed(
    tmp_path: Path, capsys, caplog: pytest.LogCaptureFixture, tiny_model: Path
) -> None:
    written = make_series(tmp_path / "in", n_slices=4)
    truncate(written.paths[3], drop_bytes=600)
    # A lost slice makes the series incomplete: refused, naming the file, unless gaps are allowed.
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "refused", tiny_model)
    assert_one_error(code, err, written.series_uid, f"{written.paths[3].name} skipped: pixel data truncated")
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    code, out, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model, "--allow-gaps")
    assert code == 0, err
    assert "Traceback" not in err
    # In-process, pytest owns the logging handlers; the subprocess test below sees it on stderr.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{written.paths[3].name} skipped: pixel data truncated" in w for w in warnings)
    folder = tmp_path / "out" / f"{written.series_uid}-denoised"
    assert f"wrote {folder}" in out
    assert len(list(folder.iterdir())) == 3
    positions = sorted(float(dcmread(p).ImagePositionPatient[2]) for p in folder.iterdir())
    assert positions == pytest.approx([p[2] for p in written.positions_mm[:3]])


def test_truncated_middle_slice_is_a_named_gap(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=5)
    truncate(written.paths[2], drop_bytes=1000)
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, written.series_uid, "gap of 5.00 mm", f"{written.paths[2].name} skipped")


def test_corrupt_compressed_slice_is_a_named_gap(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=4, transfer_syntax="1.2.840.10008.1.2.4.90")
    truncate(written.paths[1], drop_bytes=3000)
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, f"{written.paths[1].name} skipped: cannot decode pixel data")


def test_non_ct_modality(tmp_path: Path, capsys, tiny_model: Path) -> None:
    make_series(tmp_path / "in", n_slices=2, modality="MR")
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, "no CT series in", "found only MR")


def test_missing_pixel_data(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=3)
    ds = dcmread(written.paths[1])
    del ds.PixelData
    ds.save_as(written.paths[1])
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, written.series_uid, f"no pixel data in {written.paths[1].name}")


def test_mixed_orientations(tmp_path: Path, capsys, tiny_model: Path) -> None:
    axial = make_series(tmp_path / "in", n_slices=2, orientation=AXIAL, seed=1)
    make_series(
        tmp_path / "in",
        orientation=CORONAL,
        positions_mm=[(0.0, 40.0, 0.0)],
        series_uid=axial.series_uid,
        seed=2,
    )
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, axial.series_uid, "mixed orientations")


def test_duplicate_positions(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", positions_mm=[(0, 0, 0), (0, 0, 2.5), (0, 0, 2.5), (0, 0, 5)])
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, written.series_uid, "duplicate slice position")


def test_missing_slice_gap(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(
        tmp_path / "in", positions_mm=[(0, 0, 0), (0, 0, 2.5), (0, 0, 5), (0, 0, 10), (0, 0, 12.5)]
    )
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, written.series_uid, "gap of 5.00 mm", "1 slice(s) missing")


def _relabel_syntax(paths: tuple[Path, ...], syntax: str) -> None:
    for path in paths:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.save_as(path, implicit_vr=False, little_endian=True)


def test_unreadable_compression_but_info_still_lists_it(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=2, transfer_syntax="1.2.840.10008.1.2.4.90")
    private_syntax = "1.3.6.1.4.1.5962.99.1.4"  # JPEG 2000 bytes, labelled with an unknown compression
    _relabel_syntax(written.paths, private_syntax)
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, "cannot decode transfer syntax", private_syntax, "no decoder")
    code, out, err = run(capsys, "info", tmp_path / "in")  # headers only: pixels never decoded
    assert code == 0 and err == ""
    assert written.series_uid in out and "slices: 2" in out


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_folder_that_is_the_input_or_inside_it(
    tmp_path: Path, capsys, tiny_model: Path, where: str
) -> None:
    make_series(tmp_path / "in", n_slices=2)
    out = tmp_path / "in" if where == "same" else tmp_path / "in" / "sub" / "out"
    before = hashes(tmp_path / "in")
    code, _, err = denoise(capsys, tmp_path / "in", out, tiny_model)
    assert_one_error(code, err, str(out), "inside the input folder")
    assert hashes(tmp_path / "in") == before


def test_unknown_model_name_lists_the_valid_ones(tmp_path: Path, capsys) -> None:
    make_series(tmp_path / "in", n_slices=2)
    code, _, err = run(
        capsys, "denoise", tmp_path / "in", tmp_path / "out", "--model", "nope", "--device", "cpu"
    )
    line = assert_one_error(code, err, "unknown model 'nope'", "shipped models:")
    for card in shipped_models():
        assert card.name in line
    assert not (tmp_path / "out").exists()


def test_checkpoint_whose_sha256_does_not_match(tmp_path: Path, capsys, tiny_model: Path) -> None:
    make_series(tmp_path / "in", n_slices=2)
    payload = torch.load(tiny_model, weights_only=True)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = payload["state_dict"][key] + 1e-3  # tamper; keep the old card
    tampered = tmp_path / "tampered.pt"
    torch.save(payload, tampered)
    card_path(tampered).write_text(card_path(tiny_model).read_text())
    assert ModelCard.from_dict(payload["card"]).weights_sha256  # the card still claims the old hash
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tampered)
    assert_one_error(code, err, str(tampered), "fails its checksum")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu(tmp_path: Path, capsys, tiny_model: Path) -> None:
    make_series(tmp_path / "in", n_slices=2)
    code, _, err = run(
        capsys, "denoise", tmp_path / "in", tmp_path / "out", "--model", tiny_model, "--device", "cuda"
    )
    assert_one_error(code, err, "--device cuda", "no CUDA GPU")


def test_existing_output_needs_overwrite(tmp_path: Path, capsys, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=2)
    assert denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)[0] == 0
    folder = tmp_path / "out" / f"{written.series_uid}-denoised"
    first = {p.name: dcmread(p).SOPInstanceUID for p in folder.iterdir()}
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model)
    assert_one_error(code, err, str(folder), "--overwrite")
    assert {p.name: dcmread(p).SOPInstanceUID for p in folder.iterdir()} == first
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model, "--overwrite")
    assert code == 0, err
    second = {p.name: dcmread(p).SOPInstanceUID for p in folder.iterdir()}
    assert second.keys() == first.keys() and set(second.values()).isdisjoint(first.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [folder.name]  # no temp/old left


@pytest.mark.parametrize("strength", ["1.5", "-0.1"])
def test_strength_outside_0_1_is_a_usage_error(
    tmp_path: Path, capsys, tiny_model: Path, strength: str
) -> None:
    make_series(tmp_path / "in", n_slices=1)
    code, _, err = denoise(capsys, tmp_path / "in", tmp_path / "out", tiny_model, "--strength", strength)
    assert code == 2
    assert "--strength" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- success paths ---------------------------------------------------------------------------


def test_denoise_never_modifies_its_input_and_quiet_prints_nothing(
    tmp_path: Path, capsys, tiny_model: Path
) -> None:
    written = make_series(tmp_path / "in", n_slices=3)
    before = hashes(tmp_path / "in")
    code, out, err = run(
        capsys,
        "--quiet",
        "denoise",
        tmp_path / "in",
        tmp_path / "out",
        "--model",
        tiny_model,
        "--device",
        "cpu",
    )
    assert code == 0 and out == "" and err == ""
    assert hashes(tmp_path / "in") == before
    assert (tmp_path / "out" / f"{written.series_uid}-denoised").is_dir()


def test_version(capsys) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"meddenoise {__version__}"


def test_models_lists_the_shipped_default(capsys) -> None:
    if not card_path(WEIGHTS / f"{DEFAULT_MODEL_NAME}.pt").exists():
        pytest.skip(f"no shipped model card in {WEIGHTS} yet")
    code, out, err = run(capsys, "models")
    assert code == 0, err
    assert f"{DEFAULT_MODEL_NAME} (default)" in out


def test_info_names_gantry_tilt_on_a_real_head_scan(capsys) -> None:
    folder = require_shared("fixtures/ge-head-gantry-tilt")
    code, out, err = run(capsys, "info", folder)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("1.") and "description:" in lines[1]
    assert "slices: 28" in out and "size: 512x512" in out and "spacing (mm):" in out and "kernel:" in out
    assert any(line.strip().startswith("problem: gantry tilt") for line in lines)


def test_info_shows_the_noise_denoise_will_see(tmp_path: Path, capsys) -> None:
    # A torso phantom with 25 HU of white noise: info's figure is the median estimate of five
    # sampled slices, the same figure denoise logs and reports, within the estimator's 15 %.
    from meddenoise.dicom.create import write_new_series
    from meddenoise.phantom import torso_phantom

    hu = torso_phantom(size=256, slices=7, pixel_mm=1.5)
    noisy = hu + np.random.default_rng(4).normal(0.0, 25.0, hu.shape)
    write_new_series(hu=noisy.astype(np.float32), pixel_mm=1.5, slice_mm=3.0, folder=tmp_path / "ct")
    code, out, err = run(capsys, "info", tmp_path / "ct")
    assert code == 0, err
    (line,) = [line.strip() for line in out.splitlines() if line.strip().startswith("noise ")]
    assert line.endswith("HU SD (median of 5 slices)")
    assert abs(float(line.split()[1]) - 25.0) <= 0.15 * 25.0


def test_info_on_a_folder_without_series_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    code, out, err = run(capsys, "info", tmp_path)
    assert_one_error(code, err, f"no CT series under {tmp_path}", "1 files skipped")
    assert out == f"skipped {tmp_path / 'notes.txt'}: not DICOM\n"


def test_simulate_writes_a_noisier_series_that_says_it_is_simulated(tmp_path: Path, capsys) -> None:
    folder = write_phantom(tmp_path / "full", size=64, slices=2)
    code, _, err = run(capsys, "simulate", folder, tmp_path / "low", "--dose", "0.25", "--seed", 1)
    assert code == 0, err
    full = read_series(folder)
    (low_folder,) = (tmp_path / "low").iterdir()
    assert low_folder.name == f"{full.info.series_uid}-sim-dose025"
    low = read_series(low_folder)
    ds = dcmread(next(low_folder.iterdir()))
    assert "simulated 25 % dose" in ds.DerivationDescription
    assert "sim 25% dose" in ds.SeriesDescription
    muscle = full.hu == 40.0  # the phantom is noise-free, so its muscle is exactly 40 HU
    assert muscle.sum() > 500 and full.hu[muscle].std() == 0.0
    assert low.hu[muscle].std() > 5.0
    assert abs(float(low.hu[muscle].mean()) - 40.0) < 5.0


def test_evaluate_pairs_by_position_and_writes_both_reports(tmp_path: Path, capsys) -> None:
    reference = make_series(tmp_path / "ref", n_slices=5, seed=3)
    test = make_series(tmp_path / "test", positions_mm=list(reference.positions_mm)[1:4], seed=5)
    code, out, err = run(capsys, "evaluate", tmp_path / "test", tmp_path / "ref", "--out", tmp_path / "rep")
    assert code == 0, err
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(report["protocols"]) == {"abdomen", "full"}
    assert report["context"]["n_slices"] == 3
    # test slice k holds examples.ct + 10k; reference slice k+1 holds + 10(k+1): 10 HU apart everywhere.
    assert report["series"]["full"]["mean_rmse"] == pytest.approx(10.0)
    assert (tmp_path / "rep" / "report.csv").is_file()
    assert "report " in out and test.series_uid not in err


# --- through a real subprocess ---------------------------------------------------------------


def _subprocess(*args: object, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "meddenoise.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_python_dash_m_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("hello\n")
    done = _subprocess("denoise", tmp_path / "in", tmp_path / "out", "--model", "nope")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: no DICOM files in {tmp_path / 'in'} (1 files skipped, e.g. notes.txt: not DICOM)"
    ]
    usage = _subprocess("denoise", tmp_path / "in", tmp_path / "out", "--strength", "2")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr and "--strength" in usage.stderr


@pytest.mark.slow
def test_a_write_that_fails_half_way_leaves_no_series(tmp_path: Path, tiny_model: Path) -> None:
    """A real failure mid-series: the third slice's file exceeds the process's file-size limit."""
    folder = write_phantom(tmp_path / "in", size=64, slices=4)
    big = sorted(folder.iterdir())[2]
    ds = dcmread(big)
    ds.ImageComments = "x" * 10240  # copied into the derived slice, which then outgrows the limit
    ds.save_as(big)
    sizes = sorted(p.stat().st_size for p in folder.iterdir())
    limit = (sizes[-2] + sizes[-1]) // 2 + 2048  # derived headers are a little larger
    before = hashes(folder)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from meddenoise.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        sys.exit(main(sys.argv[1:]))
        """
    )
    done = _subprocess(
        "denoise", folder, tmp_path / "out", "--model", tiny_model, "--device", "cpu", code=script
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot write ") and "0003.dcm" in line and "File too large" in line
    assert list((tmp_path / "out").iterdir()) == []  # no final folder and no .tmp-* left behind
    assert hashes(folder) == before
    assert np.isfinite(read_series(folder).hu).all()


@pytest.mark.slow
def test_python_dash_m_warns_of_a_skipped_file_and_with_allow_gaps_denoises_the_rest(
    tmp_path: Path, tiny_model: Path
) -> None:
    written = make_series(tmp_path / "in", n_slices=3)
    truncate(written.paths[0], drop_bytes=600)
    done = _subprocess(
        "denoise", tmp_path / "in", tmp_path / "out", "--model", tiny_model, "--device", "cpu", "--allow-gaps"
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert f"{written.paths[0].name} skipped: pixel data truncated" in warning
    assert len(list((tmp_path / "out" / f"{written.series_uid}-denoised").iterdir())) == 2


def test_simulate_with_device_auto_picks_a_device_this_machine_has(tmp_path: Path, capsys) -> None:
    make_series(tmp_path / "in", n_slices=2)
    code, out, err = run(
        capsys, "simulate", tmp_path / "in", tmp_path / "sim", "--device", "auto", "--seed", 1
    )
    assert code == 0, err
    assert "Traceback" not in err and "sim-dose025" in out


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("dicomweb_client", ("push", "FOLDER", "--dicomweb", "http://127.0.0.1:9/dicom-web"), "pacs"),
        (
            "dicomweb_client",
            ("pull", "OUT", "--dicomweb", "http://127.0.0.1:9/dicom-web", "--series", "1.2"),
            "pacs",
        ),
        ("dask.distributed", ("batch", "IN", "OUT", "--dask", "local:1", "--device", "cpu"), "dask"),
    ],
)
def test_a_missing_extra_is_one_line_naming_what_to_install(
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: Path,
    module: str,
    args: tuple,
    extra: str,
) -> None:
    make_series(tmp_path / "in", n_slices=2)
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to import
    paths = {"FOLDER": tmp_path / "in", "IN": tmp_path / "in", "OUT": tmp_path / "out"}
    argv = [str(paths.get(a, a)) for a in args]
    if argv[0] == "batch":
        argv += ["--model", str(tiny_model)]
    code, _, err = run(capsys, *argv)
    line = assert_one_error(code, err, f'pip install "meddenoise[{extra}]"')
    assert "ModuleNotFoundError" not in line
