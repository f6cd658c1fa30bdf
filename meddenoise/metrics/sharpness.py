"""Sharpness at a high-contrast edge: ESF → LSF → MTF (or TTF for a disc insert), and MTF50.

:func:`edge_mtf` uses the slanted-edge method: it fits a straight line to the edge, projects every
pixel onto the edge normal, bins the values at a quarter pixel (oversampled ESF), differentiates
to the LSF, applies a Hann window and takes |FFT| normalised at zero frequency. The MTF is divided
by the transfer function of the central difference, so a Gaussian blur of σ mm reads back as
exp(−2π²σ²f²). :func:`circular_edge_ttf` does the same with the radial distance from a disc
insert's centre (the task transfer function, TTF, usual for CT phantoms). A denoiser should lose at
most 5 % of TTF50 (EVALUATION.md).

Numpy and scipy only; this module never imports torch or monai.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class MTFResult:
    """An ESF, LSF and MTF (or TTF) with the frequencies where it falls to 50 % and 10 %."""

    distance_mm: Array
    esf: Array
    lsf: Array
    frequency_mm: Array
    mtf: Array
    mtf50_mm: float
    mtf10_mm: float
    protocol: str

    def describe(self) -> str:
        """One line: MTF50/MTF10 and how they were measured."""
        return f"MTF50 {self.mtf50_mm:.3f} mm^-1, MTF10 {self.mtf10_mm:.3f} mm^-1 ({self.protocol})"


def _crossing(frequency: Array, mtf: Array, level: float) -> float:
    """The first frequency where ``mtf`` falls to ``level`` (linear interpolation); NaN if never."""
    below = np.nonzero(mtf <= level)[0]
    if len(below) == 0 or below[0] == 0:
        return float("nan")
    k = int(below[0])
    f0, f1, m0, m1 = frequency[k - 1], frequency[k], mtf[k - 1], mtf[k]
    return float(f0 + (m0 - level) * (f1 - f0) / (m0 - m1))


def mtf_from_samples(
    *, distance_mm: npt.ArrayLike, values: npt.ArrayLike, pixel_mm: float, oversampling: int = 4
) -> MTFResult:
    """MTF from scattered edge samples: (signed distance across the edge in mm, value) pairs.

    The samples are averaged in bins of ``pixel_mm / oversampling``; empty bins are interpolated.
    The ESF is oriented to rise with distance. Returns the MTF up to the pixel Nyquist frequency.
    """
    d = np.asarray(distance_mm, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    step = pixel_mm / oversampling
    index = np.floor((d - d.min()) / step).astype(int)
    counts = np.bincount(index)
    sums = np.bincount(index, weights=v)
    centres = d.min() + (np.arange(len(counts)) + 0.5) * step
    filled = counts > 0
    if filled.sum() < 8:
        raise ValueError("too few edge samples for an ESF; give a larger ROI around the edge")
    esf = np.interp(centres, centres[filled], sums[filled] / counts[filled])
    n_tail = max(1, len(esf) // 10)
    if esf[-n_tail:].mean() < esf[:n_tail].mean():
        esf = esf[::-1].copy()
    lsf = np.gradient(esf, step)
    peak = int(np.argmax(np.abs(lsf)))
    half = min(peak, len(lsf) - 1 - peak)
    lsf = lsf[peak - half : peak + half + 1] * np.hanning(2 * half + 1)
    spectrum = np.abs(np.fft.rfft(lsf))
    frequency = np.fft.rfftfreq(len(lsf), d=step).astype(np.float64)
    # np.gradient's central difference multiplies the spectrum by sinc(2 f step): undo it
    spectrum = spectrum / np.sinc(2.0 * frequency * step)
    mtf = spectrum / spectrum[0]
    keep = frequency <= 0.5 / pixel_mm + 1e-12
    frequency, mtf = frequency[keep], mtf[keep]
    protocol = (
        f"ESF binned at {step:.4g} mm ({oversampling}x oversampled), LSF Hann-windowed, |FFT| / |FFT(0)|"
    )
    return MTFResult(
        distance_mm=centres,
        esf=esf,
        lsf=lsf,
        frequency_mm=frequency,
        mtf=mtf,
        mtf50_mm=_crossing(frequency, mtf, 0.5),
        mtf10_mm=_crossing(frequency, mtf, 0.1),
        protocol=protocol,
    )


def _fit_edge_line(image: Array, half_window_px: int = 6) -> tuple[float, float, bool]:
    """Fit ``col = a·row + b`` to a near-vertical edge (transposed flag for a near-horizontal one).

    Per row, the edge is the centroid of the (smoothed, sign-corrected) derivative within
    ``half_window_px`` of its peak; rows whose centre is an outlier (> 3 MAD) are dropped and the
    line is fitted again.
    """
    grad_rows = np.abs(ndimage.sobel(image, axis=0)).sum()
    grad_cols = np.abs(ndimage.sobel(image, axis=1)).sum()
    transposed = bool(grad_rows > grad_cols)
    work = image.T if transposed else image
    derivative = np.diff(ndimage.gaussian_filter(work, 1.0), axis=1)
    derivative = np.clip(derivative * np.sign(derivative.sum()), 0.0, None)
    peaks = np.argmax(derivative, axis=1)
    cols = np.arange(derivative.shape[1])
    near = np.abs(cols[np.newaxis, :] - peaks[:, np.newaxis]) <= half_window_px
    weights = np.where(near, derivative, 0.0)
    totals = weights.sum(axis=1)
    usable = totals > 0.1 * totals.max() if totals.max() > 0 else np.zeros(len(totals), dtype=bool)
    if usable.sum() < 4:
        raise ValueError("no straight edge found: give an ROI holding one high-contrast edge")
    rows = np.arange(work.shape[0])[usable]
    centres = (weights * (cols + 0.5)).sum(axis=1)[usable] / totals[usable]
    a, b = np.polyfit(rows, centres, 1)
    residual = centres - (a * rows + b)
    mad = float(np.median(np.abs(residual - np.median(residual)))) + 1e-9
    inliers = np.abs(residual) <= 3.0 * 1.4826 * mad + 0.05
    if inliers.sum() >= 4:
        a, b = np.polyfit(rows[inliers], centres[inliers], 1)
    return float(a), float(b), transposed


def edge_mtf(
    *,
    image: npt.ArrayLike,
    pixel_mm: float,
    roi: tuple[slice, slice] | None = None,
    oversampling: int = 4,
) -> MTFResult:
    """MTF of a straight (ideally slightly slanted, 2-10°) high-contrast edge in a 2D image.

    ``roi`` is a (rows, cols) pair of slices holding one edge and its two plateaus; without it the
    whole image is used. The edge must cross the ROI from side to side.

    Examples
    --------
    >>> from scipy.special import ndtr
    >>> rows, cols = np.mgrid[0:64, 0:64]
    >>> distance = (cols - 32 - np.tan(np.radians(3)) * (rows - 32)) * np.cos(np.radians(3)) * 0.5
    >>> result = edge_mtf(image=1000.0 * ndtr(distance / 0.6), pixel_mm=0.5)
    >>> round(result.mtf50_mm, 2)
    0.31
    """
    full = np.asarray(image, dtype=np.float64)
    if full.ndim != 2:
        raise ValueError(f"edge_mtf needs a 2D image; got shape {full.shape}")
    work = full[roi] if roi is not None else full
    a, b, transposed = _fit_edge_line(work)
    plane = work.T if transposed else work
    rows, cols = np.mgrid[0 : plane.shape[0], 0 : plane.shape[1]]
    # the fitted line is in pixel-index coordinates (pixel centres at integer indices)
    distance_mm = (cols - (a * rows + b)) / np.hypot(1.0, a) * pixel_mm
    result = mtf_from_samples(
        distance_mm=distance_mm, values=plane, pixel_mm=pixel_mm, oversampling=oversampling
    )
    angle = float(np.degrees(np.arctan(a)))
    protocol = f"slanted-edge method, edge {angle:+.1f}° from the {'row' if transposed else 'column'} axis; "
    return replace(result, protocol=protocol + result.protocol)


def circular_edge_ttf(
    *,
    image: npt.ArrayLike,
    center_rc: tuple[float, float],
    radius_mm: float,
    pixel_mm: float,
    half_width_mm: float | None = None,
    oversampling: int = 4,
) -> MTFResult:
    """TTF at the circular edge of a disc insert centred at ``center_rc`` (pixel coordinates).

    Pixels within ``half_width_mm`` (default: half the radius) of the disc's edge are binned by
    their radial distance from the centre into an oversampled ESF; then as :func:`edge_mtf`.
    """
    full = np.asarray(image, dtype=np.float64)
    if full.ndim != 2:
        raise ValueError(f"circular_edge_ttf needs a 2D image; got shape {full.shape}")
    width = radius_mm / 2.0 if half_width_mm is None else half_width_mm
    rows, cols = np.mgrid[0 : full.shape[0], 0 : full.shape[1]]
    radius = np.hypot(rows - center_rc[0], cols - center_rc[1]) * pixel_mm
    near = np.abs(radius - radius_mm) <= width
    result = mtf_from_samples(
        distance_mm=radius[near] - radius_mm, values=full[near], pixel_mm=pixel_mm, oversampling=oversampling
    )
    protocol = f"circular-edge TTF, disc radius {radius_mm:g} mm, ±{width:g} mm band; "
    return replace(result, protocol=protocol + result.protocol)
