"""Volume files through the pipeline: denoise IN.nii.gz OUT.nii.gz, --also-save, evaluate volumes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from meddenoise.dicom import find_series, read_series
from meddenoise.errors import OutputError, SeriesError
from meddenoise.inference import InferenceSettings
from meddenoise.models import LoadedModel, ModelCard
from meddenoise.pipeline import RunRequest
from meddenoise.pipeline.volume import denoise_volume_path, evaluate_volume_paths, save_series_volumes
from meddenoise.volume import HUConvention, read_volume, write_volume
from tests.dicom.synthetic import make_series, oblique
from tests.volume.synthetic import ct_volume, phantom_hu

IDENTITY = LoadedModel(
    network=nn.Identity(), card=ModelCard(name="identity", version="1", architecture="none")
)
SETTINGS = InferenceSettings(roi=(32, 32), device="cpu", threads=1)
IDENTITY_REQUEST = RunRequest(model=IDENTITY, settings=SETTINGS)


def identity_output(hu: np.ndarray) -> np.ndarray:
    """What the identity network returns: what it saw (HU clipped to its range), or the pass-through.

    Air that noise pushed below -1024 HU comes back at -1024 HU; padding and metal keep their input.
    """
    network_range = IDENTITY.card.network_range
    seen = np.clip(hu, network_range.lower_hu, network_range.upper_hu)
    return np.where(network_range.passes_through(hu), hu, seen)


@pytest.mark.parametrize("extension", ["nii.gz", "mhd", "nrrd"])
def test_identity_denoising_keeps_volume_and_grid(tmp_path: Path, extension: str) -> None:
    source = write_volume(ct_volume(), tmp_path / f"in.{extension}")
    out = denoise_volume_path(
        input_path=source,
        output_path=tmp_path / "out" / f"ct.{extension}",
        request=IDENTITY_REQUEST,
    )
    before, after = read_volume(source), read_volume(out)
    assert (before.hu < -1024).any()  # the phantom's noisy air, so the clipping is exercised
    np.testing.assert_array_equal(after.hu, identity_output(before.hu))
    # MetaImage re-writes bit-exactly; NIfTI (float32 header) and NRRD (spacing × direction) may
    # move by an ulp of their own precision on each re-write.
    tolerance = 0.0 if extension == "mhd" else 1e-7
    for got, want in ((after.spacing_mm, before.spacing_mm), (after.origin_mm, before.origin_mm)):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=0)
    np.testing.assert_allclose(after.direction, before.direction, rtol=0, atol=tolerance)


def test_declared_convention_and_float_output(tmp_path: Path) -> None:
    source = write_volume(ct_volume(np.rint(phantom_hu()) + 1000.0), tmp_path / "phantom.mha")
    with pytest.raises(SeriesError, match="looks like raw stored values"):
        denoise_volume_path(
            input_path=source,
            output_path=tmp_path / "out.mha",
            request=IDENTITY_REQUEST,
        )
    out = denoise_volume_path(
        input_path=source,
        output_path=tmp_path / "out.mha",
        request=IDENTITY_REQUEST,
        convention=HUConvention(offset=-1000.0),
        pixel_type="float32",
    )
    back = read_volume(out)
    assert back.pixel_id == "float32"
    expected = identity_output(np.rint(phantom_hu()))
    np.testing.assert_allclose(back.hu, expected, atol=1e-3)  # float32 unit round trip


def test_unsafe_outputs_are_refused_before_any_work(tmp_path: Path) -> None:
    source = write_volume(ct_volume(), tmp_path / "in.nrrd")
    for target, message in (
        (source, "is the input volume"),
        (tmp_path / "out.dcm", "names no volume format"),
    ):
        with pytest.raises(OutputError, match=message):
            denoise_volume_path(input_path=source, output_path=target, request=IDENTITY_REQUEST)


def test_also_save_writes_volumes_beside_the_series(tmp_path: Path) -> None:
    make_series(tmp_path / "dicom", n_slices=4, orientation=oblique(15.0))
    info = find_series(tmp_path / "dicom").series[0]
    series = read_series(info)
    folder = tmp_path / "out" / "series.denoised"
    paths = save_series_volumes(series, folder=folder, formats=["nifti", "mha"])
    assert [p.name for p in paths] == ["series.denoised.nii.gz", "series.denoised.mha"]
    volume = read_volume(paths[1])
    np.testing.assert_array_equal(volume.hu, series.hu)
    np.testing.assert_allclose(volume.origin_mm, info.origin_mm)
    np.testing.assert_allclose(np.reshape(volume.direction, (3, 3)), info.direction, atol=1e-9)


def test_evaluate_volumes_on_one_grid_and_refuse_others(tmp_path: Path) -> None:
    reference = write_volume(ct_volume(), tmp_path / "reference.mha")
    denoised = write_volume(ct_volume(phantom_hu(seed=1)), tmp_path / "denoised.nii.gz")
    _, files = evaluate_volume_paths(denoised_path=denoised, reference_path=reference, out_dir=tmp_path / "r")
    report_json = files.json
    assert report_json.is_file()
    shifted = replace(ct_volume(), origin_mm=(0.0, 0.0, 0.0))
    other = write_volume(shifted, tmp_path / "shifted.mha")
    with pytest.raises(
        SeriesError, match=r"shifted\.mha and .*reference\.mha are not on the same grid: origin"
    ):
        evaluate_volume_paths(denoised_path=other, reference_path=reference, out_dir=tmp_path / "r2")


def test_pixels_the_model_never_saw_get_one_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trained = replace(IDENTITY.card, pixel_mm_range=(0.6, 1.0))  # the fixture has 0.7 x 0.8 mm pixels
    model = replace(IDENTITY, card=trained)
    familiar = write_volume(ct_volume(), tmp_path / "familiar.mha")
    coarse = replace(ct_volume(), spacing_mm=(2.5, 1.5, 1.5))
    unfamiliar = write_volume(coarse, tmp_path / "coarse.mha")
    with caplog.at_level("WARNING", logger="meddenoise"):
        denoise_volume_path(
            input_path=familiar,
            output_path=tmp_path / "a.mha",
            request=RunRequest(model=model, settings=SETTINGS),
        )
        assert not caplog.records
        out = denoise_volume_path(
            input_path=unfamiliar,
            output_path=tmp_path / "b.mha",
            request=RunRequest(model=model, settings=SETTINGS),
        )
    [record] = caplog.records
    assert (
        "coarse.mha" in record.getMessage()
        and "pixel size 1.5 mm is outside the 0.6-1 mm" in record.getMessage()
    )
    written = read_volume(unfamiliar).hu  # warned, and still denoised
    np.testing.assert_array_equal(read_volume(out).hu, identity_output(written))
