"""The pipeline API end to end: read → denoise → write → evaluate, on small real-format series."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from meddenoise.dicom import find_series
from meddenoise.dicom.create import write_new_series
from meddenoise.inference import InferenceSettings
from meddenoise.models import load_model
from meddenoise.phantom import torso_phantom
from meddenoise.pipeline import (
    denoise_series,
    evaluate_paths,
    model_derivation,
    read_series,
    write_series,
)
from tests.conftest import run_denoise, save_tiny_model
from tests.dicom.synthetic import make_series

CPU = InferenceSettings(device="cpu", threads=1)


def write_phantom(folder: Path, *, size: int = 64, slices: int = 3) -> Path:
    """A small noise-free torso phantom series (body about 330 mm wide whatever ``size`` is)."""
    pixel_mm = 384.0 / size
    hu = torso_phantom(size=size, slices=slices, pixel_mm=pixel_mm)
    return write_new_series(hu=hu, pixel_mm=pixel_mm, slice_mm=3.0, folder=folder)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _by_position(folder: Path) -> dict[tuple[float, ...], Dataset]:
    files = [dcmread(p) for p in sorted(folder.iterdir())]
    return {tuple(round(float(v), 3) for v in ds.ImagePositionPatient): ds for ds in files}


def test_strength_zero_returns_input_hu_exactly_and_the_written_series_round_trips(
    tmp_path: Path, tiny_model: Path
) -> None:
    written = make_series(
        tmp_path / "in", n_slices=3, slopes=[1.0, 0.5, 2.0], intercepts=[-1024.0, -1000.0, -1024.0]
    )
    series = read_series(tmp_path / "in")
    np.testing.assert_array_equal(series.hu, written.hu)
    settings = InferenceSettings(device="cpu", threads=1, strength=0.0)
    denoised = denoise_series(series, model=tiny_model, settings=settings)
    np.testing.assert_array_equal(denoised.hu, series.hu)
    assert denoised.info == series.info
    derivation = model_derivation(load_model(tiny_model), settings)
    folder = write_series(denoised, out_dir=tmp_path / "out", derivation=derivation)
    back = read_series(folder)
    np.testing.assert_array_equal(back.hu, series.hu)  # every HU here is representable exactly


def test_output_keeps_geometry_and_maps_slices_back_by_position(tmp_path: Path, tiny_model: Path) -> None:
    written = make_series(tmp_path / "in", n_slices=5, shuffle=True, seed=7)
    (outcome,) = run_denoise(
        input_path=tmp_path / "in", out_dir=tmp_path / "out", model=tiny_model, settings=CPU
    )
    assert outcome.source_series_uid == written.series_uid
    assert outcome.output_folder == tmp_path / "out" / f"{written.series_uid}-denoised"
    expected = denoise_series(read_series(tmp_path / "in"), model=tiny_model, settings=CPU)
    sources = {
        tuple(round(v, 3) for v in p): dcmread(path)
        for p, path in zip(written.positions_mm, written.paths, strict=True)
    }
    outputs = _by_position(outcome.output_folder)
    assert outputs.keys() == sources.keys()
    new_uids = set()
    for index, ref in enumerate(expected.info.slices):
        position = tuple(round(v, 3) for v in ref.position_mm)
        out, src = outputs[position], sources[position]
        assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert [float(v) for v in out.ImageOrientationPatient] == [
            float(v) for v in src.ImageOrientationPatient
        ]
        assert [float(v) for v in out.PixelSpacing] == [float(v) for v in src.PixelSpacing]
        assert (out.StudyInstanceUID, out.FrameOfReferenceUID) == (
            src.StudyInstanceUID,
            src.FrameOfReferenceUID,
        )
        assert list(out.ImageType)[:3] == ["DERIVED", "SECONDARY", "AXIAL"]
        assert "tiny v0.1" in out.DerivationDescription
        hu = out.pixel_array * float(out.RescaleSlope) + float(out.RescaleIntercept)
        np.testing.assert_allclose(hu, expected.hu[index], atol=0.5 * float(out.RescaleSlope) + 1e-3)
        new_uids.add(out.SeriesInstanceUID)
        assert out.SOPInstanceUID != src.SOPInstanceUID
    assert len(new_uids) == 1 and written.series_uid not in new_uids


def test_a_one_slice_series_denoises_with_a_2_5d_model(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "ctx3.pt", context_slices=3)
    make_series(tmp_path / "in", n_slices=1, nested=False)
    (outcome,) = run_denoise(input_path=tmp_path / "in", out_dir=tmp_path / "out", model=model, settings=CPU)
    back = read_series(outcome.output_folder)
    assert back.hu.shape == (1, 128, 128) and np.isfinite(back.hu).all()


def test_a_series_with_pixels_the_model_never_saw_is_denoised_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_model(save_tiny_model(tmp_path / "tiny.pt"))
    coarse_only = replace(loaded, card=replace(loaded.card, pixel_mm_range=(1.2, 1.5)))
    series = read_series(make_series(tmp_path / "in", n_slices=2).folder)  # 0.66 mm pixels
    with caplog.at_level("WARNING", logger="meddenoise"):
        denoise_series(series, model=loaded, settings=CPU)
        assert not caplog.records  # a card without a range never warns
        out = denoise_series(series, model=coarse_only, settings=CPU)
    [record] = caplog.records
    assert series.info.series_uid in record.getMessage()
    assert "pixel size 0.661 mm is outside the 1.2-1.5 mm" in record.getMessage()
    assert out.hu.shape == series.hu.shape


@pytest.mark.parametrize(
    ("added_noise", "told", "logged"), [(120.0, None, True), (120.0, 120.0, False), (5.0, None, False)]
)
def test_the_log_says_when_the_models_noise_cap_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, added_noise: float, told: float | None, logged: bool
) -> None:
    loaded = load_model(save_tiny_model(tmp_path / "tiny.pt", noise_channel=True))
    capped = replace(loaded, card=replace(loaded.card, noise_level_cap_hu=60.0))
    hu = torso_phantom(size=192, slices=2, pixel_mm=2.0)
    hu = hu + np.random.default_rng(3).normal(0.0, added_noise, size=hu.shape).astype(np.float32)
    write_new_series(hu=hu, pixel_mm=2.0, slice_mm=3.0, folder=tmp_path / "in")
    with caplog.at_level("INFO", logger="meddenoise"):
        run_denoise(
            input_path=tmp_path / "in",
            out_dir=tmp_path / "out",
            model=capped,
            settings=replace(CPU, noise_level_hu=told),
        )
    capped_lines = [r.getMessage() for r in caplog.records if "noise-map cap" in r.getMessage()]
    assert len(capped_lines) == int(logged)
    if logged:
        assert "as if it had 60 HU" in capped_lines[0] and "--noise-level" in capped_lines[0]


def test_several_series_in_one_folder_are_all_denoised_or_only_the_chosen(
    tmp_path: Path, tiny_model: Path
) -> None:
    first = make_series(tmp_path / "in", n_slices=2, nested=False, seed=1)
    second = make_series(tmp_path / "in", n_slices=3, nested=False, seed=2)
    both = run_denoise(input_path=tmp_path / "in", out_dir=tmp_path / "all", model=tiny_model, settings=CPU)
    assert {o.source_series_uid for o in both} == {first.series_uid, second.series_uid}
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"{uid}-denoised" for uid in (first.series_uid, second.series_uid)
    )
    (only,) = run_denoise(
        input_path=tmp_path / "in",
        out_dir=tmp_path / "one",
        model=tiny_model,
        settings=CPU,
        series_uids=[second.series_uid],
    )
    assert only.source_series_uid == second.series_uid
    assert [p.name for p in (tmp_path / "one").iterdir()] == [f"{second.series_uid}-denoised"]
    assert read_series(only.output_folder).hu.shape == (3, 128, 128)


def test_reference_writes_a_report_beside_the_output_stating_its_protocols(
    tmp_path: Path, tiny_model: Path
) -> None:
    make_series(tmp_path / "in", n_slices=3)
    settings = InferenceSettings(device="cpu", threads=1, strength=0.0)
    (outcome,) = run_denoise(
        input_path=tmp_path / "in",
        out_dir=tmp_path / "out",
        model=tiny_model,
        settings=settings,
        reference_path=tmp_path / "in",
    )
    assert outcome.report.json.parent == outcome.output_folder.with_name(
        outcome.output_folder.name + ".report"
    )
    report = json.loads((outcome.report.json.parent / "report.json").read_text())
    assert set(report["protocols"]) == {"abdomen", "full"}
    assert all("data_range" in text or "data range" in text for text in report["protocols"].values())
    assert report["context"]["model_card"]["name"] == "tiny"
    assert report["series"]["full"]["mean_rmse"] == 0.0  # strength 0 against its own input
    rows = list(csv.DictReader((outcome.report.json.parent / "report.csv").read_text().splitlines()))
    assert len(rows) == 3 * 2 and all(row["protocol_description"] for row in rows)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [outcome.output_folder.name, outcome.report.json.parent.name]
    )


def _copy_as_new_series(paths: list[Path], folder: Path) -> str:
    """Copy slices into a new series (new Series/SOP UIDs, same pixels and positions)."""
    folder.mkdir(parents=True)
    uid = generate_uid()
    for index, path in enumerate(paths):
        ds = dcmread(path)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"x{index}", enforce_file_format=True)
    return uid


def test_evaluate_pairs_slices_by_position_when_the_reference_has_more(tmp_path: Path) -> None:
    reference = make_series(tmp_path / "ref", n_slices=6, shuffle=True, seed=4)
    # The test series holds reference slices 2, 3, 4 (in spatial order), stored in another order.
    _copy_as_new_series([reference.paths[i] for i in (4, 2, 3)], tmp_path / "test")
    _, files = evaluate_paths(
        denoised_path=tmp_path / "test", reference_path=tmp_path / "ref", out_dir=tmp_path / "report"
    )
    json_path, csv_path = files.json, files.csv
    rows = [r for r in csv.DictReader(csv_path.read_text().splitlines()) if r["protocol"] == "full"]
    assert [float(r["position_mm"]) for r in rows] == pytest.approx(
        [reference.positions_mm[i][2] for i in (2, 3, 4)]
    )
    # Slices differ by 10 HU per index, so any mis-pairing would show as a non-zero RMSE.
    assert [float(r["rmse"]) for r in rows] == [0.0, 0.0, 0.0]
    report = json.loads(json_path.read_text())
    assert report["context"]["n_slices"] == 3


class _Interrupt:
    """A progress factory that raises KeyboardInterrupt (as Ctrl-C does) after ``after`` written slices."""

    def __init__(self, after: int) -> None:
        self.after, self.written = after, 0

    @contextmanager
    def __call__(self, *, description: str, total: int) -> Iterator[Callable[[int], None]]:
        def advance(n: int) -> None:
            if description.startswith("write"):
                self.written += n
                if self.written >= self.after:
                    raise KeyboardInterrupt

        yield advance


def test_an_interrupted_write_leaves_no_series_behind(tmp_path: Path, tiny_model: Path) -> None:
    make_series(tmp_path / "in", n_slices=4)
    interrupt = _Interrupt(after=2)
    with pytest.raises(KeyboardInterrupt):
        run_denoise(
            input_path=tmp_path / "in",
            out_dir=tmp_path / "out",
            model=tiny_model,
            settings=CPU,
            progress=interrupt,
        )
    assert interrupt.written == 2
    assert list((tmp_path / "out").iterdir()) == []  # neither a final folder nor a .tmp-* one


def test_a_series_with_one_corrupt_end_slice_is_refused_or_with_allow_gaps_written(
    tmp_path: Path, tiny_model: Path
) -> None:
    written = make_series(tmp_path / "in", n_slices=4, nested=False)
    data = written.paths[0].read_bytes()
    written.paths[0].write_bytes(data[:-500])
    (refused,) = run_denoise(
        input_path=tmp_path / "in", out_dir=tmp_path / "refused", model=tiny_model, settings=CPU
    )
    assert not refused.ok and written.paths[0].name in refused.error  # a lost slice: incomplete
    (outcome,) = run_denoise(
        input_path=tmp_path / "in", out_dir=tmp_path / "out", model=tiny_model, settings=CPU, allow_gaps=True
    )
    assert len(list(outcome.output_folder.iterdir())) == 3
    info = find_series(outcome.output_folder).series[0]
    assert [r.position_mm for r in info.slices] == list(written.positions_mm[1:])


def test_phantom_series_reads_back_as_written(tmp_path: Path) -> None:
    folder = write_phantom(tmp_path / "phantom", size=64, slices=2)
    series = read_series(folder)
    expected = torso_phantom(size=64, slices=2, pixel_mm=6.0)
    np.testing.assert_array_equal(series.hu, np.rint(expected))
    assert series.info.spacing_mm == pytest.approx((3.0, 6.0, 6.0))
    shutil.rmtree(folder)
