"""Real low-/full-dose readers: AAPM/Mayo 2016 and TCIA layouts, built here from shared real CT."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from meddenoise.errors import ConfigError, SeriesError
from meddenoise.training import load_recipe
from meddenoise.training.data import prepare_data
from meddenoise.training.sources import aapm_pairs, runs_of, tcia_pairs
from tests.training.layouts import build_tcia, set_tags, write_recipe


@pytest.fixture(scope="module")
def tcia(aapm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tcia(tmp_path_factory.mktemp("tcia") / "LDCT-and-Projection-data", aapm=aapm)


@pytest.fixture
def aapm_copy(aapm: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(aapm, tmp_path / "aapm"))


def test_aapm_pairs_slices_by_position_and_reads_runs(aapm: Path) -> None:
    pairs = aapm_pairs(aapm, thickness="3mm")
    assert [p.patient for p in pairs] == ["L067", "L096"]
    pair = pairs[0]
    assert pair.dose_fraction == 0.25 and pair.low_folder == aapm / "L067" / "quarter_3mm"
    offsets = [
        (a.normal_offset_mm, b.normal_offset_mm)
        for a, b in zip(pair.full.slices, pair.low.slices, strict=True)
    ]
    assert all(abs(a - b) < 1e-3 for a, b in offsets) and len(offsets) == 3
    (run,) = list(runs_of(pair, slices=3, run_length=8))
    assert run.full_hu.shape == run.low_hu.shape == (3, 512, 512) and run.full_hu.dtype == np.int16
    assert run.full_hu.min() >= -1024  # the -3024 padding became air at both doses
    noise = run.low_hu.astype(float) - run.full_hu
    assert 5 < noise[:, 150:350, 150:350].std() < 200  # a real quarter-dose-like difference


def test_one_patient_folder_is_a_root_too(aapm: Path) -> None:
    (pair,) = aapm_pairs(aapm / "L096", thickness="3mm")
    assert pair.patient == "L096"


def test_a_slice_at_one_dose_only_names_position_and_folders(aapm_copy: Path) -> None:
    sorted((aapm_copy / "L067" / "quarter_3mm").iterdir())[1].unlink()
    with pytest.raises(SeriesError) as err:
        aapm_pairs(aapm_copy, thickness="3mm")
    message = str(err.value)
    assert "L067/full_3mm has a slice at -127.69 mm" in message
    assert "no partner in" in message and "L067/quarter_3mm" in message


def test_an_extra_low_dose_slice_is_named(aapm_copy: Path) -> None:
    sorted((aapm_copy / "L096" / "full_3mm").iterdir())[0].unlink()
    with pytest.raises(SeriesError, match=r"L096/quarter_3mm has a slice at -12[678]\.69 mm .* no partner"):
        aapm_pairs(aapm_copy, thickness="3mm")


def test_a_different_pixel_spacing_is_a_geometry_error(aapm_copy: Path) -> None:
    set_tags(aapm_copy / "L067" / "quarter_3mm", PixelSpacing=["0.7", "0.7"])
    with pytest.raises(SeriesError, match=r"quarter_3mm and .*full_3mm differ in pixel spacing"):
        aapm_pairs(aapm_copy, thickness="3mm")


def test_a_shifted_field_of_view_is_a_geometry_error(aapm_copy: Path) -> None:
    folder = aapm_copy / "L067" / "quarter_3mm"
    for path in folder.iterdir():
        from pydicom import dcmread

        ds = dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x + 5:.3f}", f"{y:.3f}", f"{z:.6f}"]
        ds.save_as(path)
    with pytest.raises(SeriesError, match="differ in field of view"):
        aapm_pairs(aapm_copy, thickness="3mm")


def test_wrong_layout_says_what_was_expected_and_found(tmp_path: Path, aapm: Path) -> None:
    shutil.copytree(aapm / "L067" / "full_3mm", tmp_path / "full")
    shutil.copytree(aapm / "L067" / "quarter_3mm", tmp_path / "low")
    with pytest.raises(ConfigError) as err:
        aapm_pairs(tmp_path, thickness="3mm")
    message = str(err.value)
    assert "not in the AAPM/Mayo 2016 layout" in message
    assert "<patient>/full_3mm and <patient>/quarter_3mm" in message and "found full/, low/" in message


def test_wrong_thickness_is_a_layout_error(aapm: Path) -> None:
    with pytest.raises(ConfigError, match="expected <patient>/full_1mm"):
        aapm_pairs(aapm, thickness="1mm")


def test_a_patient_without_its_quarter_dose_folder_is_named(aapm_copy: Path) -> None:
    shutil.rmtree(aapm_copy / "L096" / "quarter_3mm")
    with pytest.raises(ConfigError, match=r"L096 has no quarter_3mm folder .* found full_3mm/"):
        aapm_pairs(aapm_copy, thickness="3mm")


def test_a_missing_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.aapm_root = .* is not a folder"):
        aapm_pairs(tmp_path / "nowhere", thickness="3mm")


def test_tcia_pairs_by_series_description_with_the_collection_doses(tcia: Path) -> None:
    pairs = tcia_pairs(tcia, full_text="full dose", low_text="low dose")
    assert [(p.patient, p.dose_fraction) for p in pairs] == [("C002", 0.10), ("L004", 0.25)]
    assert pairs[1].low.description == "Low Dose Images" and "Full Dose" in pairs[1].full_folder.name


def test_tcia_without_a_low_dose_series_lists_what_it_found(tcia: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tcia, tmp_path / "tcia"))
    (low,) = (root / "L004").glob("*/2.*")
    set_tags(low, SeriesDescription="Quarter")
    with pytest.raises(ConfigError) as err:
        tcia_pairs(root, full_text="full dose", low_text="low dose")
    assert "L004: expected one series whose SeriesDescription contains 'full dose'" in str(err.value)
    assert "found 'Full Dose Images', 'Quarter'" in str(err.value)
    (pair,) = tcia_pairs(root, full_text="full dose", low_text="quarter", patients=("L004",))
    assert pair.low.description == "Quarter"


def test_tcia_root_of_files_is_a_layout_error(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"not in the TCIA LDCT-and-Projection-data layout.*found a.dcm"):
        tcia_pairs(tmp_path, full_text="full dose", low_text="low dose")


def test_a_recipe_on_real_sources_prepares_train_and_validation_runs(
    aapm: Path, tcia: Path, tmp_path: Path
) -> None:
    path = write_recipe(
        tmp_path / "r.toml",
        out_dir=tmp_path / "run",
        aapm_root=aapm,
        data={"tcia_root": str(tcia), "tcia_validation_patients": ["C002"]},
    )
    data = prepare_data(load_recipe(path))
    assert len(data.train_runs) == 2 and len(data.validation_runs) == 4  # L067, L004 / L096, C002
    assert {r.dose_fraction for r in data.validation_runs} == {0.25, 0.10}
    assert {p["role"] for p in data.provenance} == {"train", "validation"}
    assert any("AAPM" in p["collection"] for p in data.provenance)
    assert set(data.series_names.values()) == {"L096", "C002"}


def test_validation_patients_need_their_root(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[data]\ntrain_sets = ["x"]\naapm_validation_patients = ["L096"]\n')
    with pytest.raises(
        ConfigError, match=r"data\.aapm_validation_patients is set but data\.aapm_root is not"
    ):
        load_recipe(path)


def test_an_unknown_validation_patient_is_named(aapm: Path, tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path / "r.toml",
        out_dir=tmp_path / "run",
        aapm_root=aapm,
        data={"aapm_validation_patients": ["L999"]},
    )
    with pytest.raises(ConfigError, match=r"names 'L999', which is not a patient under .*found: L067, L096"):
        prepare_data(load_recipe(path))
