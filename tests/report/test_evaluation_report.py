"""Whole reports from series on disk: content, no PHI unless asked, hashed UIDs, the DICOM PDF, the CLI."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from meddenoise.cli import main
from meddenoise.pipeline import ReportOptions, evaluate_paths, read_series
from meddenoise.report import hash_uid
from meddenoise.report.dicom_report import ENCAPSULATED_PDF_STORAGE
from tests.report.phantom_series import PATIENT_ID, PATIENT_NAME, PhantomSet, make_phantom_set

PHI_STRINGS = (PATIENT_NAME, PATIENT_ID)  # "^" and "-" never occur in the base64 PNGs


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomSet:
    return make_phantom_set(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="module")
def full_report(phantom: PhantomSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    evaluate_paths(
        denoised_path=phantom.denoised,
        reference_path=phantom.full,
        input_path=phantom.low,
        out_dir=out,
        options=ReportOptions(dicom_report=True),
    )
    return out


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in sorted(folder.rglob("*")) if p.is_file())


def test_report_holds_fidelity_physics_and_figures(full_report: Path) -> None:
    doc = json.loads((full_report / "report.json").read_text())
    assert set(doc["series"]) == {"abdomen", "full"}
    assert set(doc["input_series"]) == {"abdomen", "full"}
    physics = doc["physics"]
    assert physics["noise_reduction_percent"] > 50.0  # a Gaussian blur removes most white noise
    assert abs(physics["hu_bias_output_vs_input_hu"]) < 3.0
    assert set(physics["images"]) == {"input", "output", "reference"}
    assert physics["protocols"]["noise_sd"].startswith("sample SD")
    assert doc["versions"]["numpy"]
    html = (full_report / "report.html").read_text()
    assert html.count("<img ") == 3 + 1 + 2  # 3 slice panels, PSNR/SSIM, NPS, noise per slice
    assert "http://" not in html and "https://" not in html and "<script" not in html
    with (full_report / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 2  # one row per slice and protocol
    assert any(row["noise_sd_output_hu"] for row in rows)


def test_no_phi_and_hashed_uids_by_default(phantom: PhantomSet, full_report: Path) -> None:
    text = _all_text(full_report.parent / full_report.name)
    report_text = "\n".join(
        (full_report / name).read_text() for name in ("report.json", "report.csv", "report.html")
    )
    for phi in PHI_STRINGS:
        assert phi not in report_text
    denoised = read_series(phantom.denoised)
    assert denoised.info.series_uid not in report_text and denoised.info.study_uid not in report_text
    doc = json.loads((full_report / "report.json").read_text())
    assert doc["context"]["denoised_series_uid"] == hash_uid(denoised.info.series_uid)
    assert doc["context"]["uids_hashed"] is True
    assert str(phantom.denoised) not in text  # paths can hold patient names too


def test_show_phi_writes_identity(phantom: PhantomSet, tmp_path: Path) -> None:
    _, files = evaluate_paths(
        denoised_path=phantom.denoised,
        input_path=phantom.low,
        out_dir=tmp_path,
        options=ReportOptions(show_phi=True),
    )
    doc = json.loads(files.json.read_text())
    assert doc["context"]["patient_name"] == PATIENT_NAME
    assert doc["context"]["denoised_series_uid"] == read_series(phantom.denoised).info.series_uid
    assert PATIENT_NAME in (tmp_path / "report.html").read_text()


def test_report_without_reference_gives_noise_nps_and_bias(phantom: PhantomSet, tmp_path: Path) -> None:
    _, files = evaluate_paths(denoised_path=phantom.denoised, input_path=phantom.low, out_dir=tmp_path)
    doc = json.loads(files.json.read_text())
    assert doc["series"] == {}
    physics = doc["physics"]
    assert physics["noise_reduction_percent"] > 50.0
    assert physics["hu_bias_output_vs_reference_hu"] is None
    assert (
        physics["images"]["input"]["nps_peak_frequency_per_mm"]
        > physics["images"]["output"]["nps_peak_frequency_per_mm"]
    )
    with files.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["slice_index"] for row in rows] == ["0", "1", "2", "3"]
    assert "fidelity metrics (PSNR/SSIM/RMSE) need a full-dose reference" in files.html.read_text()  # type: ignore[union-attr]


def test_dicom_report_is_a_valid_encapsulated_pdf_in_the_study(
    phantom: PhantomSet, full_report: Path
) -> None:
    (path,) = (full_report / "dicom").glob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE
    denoised = read_series(phantom.denoised).info
    assert ds.StudyInstanceUID == denoised.study_uid
    assert ds.SeriesInstanceUID != denoised.series_uid
    pdf = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert PATIENT_NAME.encode() not in pdf
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    problems = [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))
    ]
    assert problems == [], "\n".join(problems)


def test_cli_evaluate_writes_the_report(
    phantom: PhantomSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "evaluate",
            str(phantom.denoised),
            str(phantom.full),
            "--input",
            str(phantom.low),
            "--out",
            str(tmp_path),
            "--figure-slice",
            "0",
        ]
    )
    assert code == 0
    assert "report.html" in capsys.readouterr().out
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["context"]["figure_slices"] == [0]


@pytest.mark.slow
def test_cli_denoise_report_without_reference(phantom: PhantomSet, tmp_path: Path, tiny_model: Path) -> None:
    args = ["denoise", str(phantom.low), str(tmp_path / "out"), "--model", str(tiny_model), "--device", "cpu"]
    assert main([*args, "--roi", "64", "--threads", "1", "--report", "--dicom-report"]) == 0
    (series,) = [p for p in (tmp_path / "out").iterdir() if p.name.endswith("-denoised")]
    report = series.with_name(series.name + ".report")
    doc = json.loads((report / "report.json").read_text())
    assert doc["series"] == {} and doc["context"]["model_card"]["name"] == "tiny"
    assert doc["physics"]["noise_reduction_percent"] is not None
    assert (report / "report.html").exists()
    (pdf,) = (series.with_name(series.name + ".report") / "dicom").glob("*.dcm")
    assert pydicom.dcmread(pdf).StudyInstanceUID == read_series(series).info.study_uid
    for phi in PHI_STRINGS:
        assert phi not in "\n".join(p.read_text() for p in report.iterdir() if p.is_file())
