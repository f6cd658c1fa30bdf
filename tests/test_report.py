"""Tests for meddenoise.report: report.json / report.csv content, validity and atomic writing."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import examples

from meddenoise import __version__
from meddenoise.errors import OutputError
from meddenoise.metrics import PROTOCOLS, SeriesScores, score_volume
from meddenoise.report import CSV_COLUMNS, write_report


@dataclass(frozen=True)
class _Card:
    name: str
    version: str


@pytest.fixture(scope="module")
def scores() -> dict[str, SeriesScores]:
    """Real CT slice: slice 0 with 25 HU noise, slice 1 identical; abdomen and chest-ldct protocols."""
    ds = examples.ct
    hu: npt.NDArray[np.float64] = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    ref = np.stack([hu, np.flipud(hu)])
    den = ref.copy()
    den[0] += np.random.default_rng(5).normal(0.0, 25.0, hu.shape)
    return score_volume(
        denoised=den, reference=ref, protocols=("abdomen", "chest-ldct"), positions_mm=[1.5, 4.5]
    )


def _reject_constant(name: str) -> object:
    raise AssertionError(f"report.json holds the non-JSON literal {name}")


def test_report_json_content(tmp_path: Path, scores: dict[str, SeriesScores]) -> None:
    context = {
        "input": tmp_path / "in",
        "series_instance_uid": "1.2.3.4",
        "model_card": _Card(name="dncnn", version="1"),
        "n_threads": np.int64(2),
    }
    json_path, _ = write_report(out_dir=tmp_path / "out", scores=scores, context=context)
    assert json_path == tmp_path / "out" / "report.json"
    doc = json.loads(json_path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    assert doc["meddenoise_version"] == __version__
    assert doc["created"].endswith("+00:00")
    assert doc["context"] == {
        "input": str(tmp_path / "in"),
        "series_instance_uid": "1.2.3.4",
        "model_card": {"name": "dncnn", "version": "1"},
        "n_threads": 2,
    }
    assert doc["protocols"]["abdomen"].startswith(
        "abdomen: HU clipped to [-160, 240], data_range=400 HU; SSIM"
    )
    assert "mapped to [0, 1]" in doc["protocols"]["chest-ldct"]
    for key, series in scores.items():
        entry = doc["series"][key]
        assert entry["protocol"] == key
        assert entry["protocol_description"] == doc["protocols"][key]
        assert entry["rmse_unit"] == PROTOCOLS[key].rmse_unit
        assert entry["n_slices"] == 2
        assert entry["n_infinite_psnr"] == 1
        assert entry["mean_psnr_db"] == pytest.approx(series.mean_psnr)
        assert entry["mean_ssim"] == pytest.approx(series.mean_ssim)
        assert entry["mean_rmse"] == pytest.approx(series.mean_rmse)
        assert "mean of per-slice" in entry["aggregation"]
        first, identical = entry["per_slice"]
        assert first == {
            "index": 0,
            "position_mm": 1.5,
            "psnr_db": pytest.approx(series.per_slice[0].psnr),
            "psnr_infinite": False,
            "ssim": pytest.approx(series.per_slice[0].ssim),
            "rmse": pytest.approx(series.per_slice[0].rmse),
        }
        assert identical["psnr_db"] is None
        assert identical["psnr_infinite"] is True
        assert identical["ssim"] == pytest.approx(1.0)
        assert identical["rmse"] == 0.0


def test_report_csv_content(tmp_path: Path, scores: dict[str, SeriesScores]) -> None:
    _, csv_path = write_report(out_dir=tmp_path, scores=scores, context={})
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 4  # 2 slices × 2 protocols
    for row in rows:
        series = scores[row["protocol"]]
        s = series.per_slice[int(row["slice_index"])]
        assert row["protocol_description"] == series.protocol.describe_full()
        assert float(row["position_mm"]) == s.position_mm
        assert float(row["psnr_db"]) == s.psnr  # "inf" parses to math.inf
        assert float(row["ssim"]) == s.ssim
        assert float(row["rmse"]) == s.rmse
        assert row["rmse_unit"] == ("HU" if row["protocol"] == "abdomen" else "unit")
    assert [row["psnr_db"] for row in rows if row["slice_index"] == "1"] == ["inf", "inf"]


def test_all_identical_series_is_valid_json(tmp_path: Path) -> None:
    ref = np.zeros((2, 16, 16))
    identical = score_volume(denoised=ref, reference=ref, protocols=["full"])
    assert identical["full"].mean_psnr == math.inf
    json_path, _ = write_report(out_dir=tmp_path, scores=identical, context={})
    text = json_path.read_text(encoding="utf-8")
    assert "Infinity" not in text and "NaN" not in text
    doc = json.loads(text, parse_constant=_reject_constant)
    assert doc["series"]["full"]["mean_psnr_db"] is None
    assert doc["series"]["full"]["n_infinite_psnr"] == 2


def test_write_is_atomic_and_replaces(tmp_path: Path, scores: dict[str, SeriesScores]) -> None:
    (tmp_path / "report.json").write_text("old", encoding="utf-8")
    json_path, csv_path = write_report(out_dir=tmp_path, scores=scores, context={"run": 2})
    assert json.loads(json_path.read_text(encoding="utf-8"))["context"] == {"run": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.json"]
    assert csv_path.stat().st_mode & 0o777 == 0o644


def test_bad_context_is_refused_before_writing(tmp_path: Path, scores: dict[str, SeriesScores]) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        write_report(out_dir=tmp_path / "a", scores=scores, context={"dose": math.nan})
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        write_report(out_dir=tmp_path / "b", scores=scores, context={"thing": object()})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unwritable_out_dir_raises_output_error(tmp_path: Path, scores: dict[str, SeriesScores]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(OutputError, match="cannot create the report folder"):
        write_report(out_dir=blocker, scores=scores, context={})
