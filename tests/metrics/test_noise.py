"""Tests for meddenoise.metrics.noise: the ROI finder on a synthetic phantom, noise SD and HU bias."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from meddenoise.metrics import (
    Roi,
    find_uniform_rois,
    hu_bias,
    noise_reduction_percent,
    noise_sd,
)

Array = npt.NDArray[np.float64]
PIXEL_MM = 0.5
CENTRE = 128.0
BODY_RADIUS_PX = 100.0
INSERT_RC, INSERT_RADIUS_PX = (128.0, 160.0), 20.0


def _phantom(rng: np.random.Generator, n_slices: int = 2, sd_hu: float = 10.0) -> Array:
    """Air, a 100 mm water disc, a 300 HU insert; white noise of ``sd_hu`` everywhere."""
    rows, cols = np.mgrid[0:256, 0:256]
    image = np.full((256, 256), -1000.0)
    image[np.hypot(rows - CENTRE, cols - CENTRE) <= BODY_RADIUS_PX] = 0.0
    image[np.hypot(rows - INSERT_RC[0], cols - INSERT_RC[1]) <= INSERT_RADIUS_PX] = 300.0
    return image + rng.normal(0.0, sd_hu, (n_slices, 256, 256))


def _max_corner_distance(roi: Roi, centre: tuple[float, float]) -> float:
    corners = [(roi.row + dr, roi.col + dc) for dr in (0, roi.size - 1) for dc in (0, roi.size - 1)]
    return max(float(np.hypot(r - centre[0], c - centre[1])) for r, c in corners)


def _min_distance(roi: Roi, centre: tuple[float, float]) -> float:
    rows = np.clip(centre[0], roi.row, roi.row + roi.size - 1)
    cols = np.clip(centre[1], roi.col, roi.col + roi.size - 1)
    return float(np.hypot(rows - centre[0], cols - centre[1]))


def test_roi_finder_stays_inside_the_water_disc_and_off_every_edge() -> None:
    volume = _phantom(np.random.default_rng(7))
    rois = find_uniform_rois(hu=volume, pixel_mm=PIXEL_MM, roi_mm=10.0, n_rois=6)
    assert len(rois) == 12
    assert {roi.slice for roi in rois} == {0, 1}
    assert all(roi.size == 20 for roi in rois)
    for roi in rois:
        # fully inside the body, at least 5 px from its edge, and at least 5 px from the insert
        assert _max_corner_distance(roi, (CENTRE, CENTRE)) <= BODY_RADIUS_PX - 5
        assert _min_distance(roi, INSERT_RC) >= INSERT_RADIUS_PX + 5
        assert abs(float(roi.pixels(volume).mean())) < 5.0
    for slice_index in (0, 1):
        masks = [r.mask((256, 256)) for r in rois if r.slice == slice_index]
        assert int(np.sum(masks, axis=0).max()) == 1, "ROIs overlap"


def test_roi_finder_returns_nothing_without_soft_tissue() -> None:
    air = np.random.default_rng(0).normal(-1000.0, 10.0, (64, 64))
    assert find_uniform_rois(hu=air, pixel_mm=1.0) == ()


def test_max_sd_drops_noisy_rois() -> None:
    rng = np.random.default_rng(3)
    image = np.zeros((128, 128))
    image[:, 64:] += rng.normal(0.0, 30.0, (128, 64))
    rois = find_uniform_rois(hu=image, pixel_mm=1.0, roi_mm=16.0, n_rois=8, max_sd_hu=5.0)
    assert rois
    assert all(roi.col + roi.size <= 64 for roi in rois)


def test_noise_sd_of_constant_plus_white_noise() -> None:
    rng = np.random.default_rng(11)
    volume = 40.0 + rng.normal(0.0, 12.0, (3, 128, 128))
    rois = [Roi(slice=s, row=r, col=c, size=32) for s in range(3) for r in (10, 70) for c in (10, 70)]
    result = noise_sd(hu=volume, rois=rois)
    assert result.mean_sd_hu == pytest.approx(12.0, rel=0.03)
    assert len(result.per_roi) == 12
    assert all(abs(stat.mean_hu - 40.0) < 3.0 for stat in result.per_roi)
    assert "32x32 px" in result.protocol and "12 square ROIs" in result.describe()


def test_noise_sd_rejects_empty_and_outside_rois() -> None:
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="no ROIs"):
        noise_sd(hu=image, rois=[])
    with pytest.raises(ValueError, match="outside"):
        noise_sd(hu=image, rois=[Roi(slice=0, row=20, col=0, size=16)])
    with pytest.raises(ValueError, match="NaN"):
        noise_sd(hu=np.full((8, 8), np.nan), rois=[Roi(0, 0, 0, 4)])


def test_noise_reduction_percent() -> None:
    assert noise_reduction_percent(input_sd=20.0, output_sd=5.0) == pytest.approx(75.0)
    assert noise_reduction_percent(input_sd=10.0, output_sd=12.0) == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="positive"):
        noise_reduction_percent(input_sd=0.0, output_sd=1.0)


def test_hu_bias_of_a_shifted_image() -> None:
    reference = _phantom(np.random.default_rng(5), n_slices=1)
    rois = find_uniform_rois(hu=reference, pixel_mm=PIXEL_MM, n_rois=4)
    shifted = hu_bias(test=reference + 2.5, reference=reference, rois=rois)
    assert shifted.mean_bias_hu == pytest.approx(2.5, abs=1e-9)
    assert shifted.per_roi_hu == pytest.approx((2.5,) * 4, abs=1e-9)
    assert shifted.within() and not shifted.within(2.0)
    assert not hu_bias(test=reference - 4.0, reference=reference, rois=rois).within()
    # independent noise of SD 10 HU averaged over 400 px leaves a bias well under 3 HU
    noisy = reference + np.random.default_rng(6).normal(0.0, 10.0, reference.shape)
    assert hu_bias(test=noisy, reference=reference, rois=rois).within()
    with pytest.raises(ValueError, match="shape"):
        hu_bias(test=reference[:, :100], reference=reference, rois=rois)
