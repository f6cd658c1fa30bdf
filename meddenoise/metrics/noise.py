"""Uniform regions of interest, noise standard deviation and mean HU bias.

The physics metrics a medical physicist checks first (EVALUATION.md "Physics metrics"): the noise
SD in uniform soft-tissue or water ROIs, its percentage reduction against the input, and the mean
HU bias in the same ROIs (target within ±3 HU). ROIs are square, axis-aligned and either given by
the user (:class:`Roi`) or found automatically by :func:`find_uniform_rois`.

Numpy and scipy only; this module never imports torch or monai.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]

HU_BIAS_TARGET_HU = 3.0
"""The mean HU bias a denoiser should stay within (EVALUATION.md)."""


@dataclass(frozen=True)
class Roi:
    """A square ROI of ``size`` × ``size`` pixels whose top-left pixel is (``row``, ``col``) on ``slice``.

    ``slice`` is 0 for a 2D image.
    """

    slice: int
    row: int
    col: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 2 or min(self.slice, self.row, self.col) < 0:
            raise ValueError(f"invalid ROI {self}: needs size >= 2 and non-negative indices")

    def pixels(self, hu: npt.ArrayLike) -> Array:
        """The ROI's pixels, shape (size, size), from a (rows, cols) or (slices, rows, cols) array."""
        volume = as_volume(hu)
        if (
            self.slice >= volume.shape[0]
            or self.row + self.size > volume.shape[1]
            or self.col + self.size > volume.shape[2]
        ):
            raise ValueError(f"{self.describe()} lies outside an image of shape {volume.shape}")
        return volume[self.slice, self.row : self.row + self.size, self.col : self.col + self.size]

    def mask(self, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """A boolean (rows, cols) mask of this ROI's in-slice footprint."""
        out = np.zeros(shape, dtype=bool)
        out[self.row : self.row + self.size, self.col : self.col + self.size] = True
        return out

    def describe(self) -> str:
        """One line, e.g. ``"ROI slice 0, rows 10-29, cols 40-59 (20x20 px)"``."""
        rows = f"rows {self.row}-{self.row + self.size - 1}"
        cols = f"cols {self.col}-{self.col + self.size - 1}"
        return f"ROI slice {self.slice}, {rows}, {cols} ({self.size}x{self.size} px)"


def as_volume(hu: npt.ArrayLike) -> Array:
    """A (rows, cols) image or (slices, rows, cols) volume as a float64 volume; rejects NaN/inf."""
    volume = np.asarray(hu, dtype=np.float64)
    if volume.ndim == 2:
        volume = volume[np.newaxis]
    if volume.ndim != 3:
        raise ValueError(f"expected a (rows, cols) or (slices, rows, cols) array; got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise ValueError("the HU array contains NaN or infinite values")
    return volume


def _roi_size_px(roi_mm: float, pixel_mm: float) -> int:
    if not (roi_mm > 0 and pixel_mm > 0):
        raise ValueError(f"roi_mm and pixel_mm must be positive; got {roi_mm} and {pixel_mm}")
    return max(4, round(roi_mm / pixel_mm))


def _window_scores(
    image: Array, size: int, hu_range: tuple[float, float], smooth_px: float
) -> npt.NDArray[np.float64]:
    """Per top-left corner: the local SD of the smoothed image, +inf where the window is not uniform."""
    if size > min(image.shape):
        return np.full(image.shape, np.inf)  # no window fits in the image
    smooth = ndimage.gaussian_filter(image, smooth_px, mode="nearest")
    margin = size // 2  # the window plus this margin must lie inside hu_range: keeps ROIs off edges
    inside = (smooth >= hu_range[0]) & (smooth <= hu_range[1])
    ok = ndimage.minimum_filter(inside.astype(np.uint8), size=size + 2 * margin, mode="constant") > 0
    mean = ndimage.uniform_filter(smooth, size=size, mode="nearest")
    var = ndimage.uniform_filter(smooth * smooth, size=size, mode="nearest") - mean * mean
    score = np.where(ok, np.sqrt(np.clip(var, 0.0, None)), np.inf)
    # uniform_filter centres an even window at index size // 2: shift so score[r, c] is the window
    # whose top-left pixel is (r, c), and forbid windows that would leave the image.
    rows, cols = image.shape
    shifted = np.full_like(score, np.inf)
    h = size // 2
    shifted[: rows - size + 1, : cols - size + 1] = score[h : rows - size + 1 + h, h : cols - size + 1 + h]
    return shifted


def find_uniform_rois(
    *,
    hu: npt.ArrayLike,
    pixel_mm: float,
    roi_mm: float = 10.0,
    n_rois: int = 5,
    hu_range: tuple[float, float] = (-150.0, 150.0),
    max_sd_hu: float | None = None,
) -> tuple[Roi, ...]:
    """Find up to ``n_rois`` uniform, non-overlapping square ROIs per slice in soft tissue or water.

    A candidate window (``roi_mm`` wide) qualifies when a Gaussian-smoothed copy of the image
    (σ = 1 px) stays inside ``hu_range`` over the window and a margin of half a window around it,
    so no ROI touches an edge. Candidates are ranked by the SD of the smoothed image over the window
    (structure, not noise) and picked greedily without overlap. ``max_sd_hu`` drops ROIs whose raw SD
    exceeds it. Slices with no uniform region contribute no ROI; the result may be empty.

    Examples
    --------
    >>> img = np.zeros((64, 64)); img[:, :8] = -1000.0
    >>> rois = find_uniform_rois(hu=img, pixel_mm=1.0, roi_mm=10.0, n_rois=2)
    >>> len(rois), all(r.col >= 13 for r in rois)
    (2, True)
    """
    volume = as_volume(hu)
    size = _roi_size_px(roi_mm, pixel_mm)
    if n_rois < 1:
        raise ValueError(f"n_rois must be at least 1; got {n_rois}")
    found: list[Roi] = []
    for index, image in enumerate(volume):
        score = _window_scores(image, size, hu_range, smooth_px=1.0)
        for _ in range(n_rois):
            row, col = np.unravel_index(int(np.argmin(score)), score.shape)
            if not np.isfinite(score[row, col]):
                break
            roi = Roi(slice=index, row=int(row), col=int(col), size=size)
            score[max(0, row - size + 1) : row + size, max(0, col - size + 1) : col + size] = np.inf
            if max_sd_hu is None or float(np.std(roi.pixels(image), ddof=1)) <= max_sd_hu:
                found.append(roi)
    logger.debug("found %d uniform %dx%d px ROIs in %d slices", len(found), size, size, len(volume))
    return tuple(found)


@dataclass(frozen=True)
class RoiStats:
    """The mean HU and noise SD (sample SD, ddof=1) of one ROI."""

    roi: Roi
    mean_hu: float
    sd_hu: float


@dataclass(frozen=True)
class NoiseResult:
    """Noise SD per ROI and its mean over ROIs."""

    per_roi: tuple[RoiStats, ...]
    mean_sd_hu: float
    protocol: str

    def describe(self) -> str:
        """One line: the mean SD and how it was measured."""
        return f"noise SD {self.mean_sd_hu:.2f} HU ({self.protocol})"


def _check_rois(rois: tuple[Roi, ...] | list[Roi]) -> tuple[Roi, ...]:
    if not rois:
        raise ValueError("no ROIs given: find_uniform_rois found no uniform region, or none was passed")
    return tuple(rois)


def noise_sd(*, hu: npt.ArrayLike, rois: tuple[Roi, ...] | list[Roi]) -> NoiseResult:
    """Noise SD (HU) and mean HU in each ROI, and the mean of the per-ROI SDs.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(40.0, 10.0, (64, 64))
    >>> round(noise_sd(hu=img, rois=[Roi(0, 0, 0, 64)]).mean_sd_hu)
    10
    """
    chosen = _check_rois(rois)
    volume = as_volume(hu)
    stats = []
    for roi in chosen:
        px = roi.pixels(volume)
        stats.append(RoiStats(roi=roi, mean_hu=float(px.mean()), sd_hu=float(px.std(ddof=1))))
    size = chosen[0].size
    protocol = (
        f"sample SD (ddof=1) in {len(chosen)} square ROIs of {size}x{size} px, "
        "mean of per-ROI SDs, no detrending"
    )
    return NoiseResult(tuple(stats), float(np.mean([s.sd_hu for s in stats])), protocol)


def noise_reduction_percent(*, input_sd: float, output_sd: float) -> float:
    """Noise reduction against the input in percent: ``100 · (1 − output_sd / input_sd)``.

    Examples
    --------
    >>> noise_reduction_percent(input_sd=20.0, output_sd=5.0)
    75.0
    """
    if not input_sd > 0:
        raise ValueError(f"input_sd must be positive; got {input_sd}")
    return 100.0 * (1.0 - output_sd / input_sd)


@dataclass(frozen=True)
class BiasResult:
    """Mean HU difference (test − reference) per ROI, their mean and the largest magnitude."""

    per_roi_hu: tuple[float, ...]
    rois: tuple[Roi, ...]
    mean_bias_hu: float
    max_abs_bias_hu: float
    protocol: str

    def within(self, tolerance_hu: float = HU_BIAS_TARGET_HU) -> bool:
        """Whether every ROI's bias lies within ±``tolerance_hu`` (default ±3 HU)."""
        return self.max_abs_bias_hu <= tolerance_hu

    def describe(self) -> str:
        """One line: the mean and worst bias and how they were measured."""
        return f"HU bias {self.mean_bias_hu:+.2f} HU (worst {self.max_abs_bias_hu:.2f} HU; {self.protocol})"


def hu_bias(
    *, test: npt.ArrayLike, reference: npt.ArrayLike, rois: tuple[Roi, ...] | list[Roi]
) -> BiasResult:
    """Mean HU bias of ``test`` against ``reference`` in each ROI: ``mean(test) − mean(reference)``.

    Without a full-dose reference, pass the low-dose input as ``reference``: a denoiser must not
    move the mean HU of uniform regions.

    Examples
    --------
    >>> ref = np.zeros((32, 32))
    >>> hu_bias(test=ref + 2.0, reference=ref, rois=[Roi(0, 4, 4, 8)]).mean_bias_hu
    2.0
    """
    chosen = _check_rois(rois)
    t, r = as_volume(test), as_volume(reference)
    if t.shape != r.shape:
        raise ValueError(f"test shape {t.shape} differs from reference shape {r.shape}")
    biases = tuple(float(roi.pixels(t).mean() - roi.pixels(r).mean()) for roi in chosen)
    protocol = f"mean(test) - mean(reference) in {len(chosen)} square ROIs, mean over ROIs"
    return BiasResult(
        per_roi_hu=biases,
        rois=chosen,
        mean_bias_hu=float(np.mean(biases)),
        max_abs_bias_hu=float(np.max(np.abs(biases))),
        protocol=protocol,
    )
