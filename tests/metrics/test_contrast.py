"""Tests for meddenoise.metrics.contrast, on the real simulated CCT189 low-contrast phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from meddenoise.metrics import (
    Insert,
    annulus_mask,
    cnr,
    cnr_over_realisations,
    find_inserts,
)
from tests.conftest import require_shared

Array = npt.NDArray[np.float64]
LCD = "fixtures/lcd-ct-phantom-3doses"
DOSES = ("010", "055", "100")
BACKGROUND = 1000.0  # the fixture stores HU + 1000: water background reads 1000


def _read(path: Path) -> Array:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)


@pytest.fixture(scope="module")
def lcd() -> tuple[Array, dict[str, Array]]:
    """(ground truth, {dose: the 10 signal-present realisations}) of the LCD phantom."""
    root = require_shared(LCD)
    images = {d: _read(root / f"dose_{d}" / "signal_present" / "signal_present.mhd") for d in DOSES}
    return _read(root / "ground_truth.mhd"), images


def _background(truth: Array, insert: Insert) -> npt.NDArray[np.bool_]:
    """An annulus from r + 3 px to 2r + 9 px around the insert, in uniform background only."""
    ring = annulus_mask(
        shape=truth.shape,
        center_rc=insert.center_rc,
        inner_px=insert.radius_px + 3,
        outer_px=2 * insert.radius_px + 9,
    )
    return ring & (np.abs(truth - BACKGROUND) <= 0.5)


def test_synthetic_disc_cnr_is_contrast_over_noise() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 10.0, (128, 128))
    signal = annulus_mask(shape=image.shape, center_rc=(64, 64), inner_px=0, outer_px=12)
    image[signal] += 20.0
    background = annulus_mask(shape=image.shape, center_rc=(64, 64), inner_px=20, outer_px=50)
    result = cnr(hu=image, signal_mask=signal, background_mask=background)
    assert result.contrast_hu == pytest.approx(20.0, abs=1.5)
    assert result.background_sd_hu == pytest.approx(10.0, rel=0.03)
    assert result.cnr == pytest.approx(2.0, rel=0.1)
    negative = cnr(hu=-image, signal_mask=signal, background_mask=background)
    assert negative.cnr == pytest.approx(result.cnr) and negative.contrast_hu < 0
    assert "SD(background" in result.describe()
    with pytest.raises(ValueError, match="overlap"):
        cnr(hu=image, signal_mask=signal, background_mask=signal)
    with pytest.raises(ValueError, match="zero SD"):
        cnr(hu=np.ones_like(image), signal_mask=signal, background_mask=background)


@pytest.mark.shared_data
def test_inserts_found_in_the_ground_truth(lcd: tuple[Array, dict[str, Array]]) -> None:
    truth, _ = lcd
    inserts = find_inserts(truth=truth, background_hu=BACKGROUND)
    # CCT189: 14, 7, 5 and 3 HU inserts (mean contrast over the mask is lowered by partial volume)
    assert len(inserts) == 4
    contrasts = [i.contrast_hu for i in inserts]
    assert contrasts == sorted(contrasts, reverse=True)
    assert all(1.0 < c < 15.0 for c in contrasts)
    radii = [i.radius_px for i in inserts]
    assert radii == sorted(radii)  # the faintest insert is the largest


@pytest.mark.shared_data
def test_cnr_rises_with_dose_and_ranks_the_three_doses(lcd: tuple[Array, dict[str, Array]]) -> None:
    truth, images = lcd
    inserts = find_inserts(truth=truth, background_hu=BACKGROUND)
    ensemble: dict[str, list[float]] = {d: [] for d in DOSES}
    mean: dict[str, list[float]] = {d: [] for d in DOSES}
    noise: dict[str, float] = {}
    for dose in DOSES:
        for insert in inserts:
            result = cnr_over_realisations(
                images=images[dose], signal_mask=insert.mask, background_mask=_background(truth, insert)
            )
            assert len(result.per_image) == 10
            ensemble[dose].append(result.ensemble_cnr)
            mean[dose].append(result.mean_cnr)
        noise[dose] = result.mean_background_sd_hu
    pooled = [float(np.mean(ensemble[d])) for d in DOSES]
    pooled_mean = [float(np.mean(mean[d])) for d in DOSES]
    assert pooled[0] < pooled[1] < pooled[2], pooled
    assert pooled_mean[0] < pooled_mean[1] < pooled_mean[2], pooled_mean
    # every insert is more conspicuous at full dose than at 10 % dose
    assert all(hi > lo for lo, hi in zip(ensemble["010"], ensemble["100"], strict=True))
    assert noise["010"] > noise["055"] > noise["100"]
