"""Ray-driven fan-beam forward projection in PyTorch (batched over slices, chunked over views).

Each ray is sampled at equal steps between the two points where it can meet the image (the
circle through the image corners) and the image is read there with bilinear interpolation
(``torch.nn.functional.grid_sample``, zero outside the image). The sum times the step is the line
integral in the units of ``mu`` times millimetres. The grid for a chunk of views is computed
once and shared by every slice; views form the batch dimension, so the CPU kernel uses all of
torch's intra-op threads, and memory stays bounded by the chunk size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from meddenoise.device import resolve_device
from meddenoise.simulate.geometry import SIEMENS_DEFINITION, FanBeamGeometry

logger = logging.getLogger(__name__)

POINTS_PER_CHUNK = 1 << 23
"""Interpolated values (points times channels) handled at once: bounds the memory per chunk."""


def as_slices(array: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """A float32 ``[B, ...]`` tensor on ``device``; a single 2D image gets a batch axis."""
    tensor = torch.as_tensor(array, dtype=torch.float32, device=device)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor


def view_chunks(n_views: int, points_per_view: int) -> Iterator[slice]:
    """Consecutive runs of view indices whose interpolated values fit in :data:`POINTS_PER_CHUNK`."""
    size = max(1, POINTS_PER_CHUNK // max(1, points_per_view))
    for start in range(0, n_views, size):
        yield slice(start, min(start + size, n_views))


def _ray_grid(
    betas: torch.Tensor,
    gammas: torch.Tensor,
    t_mm: torch.Tensor,
    geometry: FanBeamGeometry,
    half_extent_mm: tuple[float, float],
) -> torch.Tensor:
    """Normalised sample positions ``[views, detectors, samples, 2]`` (x, y) for grid_sample."""
    sod = geometry.source_to_isocentre_mm
    phi = betas[:, None] + math.pi + gammas[None, :]  # ray direction angle
    src_x = (sod * torch.cos(betas))[:, None, None]
    src_y = (sod * torch.sin(betas))[:, None, None]
    gx = (src_x + t_mm * torch.cos(phi)[:, :, None]) / half_extent_mm[1]
    gy = (src_y + t_mm * torch.sin(phi)[:, :, None]) / half_extent_mm[0]
    return torch.stack((gx, gy), dim=-1)


def forward_project(
    mu: torch.Tensor | np.ndarray,
    *,
    pixel_mm: tuple[float, float],
    geometry: FanBeamGeometry = SIEMENS_DEFINITION,
    device: torch.device | str | None = None,
    step_px: float = 0.5,
) -> torch.Tensor:
    """Fan-beam line integrals of ``mu`` (per mm) over every view and channel.

    Parameters
    ----------
    mu
        Attenuation images ``[B, H, W]`` (or one ``[H, W]``) in 1/mm.
    pixel_mm
        Pixel size ``(row_mm, col_mm)``, the order of DICOM PixelSpacing.
    geometry
        Scanner geometry; the image centre sits on the rotation axis.
    device
        Where to compute (``"cpu"``, ``"cuda"``); defaults to the tensor's device or CPU.
    step_px
        Sampling step along each ray, in units of the smaller pixel side.

    Returns
    -------
    torch.Tensor
        Sinograms ``[B, n_views, n_detectors]`` (dimensionless), float32, on ``device``.

    Examples
    --------
    >>> import torch
    >>> disc = (torch.cartesian_prod(torch.arange(64.0), torch.arange(64.0)) - 31.5).norm(dim=1)
    >>> mu = (disc < 20).float().reshape(1, 64, 64) * 0.02
    >>> g = FanBeamGeometry(n_detectors=128, n_views=4, fov_mm=64.0)
    >>> sino = forward_project(mu, pixel_mm=(1.0, 1.0), geometry=g)
    >>> tuple(sino.shape), round(float(sino[0, 0, 63:65].mean()), 2)  # ~2 * 20 mm * 0.02/mm
    ((1, 4, 128), 0.8)
    """
    if step_px <= 0:
        raise ValueError(f"step_px must be > 0, got {step_px}")
    dev = resolve_device(device if device is not None else getattr(mu, "device", None))
    images = as_slices(mu, dev)
    folds = symmetry_folds((images.shape[1], images.shape[2]), pixel_mm, geometry)
    return project_folded(images, pixel_mm=pixel_mm, geometry=geometry, step_px=step_px, folds=folds)


def symmetry_folds(shape: tuple[int, int], pixel_mm: tuple[float, float], geometry: FanBeamGeometry) -> int:
    """4 when views a quarter turn apart see the same pixel grid (square pixels and image), else 1."""
    square = shape[0] == shape[1] and pixel_mm[0] == pixel_mm[1]
    return 4 if square and geometry.n_views % 4 == 0 else 1


def quarter_turns(images: torch.Tensor, folds: int) -> torch.Tensor:
    """Stack ``images [B, H, W]`` turned by ``k`` quarter turns, k < folds → ``[folds*B, H, W]``.

    Projecting view ``v + k*n_views/4`` of an image equals projecting view ``v`` of the image
    turned back by ``k`` quarter turns; backprojection uses the inverse turn.
    """
    return torch.cat([torch.rot90(images, k=k, dims=(-2, -1)) for k in range(folds)], dim=0)


def project_folded(
    images: torch.Tensor,
    *,
    pixel_mm: tuple[float, float],
    geometry: FanBeamGeometry,
    step_px: float,
    folds: int,
) -> torch.Tensor:
    """Forward projection of ``images [B, H, W]`` using ``folds``-fold rotational symmetry."""
    n_slices, height, width = images.shape
    dev = images.device
    half_extent = (0.5 * height * pixel_mm[0], 0.5 * width * pixel_mm[1])
    radius = math.hypot(*half_extent)
    n_samples = math.ceil(2.0 * radius / (step_px * min(pixel_mm)))
    step_mm = 2.0 * radius / n_samples
    sod = geometry.source_to_isocentre_mm
    t_mm = sod - radius + (torch.arange(n_samples, device=dev, dtype=torch.float32) + 0.5) * step_mm
    n_quarter = geometry.n_views // folds
    betas, gammas = geometry.view_angles(device=dev)[:n_quarter], geometry.fan_angles(device=dev)
    turned = quarter_turns(images, folds).unsqueeze(0)  # [1, folds*B, H, W]
    sino = torch.empty(folds, n_slices, n_quarter, geometry.n_detectors, device=dev)
    for chunk in view_chunks(n_quarter, geometry.n_detectors * n_samples * folds * n_slices):
        grid = _ray_grid(betas[chunk], gammas, t_mm, geometry, half_extent)
        source = turned.expand(grid.shape[0], -1, -1, -1)
        samples = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sums = samples.sum(dim=-1).mul_(step_mm)  # [views, folds*B, detectors]
        sino[:, :, chunk] = sums.view(-1, folds, n_slices, geometry.n_detectors).permute(1, 2, 0, 3)
    return sino.permute(1, 0, 2, 3).reshape(n_slices, geometry.n_views, geometry.n_detectors)
