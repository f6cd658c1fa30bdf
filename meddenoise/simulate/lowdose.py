"""Make a low-dose CT volume from a full-dose one by projection-domain noise insertion.

For each small batch of slices: HU → mu, a noise-free sinogram ``p``, the extra noise
``p_a - p`` (see :mod:`meddenoise.simulate.noise`), FBP of that noise alone, and
``low_hu = full_hu + FBP(p_a - p)`` in HU. FBP is linear, so the signal is never reconstructed
and carries no reconstruction bias; only noise with CT texture is added.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from meddenoise.device import resolve_device
from meddenoise.simulate.fbp import FilterName, check_filter, fbp
from meddenoise.simulate.geometry import SIEMENS_DEFINITION, FanBeamGeometry
from meddenoise.simulate.noise import (
    NOISE_MODES,
    NoiseMode,
    bowtie_profile,
    noise_free_sinogram,
    noise_sinogram,
)

logger = logging.getLogger(__name__)

MU_WATER_PER_MM = 0.0192
"""Linear attenuation of water at a typical effective energy (about 70 keV), in 1/mm."""

PADDING_BELOW_HU = -1024.0
"""Without an explicit mask, pixels below this HU are out-of-field padding (e.g. -2048, -3024)."""


def hu_to_mu(hu: torch.Tensor, *, padding: torch.Tensor | None = None) -> torch.Tensor:
    """``mu = mu_water * (1 + HU/1000)`` in 1/mm, clamped at 0, with padding set to air (0)."""
    mu = (MU_WATER_PER_MM * (1.0 + hu / 1000.0)).clamp(min=0.0)
    return mu if padding is None else mu.masked_fill(padding, 0.0)


def _format_i0(i0: float) -> str:
    mantissa, exponent = f"{i0:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


@dataclass(frozen=True)
class SimulationSettings:
    """What a low-dose simulation did, so callers can record it.

    Parameters
    ----------
    dose_fraction
        Simulated dose relative to the full-dose scan, ``0 < a <= 1``.
    i0
        Full-dose photons per ray at the centre of the fan.
    sigma_e2
        Electronic noise variance (counts squared).
    filter
        FBP window used to reconstruct the noise.
    mode
        ``"extra"`` adds only the noise a full-dose scan lacks (Yu 2012); ``"pre-log"`` draws
        the whole noise of a dose-``a`` scan (Zeng 2015, for noise-free phantoms).
    bowtie_edge_fraction
        Flux at the edge of the fan relative to its centre (1 = no bowtie filter).
    geometry
        Scanner geometry for the projection and the FBP; ``i0`` is per ray of this geometry, so
        fewer views at the same ``i0`` means more noise.
    view_binning
        Average this many neighbouring views of the noise sinogram before the FBP (1 = none).
        The noise level stays the same and the backprojection gets that many times faster; only
        the angular sampling of the noise texture far from the centre coarsens.

    Examples
    --------
    >>> SimulationSettings(dose_fraction=0.25).describe()
    'simulated 25 % dose: projection-domain noise insertion (Yu 2012), I0=1.5e5, sigma_e^2=10, hann FBP'
    """

    dose_fraction: float
    i0: float = 1.5e5
    sigma_e2: float = 10.0
    filter: FilterName = "hann"
    mode: NoiseMode = "extra"
    bowtie_edge_fraction: float = 1.0
    geometry: FanBeamGeometry = SIEMENS_DEFINITION
    view_binning: int = 1

    def __post_init__(self) -> None:
        if self.view_binning < 1 or self.geometry.n_views % self.view_binning:
            views = self.geometry.n_views
            raise ValueError(
                f"view_binning={self.view_binning} must be a positive divisor of n_views={views}"
            )
        if not 0.0 < self.dose_fraction <= 1.0:
            raise ValueError(f"dose_fraction={self.dose_fraction} is outside the valid range 0 < a <= 1")
        if not self.i0 > 0.0:
            raise ValueError(f"i0={self.i0} must be > 0 photons per ray")
        if not self.sigma_e2 >= 0.0:
            raise ValueError(f"sigma_e2={self.sigma_e2} must be >= 0")
        if not 0.0 < self.bowtie_edge_fraction <= 1.0:
            raise ValueError(f"bowtie_edge_fraction={self.bowtie_edge_fraction} must be in (0, 1]")
        check_filter(self.filter)
        if self.mode not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {self.mode!r}; valid modes: {', '.join(NOISE_MODES)}")

    def describe(self) -> str:
        """A short human-readable account, for logs, model cards and DerivationDescription."""
        method = {
            "extra": "projection-domain noise insertion (Yu 2012)",
            "pre-log": "pre-log Poisson + electronic noise (Zeng 2015)",
        }[self.mode]
        extras = "" if self.bowtie_edge_fraction == 1.0 else f", bowtie edge {self.bowtie_edge_fraction:g}"
        if self.geometry != SIEMENS_DEFINITION:
            g = self.geometry
            extras += f", {g.n_views} views x {g.n_detectors} channels"
        if self.view_binning > 1:
            extras += f", views binned by {self.view_binning}"
        return (
            f"simulated {100 * self.dose_fraction:g} % dose: {method}, I0={_format_i0(self.i0)}, "
            f"sigma_e^2={self.sigma_e2:g}{extras}, {self.filter} FBP"
        )


def _bin_views(
    sino: torch.Tensor, geometry: FanBeamGeometry, factor: int
) -> tuple[torch.Tensor, FanBeamGeometry]:
    """Average groups of ``factor`` neighbouring views; the geometry of the averaged views."""
    if factor == 1:
        return sino, geometry
    n_slices, n_views, n_det = sino.shape
    binned = sino.reshape(n_slices, n_views // factor, factor, n_det).mean(dim=2)
    shift = 0.5 * (factor - 1) * 2.0 * math.pi / n_views  # the centre of each group
    return binned, replace(
        geometry, n_views=n_views // factor, start_angle_rad=geometry.start_angle_rad + shift
    )


def _noise_hu(
    mu: torch.Tensor,
    *,
    pixel_mm: tuple[float, float],
    settings: SimulationSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    """Reconstructed projection noise ``FBP(p_a - p)`` for ``mu [B, H, W]``, in HU."""
    geometry = settings.geometry
    p = noise_free_sinogram(mu, pixel_mm=pixel_mm, geometry=geometry)
    i0 = settings.i0 * bowtie_profile(geometry, edge_fraction=settings.bowtie_edge_fraction, device=mu.device)
    delta = noise_sinogram(
        p,
        dose_fraction=settings.dose_fraction,
        i0=i0,
        sigma_e2=settings.sigma_e2,
        mode=settings.mode,
        generator=generator,
    )
    delta, recon_geometry = _bin_views(delta, geometry, settings.view_binning)
    noise_mu = fbp(
        delta,
        pixel_mm=pixel_mm,
        shape=(mu.shape[1], mu.shape[2]),
        geometry=recon_geometry,
        filter=settings.filter,
    )
    return noise_mu * (1000.0 / MU_WATER_PER_MM)


def _check_volume(
    hu: np.ndarray, padding_mask: np.ndarray | None, pixel_mm: tuple[float, float]
) -> np.ndarray:
    """Validate the inputs and return the padding mask (given, or HU below :data:`PADDING_BELOW_HU`)."""
    if hu.ndim != 3:
        raise ValueError(f"hu must be a (slices, rows, cols) volume, got shape {hu.shape}")
    if len(pixel_mm) != 2 or min(pixel_mm) <= 0:
        raise ValueError(f"pixel_mm must be two positive sizes (row_mm, col_mm), got {pixel_mm}")
    if padding_mask is None:
        return np.asarray(hu < PADDING_BELOW_HU)
    if padding_mask.shape != hu.shape:
        raise ValueError(f"padding_mask shape {padding_mask.shape} differs from hu shape {hu.shape}")
    return np.array(padding_mask, dtype=bool)  # a private, writable copy for torch.from_numpy


def simulate_from_settings(
    hu: np.ndarray,
    *,
    pixel_mm: tuple[float, float],
    settings: SimulationSettings,
    seed: int | None = None,
    device: str = "cpu",
    padding_mask: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """:func:`simulate_low_dose` with the physics collected in a :class:`SimulationSettings`.

    ``batch_size`` slices are simulated at once (memory stays flat; the noise for a seed depends
    on it).
    """
    padding = _check_volume(hu, padding_mask, pixel_mm)
    result = np.array(hu, dtype=np.float32, copy=True)
    if settings.mode == "extra" and settings.dose_fraction == 1.0:
        if progress is not None:
            progress(hu.shape[0])
        return result  # no extra noise at full dose
    dev = resolve_device(device)
    generator = torch.Generator(device=dev)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    pixel = (float(pixel_mm[0]), float(pixel_mm[1]))
    for start in range(0, hu.shape[0], max(1, batch_size)):
        stop = min(start + max(1, batch_size), hu.shape[0])
        full = torch.from_numpy(result[start:stop]).to(dev)
        pad = torch.from_numpy(padding[start:stop]).to(dev)
        with torch.no_grad():
            noise = _noise_hu(
                hu_to_mu(full, padding=pad),
                pixel_mm=pixel,
                settings=settings,
                generator=generator,
            )
        result[start:stop] = torch.where(pad, full, full + noise).cpu().numpy()
        if progress is not None:
            progress(stop - start)
    logger.debug("%s on %d slices", settings.describe(), hu.shape[0])
    return result


def simulate_low_dose(  # noqa: PLR0913 (the public signature names each physics knob)
    hu: np.ndarray,
    *,
    pixel_mm: tuple[float, float],
    dose_fraction: float,
    i0: float = 1.5e5,
    sigma_e2: float = 10.0,
    filter: FilterName = "hann",
    seed: int | None = None,
    device: str = "cpu",
    padding_mask: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    mode: NoiseMode = "extra",
) -> np.ndarray:
    """Simulate a lower-dose scan of a full-dose HU volume by projection-domain noise insertion.

    Parameters
    ----------
    hu
        Full-dose volume ``(slices, rows, cols)`` in HU (any real dtype; one slice is fine).
    pixel_mm
        ``(row_mm, col_mm)``, DICOM PixelSpacing order.
    dose_fraction
        Target dose relative to the input, ``0 < a <= 1``.
    i0, sigma_e2, filter, mode
        Noise physics, see :class:`SimulationSettings`.
    seed
        Seed for the noise; the same seed (and batch size) gives the same result.
    device
        ``"cpu"`` or ``"cuda"``.
    padding_mask
        True at out-of-field padding; defaults to ``hu < -1024``. These pixels are returned
        unchanged and count as air in the projection.
    progress
        Called with the number of slices finished after each batch (e.g. ``tqdm.update``).

    Returns
    -------
    numpy.ndarray
        The simulated low-dose volume, float32 HU, same shape. It is not clipped to -1024.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.zeros((1, 64, 64), np.float32)
    >>> low = simulate_low_dose(hu, pixel_mm=(4.0, 4.0), dose_fraction=0.25, seed=0)
    >>> low.shape, low.dtype, bool(low.std() > 0)
    ((1, 64, 64), dtype('float32'), True)
    """
    settings = SimulationSettings(
        dose_fraction=dose_fraction, i0=i0, sigma_e2=sigma_e2, filter=filter, mode=mode
    )
    return simulate_from_settings(
        hu,
        pixel_mm=pixel_mm,
        settings=settings,
        seed=seed,
        device=device,
        padding_mask=padding_mask,
        progress=progress,
    )
