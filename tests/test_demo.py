"""run_demo: phantom → full dose → simulated quarter dose → denoised, with one report of all three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydicom import dcmread

from meddenoise.errors import OutputError
from meddenoise.pipeline import read_series, run_demo
from meddenoise.report.phi import hash_uid
from tests.conftest import save_tiny_model


def test_demo_writes_three_series_one_report_and_a_picture(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model = save_tiny_model(tmp_path / "tiny.pt", context_slices=3)
    result = run_demo(out_dir=tmp_path / "demo", model=model, size=64, slices=3)
    full, low, denoised = (
        read_series(f) for f in (result.full_dose_folder, result.low_dose_folder, result.denoised_folder)
    )
    assert full.hu.shape == low.hu.shape == denoised.hu.shape == (3, 64, 64)
    assert full.info.spacing_mm == pytest.approx((3.0, 6.0, 6.0))  # 256 px at 1.5 mm, shrunk to 64 px
    assert low.info.study_uid == denoised.info.study_uid == full.info.study_uid
    assert "sim 25% dose" in dcmread(next(result.low_dose_folder.iterdir())).SeriesDescription
    assert "tiny v0.1" in dcmread(next(result.denoised_folder.iterdir())).DerivationDescription
    report = json.loads(result.report_json.read_text())
    assert set(report["protocols"]) == {"abdomen", "full"}
    assert report["context"]["reference_series_uid"] == hash_uid(full.info.series_uid)
    assert (result.report_json.parent / "report.csv").is_file()
    # The images are labelled by what they are: the low-dose series is the input, not "denoised".
    assert report["context"]["input_series_uid"] == hash_uid(low.info.series_uid)
    assert report["context"]["denoised_series_uid"] == hash_uid(denoised.info.series_uid)
    assert report["input_series"]["full"]["mean_rmse"] > 0  # a quarter dose is noisier than the full
    assert report["context"]["model_card"]["name"] == "tiny"
    page = result.report_html.read_text()
    assert all(label in page for label in ("input (low dose)", "denoised", "reference (full dose)"))
    assert result.before_after_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.evaluation.input_scores is not None
    with pytest.raises(OutputError, match="is not empty; pass --overwrite"):
        run_demo(out_dir=tmp_path / "demo", model=model, size=64, slices=3)
