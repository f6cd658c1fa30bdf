"""Projection-domain noise at a reduced dose, and the sinogram it is drawn around.

Two models (``NoiseMode``):

``"extra"`` (default; Yu et al. 2012, post-log)
    The full-dose data already hold the dose-1 noise, so only the variance they lack is added::

        p_a = p + sqrt((1-a)/a * e^p/I0 * (1 + (1+a)/a * sigma_e^2 * e^p/I0)) * N(0, 1)

``"pre-log"`` (Zeng et al. 2015)
    The full noise of a scan at dose ``a``, drawn from a noise-free sinogram::

        I = Poisson(a * I0 * e^-p) + N(0, sigma_e^2),   p_a = ln(a * I0 / max(I, 1))

Both return ``p_a - p``. The dose factor ``a`` sits inside the log, so a noise-free ray keeps
its mean (the bug that leaves it out shifts every ray by ``-ln a``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from meddenoise.simulate.geometry import FanBeamGeometry
from meddenoise.simulate.projector import project_folded, symmetry_folds

NoiseMode = Literal["extra", "pre-log"]
NOISE_MODES: tuple[str, ...] = get_args(NoiseMode)

MIN_COUNTS = 1.0
"""Floor on the measured counts before the log (the ``eps`` of the pre-log model)."""

COARSE_PIXEL_MM = 1.4
"""Pixel size the image is averaged to before projecting the noise-free sinogram."""


def bowtie_profile(geometry: FanBeamGeometry, *, edge_fraction: float, device: torch.device) -> torch.Tensor:
    """Relative flux per channel: 1 at the centre, ``edge_fraction`` at the fan edge (cos^2 shape)."""
    gammas = geometry.fan_angles(device=device)
    half_fan = 0.5 * geometry.n_detectors * geometry.fan_spacing_rad
    shape = torch.cos(0.5 * math.pi * (gammas / half_fan).clamp(-1.0, 1.0)).square()
    return edge_fraction + (1.0 - edge_fraction) * shape


def _coarse_geometry(geometry: FanBeamGeometry) -> tuple[FanBeamGeometry, int]:
    """Half the channels and a quarter of the views (when they divide), and the view stride."""
    stride = 4 if geometry.n_views % 16 == 0 else 1
    channels = geometry.n_detectors // 2 if geometry.n_detectors % 2 == 0 else geometry.n_detectors
    offset = geometry.detector_offset * channels / geometry.n_detectors
    coarse = replace(
        geometry, n_views=geometry.n_views // stride, n_detectors=channels, detector_offset=offset
    )
    return coarse, stride


def _upsample_views(sino: torch.Tensor, stride: int) -> torch.Tensor:
    """Linear interpolation along the (circular) view axis by an integer factor."""
    n_coarse = sino.shape[1]
    position = torch.arange(n_coarse * stride, device=sino.device, dtype=torch.float32) / stride
    lower = position.floor().long()
    weight = (position - lower)[None, :, None]
    return torch.lerp(sino[:, lower], sino[:, (lower + 1) % n_coarse], weight)


def noise_free_sinogram(
    mu: torch.Tensor, *, pixel_mm: tuple[float, float], geometry: FanBeamGeometry
) -> torch.Tensor:
    """A fast, slightly smoothed ``forward_project(mu)`` that only has to set the noise variance.

    The image is area-averaged to about :data:`COARSE_PIXEL_MM`, projected with half the
    channels and a quarter of the views at a one-pixel step, and linearly interpolated back to
    ``geometry``'s sampling.
    """
    factor = max(1, round(COARSE_PIXEL_MM / min(pixel_mm)))
    height, width = mu.shape[-2:]
    size = (math.ceil(height / factor), math.ceil(width / factor))
    pooled = F.interpolate(mu[:, None], size=size, mode="area")[:, 0] if factor > 1 else mu
    coarse_px = (height * pixel_mm[0] / size[0], width * pixel_mm[1] / size[1])
    coarse, stride = _coarse_geometry(geometry)
    folds = symmetry_folds(size, coarse_px, coarse)
    sino = project_folded(pooled, pixel_mm=coarse_px, geometry=coarse, step_px=1.0, folds=folds)
    sino = _upsample_views(sino, stride)
    if coarse.n_detectors != geometry.n_detectors:
        rows = F.interpolate(
            sino.reshape(-1, 1, coarse.n_detectors), size=geometry.n_detectors, mode="linear"
        )
        sino = rows.reshape(mu.shape[0], geometry.n_views, geometry.n_detectors)
    return sino


def noise_sinogram(
    p: torch.Tensor,
    *,
    dose_fraction: float,
    i0: torch.Tensor,
    sigma_e2: float,
    mode: NoiseMode,
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw ``p_a - p`` for noise-free (or full-dose) line integrals ``p [B, V, D]``.

    ``i0`` is the full-dose flux per ray, broadcastable to ``p`` (a scalar or a bowtie profile).
    """
    a = dose_fraction
    if mode == "extra":
        # mean counts below one photon make the Gaussian form meaningless: cap the attenuation there
        relative = torch.exp(torch.minimum(p, torch.log(a * i0))) / i0  # e^p / I0
        variance = (1.0 - a) / a * relative * (1.0 + (1.0 + a) / a * sigma_e2 * relative)
        normal = torch.randn(p.shape, generator=generator, device=p.device)
        return variance.sqrt() * normal
    expected = a * i0 * torch.exp(-p)
    counts = torch.poisson(expected, generator=generator)
    if sigma_e2 > 0:
        counts = counts + math.sqrt(sigma_e2) * torch.randn(p.shape, generator=generator, device=p.device)
    return torch.log(a * i0 / counts.clamp(min=MIN_COUNTS)) - p
