"""Noise power spectrum (NPS): 2D, radially averaged, with its peak and mean frequency.

The standard normalisation (ICRU 87, Boedeker et al. 2007) is used::

    NPS(fx, fy) = (Δx · Δy) / (Nx · Ny) · ⟨ |DFT(ROI − trend)|² ⟩

averaged over ROIs, so the integral of the NPS over frequency equals the noise variance in HU², and
white noise of SD s has the flat value s² · Δx · Δy (HU²·mm²). A denoiser that moves the NPS to low
frequencies gives the "plastic" look; compare the peak and mean frequency of input and output.

With no noise-only image, measure the NPS in uniform ROIs of the image; with a noise-free reference,
in ROIs of ``output − reference``; with two independent realisations, use
:func:`nps_of_difference`, which halves the variance of their difference.

Numpy only; this module never imports torch or monai.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from meddenoise.metrics.noise import Roi, as_volume

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]
Detrend = Literal["mean", "plane"]


@dataclass(frozen=True, eq=False)
class NPS2D:
    """A 2D NPS in HU²·mm², zero frequency at the centre (``fftshift`` order).

    ``values[i, j]`` belongs to ``fy_mm[i]``, ``fx_mm[j]`` (mm⁻¹). ``variance_hu2`` is the mean
    variance of the detrended ROIs; ``integral_hu2`` the NPS integrated over frequency (they agree).
    """

    values: Array
    fx_mm: Array
    fy_mm: Array
    pixel_mm: tuple[float, float]
    n_rois: int
    variance_hu2: float
    protocol: str

    @property
    def integral_hu2(self) -> float:
        """∫∫ NPS dfx dfy in HU²; equals the noise variance."""
        dfx = 1.0 / (len(self.fx_mm) * self.pixel_mm[1])
        dfy = 1.0 / (len(self.fy_mm) * self.pixel_mm[0])
        return float(self.values.sum() * dfx * dfy)

    def describe(self) -> str:
        """One line: how the NPS was measured."""
        return self.protocol


@dataclass(frozen=True, eq=False)
class RadialNPS:
    """The radially averaged NPS: ``nps_hu2mm2[k]`` is the mean over the annulus at ``frequency_mm[k]``."""

    frequency_mm: Array
    nps_hu2mm2: Array
    peak_frequency_mm: float
    mean_frequency_mm: float
    protocol: str

    def describe(self) -> str:
        """One line: peak and mean frequency and how they were measured."""
        return (
            f"NPS peak {self.peak_frequency_mm:.3f} mm^-1, mean {self.mean_frequency_mm:.3f} mm^-1 "
            f"({self.protocol})"
        )


def _pixel_pair(pixel_mm: float | tuple[float, float]) -> tuple[float, float]:
    pair = (pixel_mm, pixel_mm) if isinstance(pixel_mm, int | float) else tuple(pixel_mm)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"pixel_mm must be positive (row, col) spacing in mm; got {pixel_mm}")
    return (float(pair[0]), float(pair[1]))


def detrend_rois(rois_stack: npt.ArrayLike, *, detrend: Detrend = "plane") -> Array:
    """Subtract each ROI's mean (``"mean"``) or least-squares plane a + b·row + c·col (``"plane"``)."""
    stack = as_volume(rois_stack)
    if detrend not in get_args(Detrend):
        raise ValueError(f"unknown detrend {detrend!r}; valid: {', '.join(get_args(Detrend))}")
    if detrend == "mean":
        return stack - stack.mean(axis=(1, 2), keepdims=True)
    rows, cols = np.mgrid[0 : stack.shape[1], 0 : stack.shape[2]]
    design = np.column_stack([np.ones(rows.size), rows.ravel(), cols.ravel()]).astype(np.float64)
    flat = stack.reshape(len(stack), -1).T
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (flat - design @ coef).T.reshape(stack.shape)


def nps_2d(
    *,
    rois_stack: npt.ArrayLike,
    pixel_mm: float | tuple[float, float],
    detrend: Detrend = "plane",
    variance_scale: float = 1.0,
) -> NPS2D:
    """The 2D NPS of a stack of noise ROIs, shape (n, rows, cols), in HU.

    ``pixel_mm`` is one spacing or (row, col) spacing. ``variance_scale`` multiplies the result
    (0.5 for the difference of two independent realisations; see :func:`nps_of_difference`).

    Examples
    --------
    >>> noise = np.random.default_rng(0).normal(0.0, 10.0, (64, 32, 32))
    >>> nps = nps_2d(rois_stack=noise, pixel_mm=0.5)
    >>> round(nps.integral_hu2 / 100.0, 1), round(float(nps.values.mean()) / (100.0 * 0.25), 1)
    (1.0, 1.0)
    """
    dy, dx = _pixel_pair(pixel_mm)
    stack = detrend_rois(rois_stack, detrend=detrend)
    n, ny, nx = stack.shape
    power = np.abs(np.fft.fft2(stack)) ** 2
    values = variance_scale * (dx * dy) / (nx * ny) * power.mean(axis=0)
    variance = variance_scale * float(np.mean(stack**2))
    protocol = (
        f"NPS = dx*dy/(Nx*Ny) <|DFT|^2> over {n} ROIs of {ny}x{nx} px, pixel {dy:g}x{dx:g} mm, "
        f"{detrend} detrended" + (f", scaled by {variance_scale:g}" if variance_scale != 1.0 else "")
    )
    return NPS2D(
        values=np.fft.fftshift(values),
        fx_mm=np.fft.fftshift(np.fft.fftfreq(nx, d=dx)),
        fy_mm=np.fft.fftshift(np.fft.fftfreq(ny, d=dy)),
        pixel_mm=(dy, dx),
        n_rois=n,
        variance_hu2=variance,
        protocol=protocol,
    )


def stack_rois(*, hu: npt.ArrayLike, rois: Sequence[Roi]) -> Array:
    """The pixels of equally sized ROIs as an (n, size, size) stack for :func:`nps_2d`."""
    if not rois:
        raise ValueError("no ROIs given for the NPS")
    if len({roi.size for roi in rois}) != 1:
        raise ValueError("NPS ROIs must all have the same size")
    volume = as_volume(hu)
    return np.stack([roi.pixels(volume) for roi in rois])


def nps_of_difference(
    *,
    first: npt.ArrayLike,
    second: npt.ArrayLike,
    pixel_mm: float | tuple[float, float],
    detrend: Detrend = "plane",
) -> NPS2D:
    """The NPS of one realisation from ROIs of two *independent* noise realisations of one object.

    The difference cancels the object; its variance is twice the noise variance, so the NPS of the
    difference is halved. ``first`` and ``second`` are (n, rows, cols) ROI stacks at the same places.
    """
    a, b = as_volume(first), as_volume(second)
    if a.shape != b.shape:
        raise ValueError(f"realisation ROI stacks differ in shape: {a.shape} vs {b.shape}")
    return nps_2d(rois_stack=a - b, pixel_mm=pixel_mm, detrend=detrend, variance_scale=0.5)


def radial_nps(nps2d: NPS2D, *, n_bins: int | None = None) -> RadialNPS:
    """Radially average a 2D NPS in annuli from 0 to the (smaller) Nyquist frequency.

    The default bin width is the coarser frequency step 1/(N·Δ). ``peak_frequency_mm`` is the centre
    of the highest bin above zero frequency; ``mean_frequency_mm`` is the first moment
    ∫ f · NPS(f) df / ∫ NPS(f) df of the radial curve.
    """
    fy, fx = np.meshgrid(nps2d.fy_mm, nps2d.fx_mm, indexing="ij")
    radius = np.hypot(fx, fy)
    nyquist = min(float(np.abs(nps2d.fx_mm).max()), float(np.abs(nps2d.fy_mm).max()))
    step = max(1.0 / (len(nps2d.fx_mm) * nps2d.pixel_mm[1]), 1.0 / (len(nps2d.fy_mm) * nps2d.pixel_mm[0]))
    bins = n_bins if n_bins is not None else max(2, round(nyquist / step) + 1)
    if bins < 2:
        raise ValueError(f"n_bins must be at least 2; got {bins}")
    width = nyquist / (bins - 1)
    index = np.rint(radius / width).astype(int)  # bin k covers [(k - 1/2) w, (k + 1/2) w)
    keep = index < bins
    sums = np.bincount(index[keep], weights=nps2d.values[keep], minlength=bins)
    counts = np.bincount(index[keep], minlength=bins)
    freq = np.arange(bins, dtype=np.float64) * width
    valid = counts > 0
    freq, curve = freq[valid], sums[valid] / counts[valid]
    above_zero = freq > 0
    peak = float(freq[above_zero][np.argmax(curve[above_zero])])
    mean_f = float(np.trapezoid(freq * curve, freq) / np.trapezoid(curve, freq))
    protocol = f"radial average in {bins} annuli of {width:.4f} mm^-1 up to Nyquist; {nps2d.protocol}"
    return RadialNPS(freq, curve, peak, mean_f, protocol)
