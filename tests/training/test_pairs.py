"""Simulated pair runs: simulated once, then loaded from the cache; the key covers what made them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meddenoise.dicom import find_series, read_series
from meddenoise.simulate import SimulationSettings
from meddenoise.training.pairs import RunRequest, build_runs, regrid, run_starts, series_under
from tests.dicom.synthetic import make_series
from tests.test_pipeline import write_phantom

SETTINGS = SimulationSettings(dose_fraction=0.25)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("phantom") / "series", size=64, slices=3)


def test_a_run_is_simulated_once_then_loaded_from_the_cache(tmp_path: Path, phantom: Path) -> None:
    info = find_series(phantom).series[0]
    request = RunRequest(info=info, start=1, length=2, settings=SETTINGS, seed=5)
    (first,) = build_runs([request], cache_dir=tmp_path / "cache")
    cached = tmp_path / "cache" / f"{request.key()}.npz"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached.name]  # no temp file left
    full = read_series(info).hu[1:3]
    np.testing.assert_array_equal(first.full_hu, np.rint(full).astype(np.int16))
    assert first.low_hu.shape == (2, 64, 64) and first.low_hu.dtype == np.int16
    assert np.abs(first.low_hu.astype(float) - first.full_hu).std() > 5  # noise was added
    assert first.pixel_mm == pytest.approx(info.spacing_mm[1:]) and first.dose_fraction == 0.25

    mtime = cached.stat().st_mtime_ns
    (second,) = build_runs([request], cache_dir=tmp_path / "cache")
    assert cached.stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(second.low_hu, first.low_hu)
    np.testing.assert_array_equal(second.full_hu, first.full_hu)

    # Proof that the second build read the file rather than simulating again: change the file.
    with np.load(cached) as data:
        content = dict(data)
    content["low_hu"] = np.zeros_like(content["low_hu"])
    np.savez(cached, **content)
    (third,) = build_runs([request], cache_dir=tmp_path / "cache")
    assert not third.low_hu.any()


def test_the_cache_key_covers_series_slices_settings_and_seed(phantom: Path) -> None:
    info = find_series(phantom).series[0]
    base = RunRequest(info=info, start=0, length=2, settings=SETTINGS, seed=1)
    variants = [
        RunRequest(info=info, start=1, length=2, settings=SETTINGS, seed=1),
        RunRequest(info=info, start=0, length=3, settings=SETTINGS, seed=1),
        RunRequest(info=info, start=0, length=2, settings=SimulationSettings(dose_fraction=0.5), seed=1),
        RunRequest(info=info, start=0, length=2, settings=SETTINGS, seed=2),
    ]
    finer = RunRequest(info=info, start=0, length=2, settings=SETTINGS, seed=1, pixel_scale=0.7)
    keys = {base.key(), finer.key(), *(v.key() for v in variants)}
    assert len(keys) == 6
    assert base.key() == RunRequest(info=info, start=0, length=2, settings=SETTINGS, seed=1).key()


def test_run_starts_spread_over_the_series() -> None:
    assert run_starts(n_slices=20, runs=3, length=8) == [0, 6, 12]
    assert run_starts(n_slices=5, runs=3, length=8) == [0]  # a short series gives one run
    assert run_starts(n_slices=20, runs=0, length=8) == []


def test_series_under_skips_series_with_fatal_problems(tmp_path: Path, phantom: Path) -> None:
    make_series(tmp_path / "broken", positions_mm=[(0, 0, 0), (0, 0, 2.5), (0, 0, 10)])
    found = list(series_under((phantom, tmp_path / "broken")))
    assert [info.shape for info in found] == [(3, 64, 64)]


def test_a_run_on_a_finer_grid_is_the_same_field_of_view_with_smaller_pixels(
    tmp_path: Path, phantom: Path
) -> None:
    info = find_series(phantom).series[0]
    request = RunRequest(info=info, start=0, length=2, settings=SETTINGS, seed=5, pixel_scale=0.5)
    (run,) = build_runs([request], cache_dir=tmp_path / "cache")
    assert run.full_hu.shape == run.low_hu.shape == (2, 128, 128)
    assert run.pixel_mm == pytest.approx(tuple(p / 2 for p in info.spacing_mm[1:]))
    full = read_series(info).hu[0:2]
    # Same anatomy, more pixels: the mean HU of the body is kept and the low dose is noisier.
    body = full > -500
    finer_body = run.full_hu > -500
    assert abs(run.full_hu[finer_body].mean() - full[body].mean()) < 15
    assert np.abs(run.low_hu.astype(float) - run.full_hu).std() > 5


def test_regrid_averages_to_coarser_pixels_and_carries_the_padding_mask() -> None:
    hu = np.zeros((1, 32, 32), dtype=np.float32)
    hu[0, :16, :16] = 100.0
    hu[0, 1, 1] = 180.0  # one bright pixel is averaged with its 2x2 block
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 16:, 16:] = True
    coarse, pixel_mm, coarse_mask = regrid(hu, (0.5, 0.6), 2.0, mask)
    assert coarse.shape == (1, 16, 16) and pixel_mm == pytest.approx((1.0, 1.2))
    assert coarse[0, 0, 0] == pytest.approx(120.0) and coarse[0, 4, 4] == pytest.approx(100.0)
    assert coarse[0, 12, 12] == 0.0
    assert coarse_mask is not None and coarse_mask[0, 8:, 8:].all() and not coarse_mask[0, :8].any()
    fine, fine_mm, _ = regrid(hu, (0.5, 0.6), 0.5)
    assert fine.shape == (1, 64, 64) and fine_mm == pytest.approx((0.25, 0.3))
    assert fine[0, 40:, 40:] == pytest.approx(0.0, abs=1e-4)  # far from the edge, still zero
