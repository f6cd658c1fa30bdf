"""Accuracy of meddenoise.metrics.noise_level.estimate_noise_sd from 5 to 100 HU.

CT-like noise of known SD is made with the project's own projection-domain simulator (pre-log
Poisson + electronic noise, fan-beam FBP) on the noise-free CCT189 phantom; the true SD is that of
(noisy - truth) over the uniform background disc, at least 10 px from inserts and the edge.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from meddenoise.metrics.noise_level import estimate_noise_sd
from tests.conftest import require_shared

Array = npt.NDArray[np.float32]
LCD = "fixtures/lcd-ct-phantom-3doses"
TOLERANCE = 0.15
# nominal noise SD (HU) -> (I0 photons per ray, dose fraction), for 288 views and 1 mm pixels
LEVELS = {
    5: (2.5e6, 1.0),
    10: (2.5e6, 0.25),
    20: (6e5, 0.26),
    40: (6e5, 0.065),
    70: (6e5, 0.021),
    100: (6e5, 0.0104),
}


@pytest.fixture(scope="module")
def truth_hu() -> Array:
    """The noise-free LCD phantom in HU (stored values are HU + 1000)."""
    import SimpleITK as sitk

    path = require_shared(LCD) / "ground_truth.mhd"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32) - 1000.0


@pytest.mark.shared_data
@pytest.mark.parametrize("nominal_hu", list(LEVELS))
def test_simulated_ct_noise_within_15_percent(truth_hu: Array, nominal_hu: int) -> None:
    from meddenoise.simulate import SimulationSettings, simulate_from_settings
    from meddenoise.simulate.geometry import SIEMENS_DEFINITION

    i0, dose = LEVELS[nominal_hu]
    settings = SimulationSettings(
        mode="pre-log", dose_fraction=dose, i0=i0, geometry=SIEMENS_DEFINITION.with_views(288)
    )
    noisy = simulate_from_settings(truth_hu[np.newaxis], pixel_mm=(1.0, 1.0), settings=settings, seed=0)[0]
    background = ndimage.distance_transform_edt(truth_hu == 0.0) >= 10
    true_sd = float((noisy - truth_hu)[background].std())
    assert true_sd == pytest.approx(nominal_hu, rel=0.3)  # the levels span 5 to 100 HU
    estimate = estimate_noise_sd(noisy)
    assert not estimate.fallback
    assert estimate.sd_hu == pytest.approx(true_sd, rel=TOLERANCE), estimate.sd_hu / true_sd


@pytest.mark.parametrize("sd_hu", [5.0, 20.0, 100.0])
def test_white_noise_on_a_uniform_disc(sd_hu: float) -> None:
    rows, cols = np.ogrid[0:256, 0:256]
    disc = np.hypot(rows - 127.5, cols - 127.5) < 110
    clean = np.where(disc, 40.0, -1000.0)
    noise = np.random.default_rng(int(sd_hu)).normal(0.0, sd_hu, clean.shape)
    estimate = estimate_noise_sd(clean + noise)
    assert not estimate.fallback
    assert estimate.sd_hu == pytest.approx(float(noise[disc].std()), rel=TOLERANCE)


def test_too_little_soft_tissue_falls_back() -> None:
    rng = np.random.default_rng(0)
    tiny = estimate_noise_sd(40.0 + rng.normal(0.0, 10.0, (16, 16)))  # fewer windows than needed
    lung = estimate_noise_sd(-800.0 + rng.normal(0.0, 10.0, (64, 64)))  # no soft tissue at all
    assert tiny.fallback and lung.fallback
    assert "fallback" in lung.describe()
    assert 5.0 < lung.sd_hu < 15.0
