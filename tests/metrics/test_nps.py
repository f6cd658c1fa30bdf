"""Tests for meddenoise.metrics.nps against noise whose spectrum is known."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from meddenoise.metrics import (
    detrend_rois,
    find_uniform_rois,
    nps_2d,
    nps_of_difference,
    radial_nps,
    stack_rois,
)

Array = npt.NDArray[np.float64]


def _white(seed: int, sd: float = 10.0, shape: tuple[int, int, int] = (64, 64, 64)) -> Array:
    return np.random.default_rng(seed).normal(0.0, sd, shape)


def test_white_noise_nps_is_flat_with_the_variance_as_integral() -> None:
    sd, pixel = 10.0, (0.5, 0.7)
    nps = nps_2d(rois_stack=_white(0, sd), pixel_mm=pixel, detrend="mean")
    assert nps.integral_hu2 == pytest.approx(sd**2, rel=0.02)
    assert nps.integral_hu2 == pytest.approx(nps.variance_hu2, rel=1e-9)
    flat_value = sd**2 * pixel[0] * pixel[1]
    off_dc = nps.values[nps.values > 0]
    assert float(off_dc.mean()) == pytest.approx(flat_value, rel=0.02)
    radial = radial_nps(nps)
    assert radial.nps_hu2mm2[1:] == pytest.approx(np.full(len(radial.nps_hu2mm2) - 1, flat_value), rel=0.15)
    assert radial.frequency_mm[-1] == pytest.approx(0.5 / 0.7, rel=1e-6)  # the smaller Nyquist
    assert "64 ROIs of 64x64 px" in nps.describe() and "mean detrended" in nps.describe()


def test_frequencies_are_in_inverse_mm() -> None:
    nps = nps_2d(rois_stack=_white(1, shape=(4, 32, 32)), pixel_mm=0.25)
    assert nps.fx_mm.max() == pytest.approx(2.0 - 1.0 / 8.0)
    assert nps.fx_mm.min() == pytest.approx(-2.0)
    assert nps.values.shape == (32, 32)


def test_gaussian_low_pass_noise_has_the_expected_spectrum_and_lower_frequencies() -> None:
    sd, sigma_px, pixel = 10.0, 2.0, 0.5
    white = _white(2, sd, (32, 128, 128))
    low = ndimage.gaussian_filter(white, sigma=(0, sigma_px, sigma_px), mode="wrap")
    white_radial = radial_nps(nps_2d(rois_stack=white, pixel_mm=pixel))
    low_nps = nps_2d(rois_stack=low, pixel_mm=pixel)
    low_radial = radial_nps(low_nps)
    assert low_nps.integral_hu2 == pytest.approx(float(np.var(low)), rel=0.03)
    # |H(f)|² of a Gaussian of σ mm is exp(−4π²σ²f²): check it where the NPS is still large
    sigma_mm = sigma_px * pixel
    expected = sd**2 * pixel**2 * np.exp(-4 * np.pi**2 * sigma_mm**2 * low_radial.frequency_mm**2)
    band = (low_radial.frequency_mm > 0.05) & (expected > 0.1 * expected.max())
    assert low_radial.nps_hu2mm2[band] == pytest.approx(expected[band], rel=0.15)
    assert low_radial.mean_frequency_mm < 0.5 * white_radial.mean_frequency_mm
    assert low_radial.peak_frequency_mm < 0.15


def test_band_pass_noise_peaks_where_the_band_is() -> None:
    white = _white(3, 10.0, (32, 128, 128))
    band = ndimage.gaussian_filter(white, (0, 1, 1), mode="wrap") - ndimage.gaussian_filter(
        white, (0, 3, 3), mode="wrap"
    )
    radial = radial_nps(nps_2d(rois_stack=band, pixel_mm=1.0))
    # the difference of Gaussians with σ1 = 1, σ2 = 3 px peaks at f = sqrt(ln(σ2²/σ1²) / (2π²(σ2²−σ1²)))
    peak = np.sqrt(np.log(9.0) / (2 * np.pi**2 * 8.0))
    assert radial.peak_frequency_mm == pytest.approx(peak, abs=0.02)
    assert "peak" in radial.describe()


def test_plane_detrending_removes_a_ramp() -> None:
    rows, cols = np.mgrid[0:32, 0:32]
    ramp = 5.0 + 0.3 * rows - 0.7 * cols
    stack = np.stack([ramp, 2 * ramp])
    assert np.abs(detrend_rois(stack, detrend="plane")).max() < 1e-9
    assert np.abs(detrend_rois(stack, detrend="mean")).max() > 1.0
    with pytest.raises(ValueError, match="unknown detrend"):
        detrend_rois(stack, detrend="quadratic")  # type: ignore[arg-type]


def test_difference_of_two_realisations_gives_one_realisation_nps() -> None:
    rows, cols = np.mgrid[0:64, 0:64]
    structure = 50.0 * np.sin(rows / 5.0) * np.cos(cols / 7.0)  # an object that is not noise
    first, second = structure + _white(4, 8.0), structure + _white(5, 8.0)
    nps = nps_of_difference(first=first, second=second, pixel_mm=0.5)
    assert nps.integral_hu2 == pytest.approx(64.0, rel=0.03)
    assert nps_2d(rois_stack=first, pixel_mm=0.5).integral_hu2 > 2 * 64.0  # the object leaks in
    with pytest.raises(ValueError, match="shape"):
        nps_of_difference(first=first, second=second[:3], pixel_mm=0.5)


def test_nps_in_rois_found_in_a_phantom() -> None:
    rng = np.random.default_rng(8)
    rows, cols = np.mgrid[0:192, 0:192]
    body = np.where(np.hypot(rows - 96, cols - 96) < 90, 0.0, -1000.0)
    volume = body + rng.normal(0.0, 15.0, (4, 192, 192))
    rois = find_uniform_rois(hu=volume, pixel_mm=0.8, roi_mm=25.6, n_rois=4)
    stack = stack_rois(hu=volume, rois=rois)
    assert stack.shape == (16, 32, 32)
    assert nps_2d(rois_stack=stack, pixel_mm=0.8).integral_hu2 == pytest.approx(15.0**2, rel=0.05)
