"""Low-dose simulation against noise theory: unbiased, sqrt(1/a) scaling, CT texture, contract."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import torch

from meddenoise.simulate import (
    SIEMENS_DEFINITION,
    FanBeamGeometry,
    SimulationSettings,
    simulate_from_settings,
    simulate_low_dose,
)
from meddenoise.simulate.noise import noise_sinogram
from tests.conftest import require_shared

PIXEL = 2.0  # mm; 128 x 128 images cover 256 mm
# same physics as the default scanner with fewer rays, so the statistics tests stay fast
SMALL = FanBeamGeometry(n_detectors=256, n_views=256, fov_mm=300.0)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def coordinates(n: int = 128, pixel: float = PIXEL) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n) - (n - 1) / 2) * pixel
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return xx, yy


def water_phantom(n_slices: int, *, inserts: bool = False) -> np.ndarray:
    """A 0 HU water cylinder (radius 100 mm) in air, optionally with bone and fat inserts."""
    xx, yy = coordinates()
    hu = np.where(xx**2 + yy**2 < 100**2, 0.0, -1000.0)
    if inserts:
        hu = np.where((xx - 55) ** 2 + yy**2 < 18**2, 1000.0, hu)
        hu = np.where((xx + 55) ** 2 + yy**2 < 18**2, -100.0, hu)
    return np.repeat(hu[None].astype(np.float32), n_slices, axis=0)


def simulate(hu: np.ndarray, *, seed: int, **settings: object) -> np.ndarray:
    physics = SimulationSettings(**{"geometry": SMALL, **settings})  # type: ignore[arg-type]
    return simulate_from_settings(hu, pixel_mm=(PIXEL, PIXEL), settings=physics, seed=seed)


CENTRE = (slice(32, 96), slice(32, 96))  # 128 mm square inside the water, away from the inserts' ring


def noise_sd(low: np.ndarray, reference: np.ndarray, roi: tuple[slice, slice] = CENTRE) -> float:
    return float((low - reference)[:, roi[0], roi[1]].std())


def radial_nps(noise: np.ndarray) -> np.ndarray:
    """Radially averaged noise power spectrum of ``[N, h, h]`` ROIs; bin k is k/h cycles per pixel."""
    size = noise.shape[-1]
    centred = noise - noise.mean(axis=(1, 2), keepdims=True)
    power = np.fft.fftshift(np.abs(np.fft.fft2(centred)) ** 2, axes=(1, 2)).mean(axis=0)
    k = np.arange(size) - size // 2
    radius = np.rint(np.hypot(*np.meshgrid(k, k))).astype(int).ravel()
    return (np.bincount(radius, power.ravel()) / np.bincount(radius))[: size // 2]


def test_mean_hu_stays_within_2_hu_in_uniform_regions() -> None:
    full = water_phantom(8, inserts=True)
    xx, yy = coordinates()
    regions = {
        "water": (np.abs(xx) < 30) & (np.abs(yy) < 40),
        "bone": (xx - 55) ** 2 + yy**2 < 12**2,
        "fat": (xx + 55) ** 2 + yy**2 < 12**2,
    }
    for mode in ("extra", "pre-log"):
        low = simulate(full, seed=1, dose_fraction=0.25, mode=mode)
        for name, region in regions.items():
            bias = float((low - full)[:, region].mean())
            assert abs(bias) < 2.0, f"{mode}: mean HU moved by {bias:.2f} in {name}"
        assert noise_sd(low, full) > 5.0  # there is noise to average over


def test_pre_log_noise_grows_as_sqrt_of_inverse_dose() -> None:
    clean = water_phantom(8)
    quarter = simulate(clean, seed=2, dose_fraction=0.25, mode="pre-log")
    full = simulate(clean, seed=3, dose_fraction=1.0, mode="pre-log")
    assert noise_sd(quarter, clean) / noise_sd(full, clean) == pytest.approx(2.0, abs=0.15)


def test_extra_noise_is_what_a_full_dose_scan_lacks() -> None:
    clean = water_phantom(8)
    full_noise = noise_sd(simulate(clean, seed=4, dose_fraction=1.0, mode="pre-log"), clean)
    extra = simulate(clean, seed=5, dose_fraction=0.25, mode="extra")
    assert noise_sd(extra, clean) / full_noise == pytest.approx(math.sqrt(1 / 0.25 - 1), abs=0.12)


def test_view_binning_keeps_the_noise_level() -> None:
    clean = water_phantom(8)
    exact = simulate(clean, seed=8, dose_fraction=0.25)
    binned = simulate(clean, seed=8, dose_fraction=0.25, view_binning=4)
    assert noise_sd(binned, clean) == pytest.approx(noise_sd(exact, clean), rel=0.05)
    assert abs(float((binned - clean)[:, CENTRE[0], CENTRE[1]].mean())) < 2.0
    with pytest.raises(ValueError, match="divisor of n_views=256"):
        SimulationSettings(dose_fraction=0.5, geometry=SMALL, view_binning=3)


def test_noise_has_ct_texture_not_white() -> None:
    clean = water_phantom(8)
    smooth = simulate(clean, seed=6, dose_fraction=0.25, filter="hann") - clean
    sharp = simulate(clean, seed=6, dose_fraction=0.25, filter="ram-lak") - clean
    roi = smooth[:, CENTRE[0], CENTRE[1]]
    neighbour = float(np.mean(roi[:, :, 1:] * roi[:, :, :-1]) / np.mean(roi**2))
    assert neighbour > 0.1  # white noise would give 0
    for noise in (smooth, sharp):
        nps = radial_nps(noise[:, CENTRE[0], CENTRE[1]])
        peak = int(np.argmax(nps[1:])) + 1
        assert nps[1] < 0.3 * nps[peak]  # a ramp-filtered spectrum vanishes towards DC
        assert peak >= 4  # the peak is away from DC (Nyquist is bin 32)
    # Ram-Lak keeps the high frequencies that Hann rolls off: a noisier image (about 2.7x)
    assert noise_sd(sharp + clean, clean) > 2.0 * noise_sd(smooth + clean, clean)


def test_noise_sinogram_keeps_the_dose_factor_inside_the_log() -> None:
    generator = torch.Generator().manual_seed(0)
    p = torch.full((1, 200, 500), 2.0)
    i0 = torch.tensor(1e6)
    pre = noise_sinogram(p, dose_fraction=0.25, i0=i0, sigma_e2=0.0, mode="pre-log", generator=generator)
    assert abs(float(pre.mean())) < 1e-3  # the bug shifts every ray by -ln(a) = 1.39
    assert float(pre.var()) == pytest.approx(math.exp(2.0) / (0.25 * 1e6), rel=0.03)
    extra = noise_sinogram(p, dose_fraction=0.25, i0=i0, sigma_e2=10.0, mode="extra", generator=generator)
    relative = math.exp(2.0) / 1e6
    assert float(extra.var()) == pytest.approx(3 * relative * (1 + 5 * 10.0 * relative), rel=0.03)


def test_bowtie_adds_noise_at_the_edge_of_the_fan() -> None:
    clean = np.repeat(np.where(np.hypot(*coordinates()) < 120, 0.0, -1000.0)[None], 4, axis=0).astype(
        np.float32
    )
    edge = (slice(None), slice(56, 72), slice(4, 20))  # 100-120 mm off centre
    centre = (slice(None), slice(56, 72), slice(56, 72))

    def sd(fraction: float) -> tuple[float, float]:
        # same seed, so the same normal draws: only the per-ray variance differs
        noise = simulate(clean, seed=7, dose_fraction=0.25, bowtie_edge_fraction=fraction) - clean
        return float(noise[edge].std()), float(noise[centre].std())

    (edge_flat, centre_flat), (edge_bowtie, centre_bowtie) = sd(1.0), sd(0.2)
    assert edge_bowtie > 1.1 * edge_flat
    assert centre_bowtie == pytest.approx(centre_flat, rel=0.03)


def test_same_seed_same_result_other_seed_other_noise() -> None:
    full = water_phantom(2)
    first = simulate_low_dose(full, pixel_mm=(PIXEL, PIXEL), dose_fraction=0.3, seed=11)
    again = simulate_low_dose(full, pixel_mm=(PIXEL, PIXEL), dose_fraction=0.3, seed=11)
    other = simulate_low_dose(full, pixel_mm=(PIXEL, PIXEL), dose_fraction=0.3, seed=12)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == full.shape and first.dtype == np.float32


def test_one_slice_float64_input_and_progress() -> None:
    one = water_phantom(1).astype(np.float64)
    low = simulate_low_dose(one, pixel_mm=(PIXEL, PIXEL), dose_fraction=0.5, seed=0)
    assert low.shape == (1, 128, 128) and low.dtype == np.float32
    assert 2.0 < noise_sd(low, one) < 100.0
    done: list[int] = []
    settings = SimulationSettings(dose_fraction=0.5, geometry=SMALL)
    simulate_from_settings(
        water_phantom(3),
        pixel_mm=(PIXEL, PIXEL),
        settings=settings,
        seed=0,
        progress=done.append,
        batch_size=2,
    )
    assert done == [2, 1]


def test_full_dose_extra_noise_returns_the_input() -> None:
    full = water_phantom(2, inserts=True)
    same = simulate_low_dose(full, pixel_mm=(PIXEL, PIXEL), dose_fraction=1.0, seed=0)
    np.testing.assert_array_equal(same, full)
    assert same is not full


def test_padding_is_untouched_and_projects_as_air() -> None:
    xx, yy = coordinates()
    outside = np.hypot(xx, yy) > 125
    padded = water_phantom(1)
    padded[0][outside] = -3024.0
    air = water_phantom(1)
    low_padded = simulate(padded, seed=3, dose_fraction=0.25)
    low_air = simulate(air, seed=3, dose_fraction=0.25)
    np.testing.assert_array_equal(low_padded[0][outside], -3024.0)
    np.testing.assert_allclose(low_padded[0][~outside], low_air[0][~outside], atol=1e-3)
    # an explicit mask wins over the HU rule
    mask = np.zeros_like(air, dtype=bool)
    mask[0, :10] = True
    masked = simulate_low_dose(air, pixel_mm=(PIXEL, PIXEL), dose_fraction=0.25, seed=3, padding_mask=mask)
    np.testing.assert_array_equal(masked[mask], air[mask])
    assert not np.array_equal(masked[~mask], air[~mask])


@pytest.mark.parametrize("dose", [0.0, -0.25, 1.5])
def test_invalid_dose_names_the_valid_range(dose: float) -> None:
    with pytest.raises(ValueError, match=r"0 < a <= 1"):
        simulate_low_dose(water_phantom(1), pixel_mm=(PIXEL, PIXEL), dose_fraction=dose)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="valid filters"):
        SimulationSettings(dose_fraction=0.5, filter="sharp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid modes: extra, pre-log"):
        SimulationSettings(dose_fraction=0.5, mode="post-log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slices, rows, cols"):
        simulate_low_dose(np.zeros((8, 8), np.float32), pixel_mm=(1.0, 1.0), dose_fraction=0.5)
    with pytest.raises(ValueError, match="padding_mask shape"):
        simulate_low_dose(
            np.zeros((1, 8, 8), np.float32),
            pixel_mm=(1.0, 1.0),
            dose_fraction=0.5,
            padding_mask=np.zeros((8, 8), bool),
        )


def test_settings_describe_themselves_and_are_frozen() -> None:
    settings = SimulationSettings(dose_fraction=0.25)
    assert settings.describe() == (
        "simulated 25 % dose: projection-domain noise insertion (Yu 2012), I0=1.5e5, sigma_e^2=10, hann FBP"
    )
    pre = SimulationSettings(dose_fraction=0.1, i0=1e5, sigma_e2=8.5, filter="ram-lak", mode="pre-log")
    assert (
        pre.describe() == "simulated 10 % dose: pre-log Poisson + electronic noise (Zeng 2015), I0=1e5, "
        "sigma_e^2=8.5, ram-lak FBP"
    )
    coarse = SimulationSettings(dose_fraction=0.5, bowtie_edge_fraction=0.3, geometry=SMALL)
    assert coarse.describe().endswith("sigma_e^2=10, bowtie edge 0.3, 256 views x 256 channels, hann FBP")
    with pytest.raises(FrozenInstanceError):
        settings.dose_fraction = 0.5  # type: ignore[misc]


@pytest.mark.shared_data
def test_dose_scaling_matches_a_published_phantom_simulation() -> None:
    """The MITA CCT189 set (another group's fan-beam simulation): 10 % vs 100 % dose noise ratio."""
    root = require_shared("fixtures/lcd-ct-phantom-3doses")
    roi = (slice(100, 156), slice(100, 156))  # uniform background at the centre of the 256 x 256 phantom
    clean = (
        np.fromfile(root / "ground_truth.raw", dtype="<u2").reshape(1, 256, 256).astype(np.float32) - 1000.0
    )

    def measured_sd(dose: str) -> float:
        files = sorted((root / dose / "signal_absent").glob("*.raw"))
        images = np.stack([np.fromfile(f, dtype="<i2").reshape(256, 256) for f in files]) - 1000.0
        return noise_sd(images, clean, roi)

    def simulated_sd(dose: float, seed: int) -> float:
        volume = np.repeat(clean, 6, axis=0)
        physics = SimulationSettings(
            dose_fraction=dose, mode="pre-log", geometry=SIEMENS_DEFINITION.with_views(576)
        )
        low = simulate_from_settings(volume, pixel_mm=(0.86, 0.86), settings=physics, seed=seed)
        return noise_sd(low, volume, roi)

    published = measured_sd("dose_010") / measured_sd("dose_100")
    ours = simulated_sd(0.1, 0) / simulated_sd(1.0, 1)
    assert published == pytest.approx(math.sqrt(10), rel=0.05)
    assert ours == pytest.approx(published, rel=0.07)
