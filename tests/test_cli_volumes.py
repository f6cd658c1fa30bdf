"""Volumes through the command line: volume in and out, --also-save, evaluate two volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from meddenoise.cli import main
from meddenoise.dicom import find_series
from meddenoise.volume import read_volume, write_volume
from tests.conftest import require_shared
from tests.test_pipeline import write_phantom
from tests.volume.synthetic import ct_volume


def test_denoise_volume_file_keeps_its_grid(tmp_path: Path, tiny_model: Path) -> None:
    source = write_volume(ct_volume(), tmp_path / "in.nii.gz")
    out = tmp_path / "out" / "denoised.nii.gz"
    assert main(["denoise", str(source), str(out), "--model", str(tiny_model), "--device", "cpu"]) == 0
    before, after = read_volume(source), read_volume(out)
    assert after.hu.shape == before.hu.shape and after.pixel_id == "int16"
    np.testing.assert_allclose(after.spacing_mm, before.spacing_mm, rtol=1e-7)
    np.testing.assert_allclose(after.origin_mm, before.origin_mm, rtol=1e-7)


def test_volume_that_is_not_hu_needs_a_declared_offset(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_volume(ct_volume(np.rint(ct_volume().hu) + 1024.0), tmp_path / "raw.mha")
    args = ["denoise", str(source), str(tmp_path / "out.mha"), "--model", str(tiny_model)]
    assert main(args) == 1
    assert "--hu-offset" in capsys.readouterr().err
    assert main([*args, "--hu-offset", "-1024"]) == 0


def test_also_save_writes_a_volume_beside_the_derived_series(tmp_path: Path, tiny_model: Path) -> None:
    series = write_phantom(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["denoise", str(series), str(out), "--model", str(tiny_model), "--also-save", "nifti"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    volume_path = folder.with_name(folder.name + ".nii.gz")
    image = sitk.ReadImage(str(volume_path))
    derived = find_series(folder).series[0]
    assert image.GetSize() == (derived.shape[2], derived.shape[1], derived.shape[0])
    np.testing.assert_allclose(image.GetOrigin(), derived.origin_mm, atol=1e-3)
    np.testing.assert_allclose(image.GetSpacing()[::-1], derived.spacing_mm, atol=1e-3)


def test_also_save_refuses_a_tilted_series_before_any_work(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = require_shared("fixtures/ge-head-gantry-tilt")
    out = tmp_path / "out"
    code = main(["denoise", str(source), str(out), "--model", str(tiny_model), "--also-save", "mha"])
    assert code == 1
    assert "gantry tilt" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_evaluate_two_volumes(tmp_path: Path) -> None:
    reference = write_volume(ct_volume(), tmp_path / "ref.nii.gz")
    clean = ct_volume().hu
    noisy = ct_volume((clean + np.random.default_rng(0).normal(0, 20, clean.shape)).astype(np.float32))
    test = write_volume(noisy, tmp_path / "test.nii.gz", pixel_type="float32")
    assert main(["evaluate", str(test), str(reference), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.json").exists()
