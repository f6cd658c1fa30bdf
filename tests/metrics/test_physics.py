"""Known answers for the report's physics numbers (meddenoise.metrics.physics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from meddenoise.metrics import physics_summary
from meddenoise.phantom import torso_phantom


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    clean = torso_phantom(size=128, slices=2, pixel_mm=3.0)
    return clean + np.random.default_rng(3).normal(0.0, 25.0, clean.shape)


def test_identical_output_has_no_reduction_no_bias_no_shift(noisy: np.ndarray) -> None:
    summary = physics_summary(input_hu=noisy, output_hu=noisy.copy(), pixel_mm=(3.0, 3.0))
    assert summary is not None
    assert summary.noise_reduction_percent == 0.0
    assert summary.bias_vs_input_hu == 0.0
    assert summary.nps_peak_shift_percent == 0.0
    assert summary.bias_vs_reference_hu is None
    assert set(summary.images) == {"input", "output"}
    # white noise of SD 25 HU, measured in uniform ROIs of a noise-free phantom
    assert summary.images["input"].noise_sd_hu == pytest.approx(25.0, rel=0.15)


def test_smoothed_output_reduces_noise_and_moves_nps_low(noisy: np.ndarray) -> None:
    smooth = ndimage.gaussian_filter(noisy, sigma=(0, 1.5, 1.5))
    summary = physics_summary(input_hu=noisy, output_hu=smooth, pixel_mm=(3.0, 3.0))
    assert summary is not None
    assert summary.noise_reduction_percent is not None and summary.noise_reduction_percent > 50.0
    assert summary.nps_peak_shift_percent is not None and summary.nps_peak_shift_percent < 0.0
    assert summary.bias_vs_input_hu is not None and abs(summary.bias_vs_input_hu) < 3.0
    doc = summary.as_dict()
    assert doc["noise_reduction_percent"] == summary.noise_reduction_percent
    assert "100 * (1 - SD(output) / SD(input))" in str(doc["protocols"])


def test_constant_offset_is_the_bias_against_the_reference(noisy: np.ndarray) -> None:
    summary = physics_summary(input_hu=None, output_hu=noisy + 5.0, reference_hu=noisy, pixel_mm=(3.0, 3.0))
    assert summary is not None
    assert summary.bias_vs_reference_hu == pytest.approx(5.0)
    assert summary.noise_reduction_percent is None


def test_no_uniform_region_gives_none() -> None:
    air = np.full((1, 64, 64), -1000.0)
    assert physics_summary(input_hu=air, output_hu=air, pixel_mm=(1.0, 1.0)) is None
