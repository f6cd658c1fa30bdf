"""DICOMweb against Orthanc's plugin: pull a series, denoise it, push the derived series back."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from meddenoise.cli import main
from meddenoise.inference import InferenceSettings
from meddenoise.pacs.dicomweb import DicomWebError, pull
from tests.conftest import require_shared, run_denoise, save_tiny_model
from tests.pacs.conftest import Orthanc

pytestmark = pytest.mark.slow


def test_pull_denoise_push_through_orthanc(tmp_path: Path, orthanc: Orthanc) -> None:
    orthanc.reset()
    source = require_shared("fixtures/dcmqi-ct-3slice")
    uploaded = orthanc.upload(source)
    first = next(p for p in sorted(source.rglob("*")) if p.is_file())
    header = pydicom.dcmread(first, stop_before_pixels=True)
    assert (
        main(
            [
                "-q",
                "pull",
                str(tmp_path / "pulled"),
                "--dicomweb",
                orthanc.dicomweb,
                "--series",
                header.SeriesInstanceUID,
            ]
        )
        == 0
    )
    (folder,) = (tmp_path / "pulled" / header.StudyInstanceUID).iterdir()
    assert folder.name == header.SeriesInstanceUID and len(list(folder.glob("*.dcm"))) == 3
    model = save_tiny_model(tmp_path / "tiny.pt")
    (outcome,) = run_denoise(
        input_path=folder,
        out_dir=tmp_path / "out",
        model=model,
        settings=InferenceSettings(device="cpu", threads=1),
    )
    assert main(["-q", "push", str(outcome.output_folder), "--dicomweb", orthanc.dicomweb]) == 0
    series = orthanc.study_series(header.StudyInstanceUID)
    assert sorted(len(s["Instances"]) for s in series) == [3, 3]
    assert any("denoised" in s["MainDicomTags"].get("SeriesDescription", "") for s in series)
    assert uploaded  # the source went in through the REST route
    with pytest.raises(DicomWebError, match="no series"):
        pull(url=orthanc.dicomweb, out_dir=tmp_path / "none", series_uid="1.2.3.4")
    orthanc.reset()
