"""Tests for meddenoise.metrics.sharpness: a Gaussian-blurred edge has a known MTF."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage
from scipy.special import ndtr

from meddenoise.metrics import circular_edge_ttf, edge_mtf

Array = npt.NDArray[np.float64]
PIXEL_MM = 0.5


def _mtf50(sigma_mm: float) -> float:
    """MTF(f) = exp(−2π²σ²f²) falls to 0.5 at sqrt(ln 2 / (2π²σ²))."""
    return math.sqrt(math.log(2.0) / (2.0 * math.pi**2 * sigma_mm**2))


def _edge(sigma_mm: float, angle_deg: float, *, horizontal: bool = False, size: int = 96) -> Array:
    """An ideal straight edge (0 → 1000 HU) through the centre, tilted by ``angle_deg``, blurred by σ mm."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    if horizontal:
        rows, cols = cols, rows
    theta = math.radians(angle_deg)
    centre = (size - 1) / 2.0
    distance_mm = ((cols - centre) * math.cos(theta) - (rows - centre) * math.sin(theta)) * PIXEL_MM
    return 1000.0 * ndtr(distance_mm / sigma_mm)


@pytest.mark.parametrize(
    ("sigma_mm", "angle_deg", "horizontal"),
    [(0.6, 3.0, False), (0.4, 5.0, False), (0.9, -4.0, False), (0.6, 3.0, True)],
)
def test_mtf50_of_a_blurred_slanted_edge(sigma_mm: float, angle_deg: float, horizontal: bool) -> None:
    result = edge_mtf(image=_edge(sigma_mm, angle_deg, horizontal=horizontal), pixel_mm=PIXEL_MM)
    assert result.mtf50_mm == pytest.approx(_mtf50(sigma_mm), rel=0.03)
    expected = np.exp(-2 * math.pi**2 * sigma_mm**2 * result.frequency_mm**2)
    shown = expected > 0.05
    assert result.mtf[shown] == pytest.approx(expected[shown], abs=0.03)
    assert result.mtf[0] == pytest.approx(1.0)
    assert result.frequency_mm[-1] <= 1.0 / (2 * PIXEL_MM) + 1e-9
    assert f"{abs(angle_deg):.1f}°" in result.describe()


def test_an_edge_inside_an_roi_with_noise() -> None:
    image = np.full((160, 160), -1000.0)
    image[20:116, 40:136] = _edge(0.6, 3.0) + np.random.default_rng(0).normal(0.0, 5.0, (96, 96))
    result = edge_mtf(image=image, pixel_mm=PIXEL_MM, roi=(slice(20, 116), slice(40, 136)))
    assert result.mtf50_mm == pytest.approx(_mtf50(0.6), rel=0.03)


def test_smoothing_lowers_mtf50() -> None:
    sharp = _edge(0.4, 3.0)
    smooth = ndimage.gaussian_filter(sharp, 1.0, mode="nearest")  # adds σ = 1 px = 0.5 mm
    sharp_mtf50 = edge_mtf(image=sharp, pixel_mm=PIXEL_MM).mtf50_mm
    smooth_mtf50 = edge_mtf(image=smooth, pixel_mm=PIXEL_MM).mtf50_mm
    assert smooth_mtf50 == pytest.approx(_mtf50(math.hypot(0.4, 0.5)), rel=0.05)
    assert smooth_mtf50 < 0.8 * sharp_mtf50


def test_flat_image_has_no_edge() -> None:
    with pytest.raises(ValueError, match="no straight edge"):
        edge_mtf(image=np.zeros((32, 32)), pixel_mm=PIXEL_MM)


def test_ttf50_at_the_edge_of_a_blurred_disc() -> None:
    sigma_mm, radius_mm, centre = 0.6, 15.0, (63.3, 64.6)
    rows, cols = np.mgrid[0:128, 0:128]
    radius = np.hypot(rows - centre[0], cols - centre[1]) * PIXEL_MM
    image = 100.0 + 340.0 * ndtr((radius_mm - radius) / sigma_mm)  # a bright disc in water
    result = circular_edge_ttf(image=image, center_rc=centre, radius_mm=radius_mm, pixel_mm=PIXEL_MM)
    assert result.mtf50_mm == pytest.approx(_mtf50(sigma_mm), rel=0.03)
    assert result.esf[0] < result.esf[-1]  # oriented to rise
    assert "circular-edge TTF" in result.describe()
