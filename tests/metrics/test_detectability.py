"""Tests for meddenoise.metrics.detectability: the Laguerre–Gauss CHO, on synthetic discs with a
known answer and on the real simulated CCT189 low-contrast phantom at three doses; and the helpers
of benchmarks/detectability.py that make the simulated ensemble."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from meddenoise.metrics import Insert, annulus_mask, find_inserts
from meddenoise.metrics.detectability import (
    CHANNELS,
    WIDTH_PER_RADIUS,
    CHOResult,
    channel_outputs,
    cho_detectability,
    cho_dprime,
    detectability_by_insert,
    dprime_ratio,
    held_out_dprime,
    insert_roi_px,
    laguerre_gauss_channels,
)
from tests.conftest import REPO_ROOT, require_shared

Array = npt.NDArray[np.float64]
LCD = "fixtures/lcd-ct-phantom-3doses"
SIZE_PX = 48
CENTER = (24.0, 24.0)


def _disc(radius_px: float, contrast_hu: float) -> tuple[Insert, Array]:
    mask = annulus_mask(shape=(SIZE_PX, SIZE_PX), center_rc=CENTER, inner_px=0, outer_px=radius_px)
    insert = Insert(mask=mask, center_rc=CENTER, radius_px=radius_px, contrast_hu=contrast_hu)
    return insert, contrast_hu * mask.astype(np.float64)


def _noise(rng: np.random.Generator, n: int, sd_hu: float, blur_px: float = 0.0) -> Array:
    """n white (blur 0) or low-pass correlated Gaussian noise images with SD ``sd_hu``."""
    white = rng.normal(0.0, 1.0, (n, SIZE_PX, SIZE_PX))
    if blur_px > 0:
        white = ndimage.gaussian_filter(white, sigma=(0, blur_px, blur_px))
        white /= white.std()
    return sd_hu * white


def _cho(*, contrast_hu: float, sd_hu: float, n: int, seed: int, blur_px: float = 0.0) -> CHOResult:
    rng = np.random.default_rng(seed)
    insert, signal = _disc(5.0, contrast_hu)
    present = _noise(rng, n, sd_hu, blur_px) + signal
    return cho_detectability(present=present, absent=_noise(rng, n, sd_hu, blur_px), insert=insert)


def _analytic_white_cho_d2(signal: Array, insert: Insert, sd_hu: float) -> float:
    """The CHO's true d′² in white noise: (Us)ᵀ (σ² UUᵀ)⁻¹ (Us), on the same ROI and channels."""
    size = insert_roi_px(insert)
    top = round(insert.center_rc[0]) - size // 2
    left = round(insert.center_rc[1]) - size // 2
    roi = signal[top : top + size, left : left + size].ravel()
    centre = (insert.center_rc[0] - top, insert.center_rc[1] - left)
    u = laguerre_gauss_channels(
        size_px=size, width_px=WIDTH_PER_RADIUS * insert.radius_px, channels=CHANNELS, center_rc=centre
    )
    v = u @ roi
    return float(v @ np.linalg.solve(sd_hu**2 * (u @ u.T), v))


def test_white_noise_dprime_matches_the_ideal_observer() -> None:
    insert, signal = _disc(5.0, 10.0)
    ideal = float(np.sqrt((signal**2).sum())) / 20.0  # ideal observer: ||s|| / sigma
    analytic = np.sqrt(_analytic_white_cho_d2(signal, insert, 20.0))
    assert 0.94 * ideal < analytic <= ideal  # the channels hold nearly all of the disc
    result = _cho(contrast_hu=10.0, sd_hu=20.0, n=300, seed=1)
    assert result.dprime == pytest.approx(analytic, rel=0.08)
    assert result.n_present == result.n_absent == 300 and result.channels == CHANNELS
    assert "Laguerre-Gauss" in result.describe() and "jackknife" in result.describe()


def test_unbiased_estimate_with_ten_images_per_class() -> None:
    """With 10 + 10 images, the corrected d′² averages to the truth; resubstitution overshoots and
    leave-one-out undershoots."""
    insert, signal = _disc(5.0, 10.0)
    truth = _analytic_white_cho_d2(signal, insert, 20.0)
    results = [_cho(contrast_hu=10.0, sd_hu=20.0, n=10, seed=seed) for seed in range(60)]
    unbiased = np.mean([r.dprime_squared for r in results])
    assert unbiased == pytest.approx(truth, rel=0.2)
    assert np.mean([r.dprime_resubstitution**2 for r in results]) > 1.4 * truth
    assert np.mean([r.dprime_leave_one_out for r in results]) < np.sqrt(truth)
    spread = np.std([r.dprime for r in results])
    assert 0.8 * spread < np.mean([r.dprime_sd for r in results]) < 1.6 * spread  # jackknife SD


@pytest.mark.parametrize("blur_px", [0.0, 1.5])
def test_dprime_grows_with_contrast_and_falls_with_noise(blur_px: float) -> None:
    by_contrast = [
        cho_dprime(
            present=_noise(np.random.default_rng(c), 80, 20.0, blur_px) + _disc(5.0, c)[1],
            absent=_noise(np.random.default_rng(c + 100), 80, 20.0, blur_px),
            insert=_disc(5.0, c)[0],
        )
        for c in (5, 10, 20)
    ]
    assert by_contrast[0] < by_contrast[1] < by_contrast[2], by_contrast
    by_noise = [_cho(contrast_hu=10.0, sd_hu=sd, n=80, seed=3, blur_px=blur_px).dprime for sd in (5, 10, 20)]
    assert by_noise[0] > by_noise[1] > by_noise[2], by_noise


def test_bad_inputs_are_refused() -> None:
    insert, _ = _disc(5.0, 10.0)
    images = np.zeros((10, SIZE_PX, SIZE_PX))
    with pytest.raises(ValueError, match="too few"):
        cho_detectability(present=images[:2], absent=images[:2], insert=insert)
    with pytest.raises(ValueError, match="absent images"):
        cho_detectability(present=images, absent=images[:, :40], insert=insert)
    corner = Insert(mask=insert.mask, center_rc=(3.0, 3.0), radius_px=5.0, contrast_hu=10.0)
    with pytest.raises(ValueError, match="leaves"):
        cho_detectability(present=images, absent=images, insert=corner)
    with pytest.raises(ValueError, match="no insert"):
        detectability_by_insert(present=images, absent=images, truth_hu=np.zeros((SIZE_PX, SIZE_PX)))


def test_channel_outputs_are_what_the_cho_scores() -> None:
    rng = np.random.default_rng(4)
    insert, signal = _disc(5.0, 10.0)
    present, absent = _noise(rng, 30, 20.0) + signal, _noise(rng, 30, 20.0)
    v_p, v_a = (channel_outputs(images=s, insert=insert) for s in (present, absent))
    assert v_p.shape == v_a.shape == (30, CHANNELS)
    result = cho_detectability(present=present, absent=absent, insert=insert)
    ratio, sd = dprime_ratio(inputs=(v_p, v_a), outputs=(v_p, v_a))
    assert ratio == pytest.approx(1.0) and sd == pytest.approx(0.0, abs=1e-12)
    pooled, _ = dprime_ratio(inputs=(v_p[:, None], v_a[:, None]), outputs=(v_p[:, None], v_a[:, None]))
    assert pooled == pytest.approx(1.0)
    assert result.dprime_held_out == pytest.approx(held_out_dprime(present=v_p, absent=v_a))


def test_held_out_dprime_is_close_below_the_truth_with_many_images() -> None:
    insert, signal = _disc(5.0, 10.0)
    truth = np.sqrt(_analytic_white_cho_d2(signal, insert, 20.0))
    held = [_cho(contrast_hu=10.0, sd_hu=20.0, n=100, seed=seed).dprime_held_out for seed in range(8)]
    assert 0.8 * truth < np.mean(held) < 1.05 * truth, (np.mean(held), truth)
    few = np.zeros((3, CHANNELS))
    assert np.isnan(held_out_dprime(present=few, absent=few))


def test_dprime_ratio_sees_a_loss_and_its_jackknife_sd_is_right() -> None:
    """Outputs = inputs plus as much independent noise again: d′ falls to 1/√2; the paired
    jackknife SD matches the spread of the ratio over repeats."""
    rng = np.random.default_rng(7)
    shift = np.array([1.5, 0.5, 0.0])
    found, sds = [], []
    for _ in range(40):
        v_in = (rng.normal(0.0, 1.0, (60, 3)) + shift, rng.normal(0.0, 1.0, (60, 3)))
        v_out = (v_in[0] + rng.normal(0.0, 1.0, (60, 3)), v_in[1] + rng.normal(0.0, 1.0, (60, 3)))
        ratio, sd = dprime_ratio(inputs=v_in, outputs=v_out)
        found.append(ratio)
        sds.append(sd)
    assert np.mean(found) == pytest.approx(np.sqrt(0.5), abs=0.05)
    assert 0.7 * np.std(found) < np.mean(sds) < 1.5 * np.std(found)
    with pytest.raises(ValueError, match="differ"):
        dprime_ratio(inputs=(v_in[0], v_in[1]), outputs=(v_in[0][:10], v_in[1]))


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """benchmarks/detectability.py, imported as a module (it imports its sibling phantom_texture)."""
    folder = str(REPO_ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("bench_detectability", f"{folder}/detectability.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(folder)


def test_simulated_realisations_equal_the_simulator(bench: ModuleType) -> None:
    """The benchmark's one-projection fast path gives simulate_from_settings' noise, seed for seed."""
    from meddenoise.simulate import FanBeamGeometry, SimulationSettings, simulate_from_settings

    _, signal = _disc(5.0, 10.0)
    truth = (signal - 1000.0 * (np.hypot(*np.mgrid[-24:24, -24:24]) > 22)).astype(np.float32)
    geometry = FanBeamGeometry(n_detectors=96, n_views=64, fov_mm=260.0)
    settings = SimulationSettings(
        dose_fraction=0.5, i0=2e4, mode="pre-log", geometry=geometry, view_binning=4
    )
    fast = bench.simulate_realisations(truth, n=6, settings=settings, pixel_mm=4.0, seed=3)
    slow = simulate_from_settings(
        np.repeat(truth[None], 6, axis=0), pixel_mm=(4.0, 4.0), settings=settings, seed=3
    )
    assert fast.shape == (6, SIZE_PX, SIZE_PX) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, atol=1e-3)
    assert bench.noise_sd(fast) > 1.0 and len({float(s.std()) for s in fast}) == 6


def test_absent_truth_and_verdicts(bench: ModuleType) -> None:
    _, signal = _disc(5.0, 10.0)
    truth = (signal - 1000.0 * (np.hypot(*np.mgrid[-24:24, -24:24]) > 22)).astype(np.float32)
    absent = bench.absent_truth(truth)
    assert np.all(absent[truth > -500] == 0.0) and np.all(absent[truth < -500] == truth[truth < -500])
    assert bench.verdict(0.98, 0.03, 2.0, 0.2) == "PASS"
    assert bench.verdict(0.80, 0.04, 2.0, 0.2) == "FAIL"
    assert bench.verdict(0.92, 0.05, 2.0, 0.2) == "open"
    assert bench.verdict(0.50, 0.05, 0.3, 0.2) == "n/a"  # the input barely shows the insert


def _read(path: Path) -> Array:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64) - 1000.0  # stored HU+1000


@pytest.fixture(scope="module")
def lcd() -> tuple[Array, dict[str, tuple[CHOResult, ...]]]:
    """(ground truth in HU, {dose: CHO results per insert}) of the LCD phantom."""
    root = require_shared(LCD)
    truth = _read(root / "ground_truth.mhd")
    results = {}
    for dose in ("010", "100"):
        folder = root / f"dose_{dose}"
        present = _read(folder / "signal_present" / "signal_present.mhd")
        absent = _read(folder / "signal_absent" / "signal_absent.mhd")
        results[dose] = detectability_by_insert(present=present, absent=absent, truth_hu=truth)
    return truth, results


@pytest.mark.shared_data
def test_four_inserts_with_plausible_radii(lcd: tuple[Array, dict[str, tuple[CHOResult, ...]]]) -> None:
    truth, results = lcd
    inserts = find_inserts(truth=truth, background_hu=0.0)
    assert len(inserts) == 4 and all(len(r) == 4 for r in results.values())
    radii = [i.radius_px for i in inserts]
    assert radii == sorted(radii) and radii[0] > 2.0 and radii[-1] < 10.0  # CCT189: 3, 5, 7, 10 mm discs
    assert all(insert_roi_px(i) < 50 for i in inserts)  # small ROIs that stay clear of each other


@pytest.mark.shared_data
def test_dprime_higher_at_full_dose(lcd: tuple[Array, dict[str, tuple[CHOResult, ...]]]) -> None:
    _, results = lcd
    low, full = results["010"], results["100"]
    for lo, hi in zip(low[2:], full[2:], strict=True):  # the two largest inserts
        assert hi.dprime > lo.dprime, (lo.describe(), hi.describe())
    assert sum(r.dprime_squared for r in full) > 2 * sum(r.dprime_squared for r in low)
