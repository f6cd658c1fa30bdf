"""Estimate a CT slice's noise level (HU SD) from the image alone.

The method is the *global noise level* of Christianson et al. (Radiology 2015): the SD in a small
moving window, taken over soft tissue only, and the mode of its histogram. Anatomy edges raise a
window's SD, so they sit in the histogram's long upper tail, while the many windows inside
uniform tissue pile up at the noise SD. A small window underestimates the SD of noise that FBP
has correlated between neighbouring pixels; :data:`WINDOW_BIAS` corrects that on average (see
``tests/metrics/test_noise_level.py`` for the measured accuracy from 5 to 100 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["NoiseEstimate", "estimate_noise_sd", "estimate_volume_noise_sd"]

WINDOW_PX = 7
SOFT_TISSUE_HU = (-200.0, 300.0)  # window means in this range count as soft tissue or water
MIN_WINDOWS = 400  # fewer soft-tissue windows than this: fall back
WINDOW_BIAS = 1.08  # a 7×7 window sees about 1/1.08 of correlated FBP noise's SD (measured)
FALLBACK_HU = (-950.0, 2000.0)  # the fallback's range: anything but air, padding and metal


@dataclass(frozen=True)
class NoiseEstimate:
    """A slice's noise SD in HU, and how it was found.

    ``fallback`` is True when the slice had too little soft tissue (a tiny field of view, a
    phantom edge): the SD then comes from every non-air window, which anatomy biases upwards.
    """

    sd_hu: float
    windows: int
    fallback: bool

    def describe(self) -> str:
        """One line, e.g. ``"noise 23.1 HU SD (global noise level, 51234 soft-tissue windows)"``."""
        how = (
            f"fallback: too little soft tissue, every non-air window ({self.windows})"
            if self.fallback
            else f"global noise level, {self.windows} soft-tissue windows"
        )
        return f"noise {self.sd_hu:.1f} HU SD ({how})"


def _local_sd(image: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    mean = ndimage.uniform_filter(image, size=WINDOW_PX, mode="reflect")
    square = ndimage.uniform_filter(image * image, size=WINDOW_PX, mode="reflect")
    n = WINDOW_PX * WINDOW_PX
    var = np.clip(square - mean * mean, 0.0, None) * (n / (n - 1))
    return mean, np.sqrt(var)


def _mode(values: npt.NDArray[np.float64]) -> float:
    """The mode of positive values, from a smoothed histogram of their logarithm."""
    logs = np.log(np.clip(values, 1e-3, None))
    low, high = np.percentile(logs, [0.5, 99.5])
    if high - low < 1e-6:
        return float(np.exp(low))
    counts, edges = np.histogram(logs, bins=128, range=(low, high))
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0)
    peak = int(np.argmax(smooth))
    return float(np.exp(0.5 * (edges[peak] + edges[peak + 1])))


def estimate_noise_sd(hu: npt.ArrayLike) -> NoiseEstimate:
    """The noise SD (HU) of one (rows, cols) slice.

    Raises ValueError for an array that is not 2-D, is smaller than the window, or holds NaN/inf.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> slice_hu = 40.0 + rng.normal(0.0, 20.0, (128, 128))
    >>> est = estimate_noise_sd(slice_hu)
    >>> 17.0 < est.sd_hu < 23.0, est.fallback
    (True, False)
    """
    image = np.asarray(hu, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < WINDOW_PX:
        raise ValueError(f"expected one slice of at least {WINDOW_PX}x{WINDOW_PX} pixels, got {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("the slice contains NaN or infinite values")
    mean, sd = _local_sd(image)
    inner = (slice(WINDOW_PX, -WINDOW_PX), slice(WINDOW_PX, -WINDOW_PX))
    mean, sd = (mean[inner], sd[inner]) if min(image.shape) > 3 * WINDOW_PX else (mean, sd)
    tissue = (mean >= SOFT_TISSUE_HU[0]) & (mean <= SOFT_TISSUE_HU[1])
    fallback = int(tissue.sum()) < MIN_WINDOWS
    if fallback:
        tissue = (mean >= FALLBACK_HU[0]) & (mean <= FALLBACK_HU[1]) & (sd > 0)
        if not tissue.any():
            tissue = np.ones_like(tissue)
    return NoiseEstimate(sd_hu=WINDOW_BIAS * _mode(sd[tissue]), windows=int(tissue.sum()), fallback=fallback)


def estimate_volume_noise_sd(hu: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-slice noise SD (HU) of a (slices, rows, cols) volume, as float32 (slices,)."""
    volume = np.asarray(hu)
    if volume.ndim != 3:
        raise ValueError(f"expected a (slices, rows, cols) volume, got shape {volume.shape}")
    return np.array([estimate_noise_sd(s).sd_hu for s in volume], dtype=np.float32)
