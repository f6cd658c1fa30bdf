"""Physics of an evaluation: noise, NPS, HU bias and edge sharpness of input, output and reference.

All three images are measured in the *same* uniform ROIs, found automatically with
:func:`meddenoise.metrics.find_uniform_rois` on the cleanest image available (the reference when
there is one, else the output). Without a reference (the usual clinical case) the summary still
gives the noise reduction, the NPS of input and output, and the HU bias of output against input.

Numpy, scipy and :mod:`meddenoise.metrics` only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meddenoise.metrics.noise import Roi, find_uniform_rois, hu_bias, noise_reduction_percent, noise_sd
from meddenoise.metrics.noise_level import estimate_volume_noise_sd
from meddenoise.metrics.nps import RadialNPS, nps_2d, radial_nps, stack_rois
from meddenoise.metrics.sharpness import MTFResult, edge_mtf

logger = logging.getLogger(__name__)

ROLES = ("input", "output", "reference")
ROI_SIZES_MM = (16.0, 10.0)
"""ROI widths tried in turn: wide ROIs resolve the NPS better; narrow ones fit smaller organs."""
ROIS_PER_SLICE = 3
EDGE_HALF_PX = 16


@dataclass(frozen=True, eq=False)
class ImagePhysics:
    """Noise, NPS and (optionally) edge sharpness of one image of the report (input, output or reference)."""

    role: str
    noise_sd_hu: float
    noise_sd_per_slice_hu: tuple[float | None, ...]
    mean_hu: float
    nps: RadialNPS
    mtf: MTFResult | None
    estimated_noise_hu: float  # median over slices of the image-based estimate (global noise level)


@dataclass(frozen=True, eq=False)
class PhysicsSummary:
    """The physics metrics of a report, with the protocol of each.

    ``images`` is keyed by role (``"input"``, ``"output"``, ``"reference"``); roles without an
    image are absent. Biases are ``mean(output) - mean(other)`` over the ROIs, in HU.
    """

    images: dict[str, ImagePhysics]
    rois: tuple[Roi, ...]
    pixel_mm: tuple[float, float]
    noise_reduction_percent: float | None
    nps_peak_shift_percent: float | None
    nps_mean_shift_percent: float | None
    bias_vs_input_hu: float | None
    bias_vs_reference_hu: float | None
    edge: tuple[int, int, int, int] | None
    protocols: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data for ``report.json`` (curves included, rounded to 6 significant digits)."""
        images = {}
        for role, image in self.images.items():
            images[role] = {
                "noise_sd_hu": image.noise_sd_hu,
                "estimated_noise_sd_hu": round(image.estimated_noise_hu, 3),
                "mean_hu_in_rois": image.mean_hu,
                "noise_sd_per_slice_hu": list(image.noise_sd_per_slice_hu),
                "nps_peak_frequency_per_mm": image.nps.peak_frequency_mm,
                "nps_mean_frequency_per_mm": image.nps.mean_frequency_mm,
                "nps_frequency_per_mm": _rounded(image.nps.frequency_mm),
                "nps_hu2_mm2": _rounded(image.nps.nps_hu2mm2),
                "mtf50_per_mm": _finite_or_none(image.mtf.mtf50_mm) if image.mtf else None,
                "mtf10_per_mm": _finite_or_none(image.mtf.mtf10_mm) if image.mtf else None,
            }
        return {
            "n_rois": len(self.rois),
            "roi_size_px": self.rois[0].size,
            "pixel_mm": list(self.pixel_mm),
            "noise_reduction_percent": self.noise_reduction_percent,
            "nps_peak_shift_percent": self.nps_peak_shift_percent,
            "nps_mean_frequency_shift_percent": self.nps_mean_shift_percent,
            "hu_bias_output_vs_input_hu": self.bias_vs_input_hu,
            "hu_bias_output_vs_reference_hu": self.bias_vs_reference_hu,
            "edge_roi": None
            if self.edge is None
            else dict(zip(("slice", "row", "col", "size"), self.edge, strict=True)),
            "images": images,
            "protocols": dict(self.protocols),
        }


def _rounded(values: npt.NDArray[np.float64]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _find_rois(search: npt.NDArray[np.float64], pixel_mm: float) -> tuple[Roi, ...]:
    for roi_mm in ROI_SIZES_MM:
        rois = find_uniform_rois(hu=search, pixel_mm=pixel_mm, roi_mm=roi_mm, n_rois=ROIS_PER_SLICE)
        if rois:
            return rois
    return ()


def _per_slice_sd(hu: npt.NDArray[np.float64], rois: tuple[Roi, ...]) -> tuple[float | None, ...]:
    out: list[float | None] = []
    for index in range(hu.shape[0]):
        chosen = [roi for roi in rois if roi.slice == index]
        out.append(noise_sd(hu=hu, rois=chosen).mean_sd_hu if chosen else None)
    return tuple(out)


def find_edge(
    hu: npt.NDArray[np.float64], *, low_hu: float = -700.0, high_hu: float = -200.0
) -> tuple[int, int, int, int] | None:
    """A square window (slice, row, col, size) on the middle slice holding one straight high-contrast edge.

    Looks for windows where about half the pixels are below ``low_hu`` (air) and half above
    ``high_hu`` (tissue), with few in between, such as the body outline; None when none is found.
    """
    index = hu.shape[0] // 2
    image = hu[index]
    size = 2 * EDGE_HALF_PX
    low, high = image < low_hu, image > high_hu
    best: tuple[float, int, int] | None = None
    for row in range(0, image.shape[0] - size + 1, EDGE_HALF_PX // 2):
        for col in range(0, image.shape[1] - size + 1, EDGE_HALF_PX // 2):
            lo = float(low[row : row + size, col : col + size].mean())
            hi = float(high[row : row + size, col : col + size].mean())
            balance = abs(lo - 0.5) + abs(hi - 0.5)
            if lo + hi > 0.93 and balance < 0.3 and (best is None or balance < best[0]):
                best = (balance, row, col)
    return None if best is None else (index, best[1], best[2], size)


def _edge_mtf(
    hu: npt.NDArray[np.float64], edge: tuple[int, int, int, int] | None, pixel_mm: float
) -> MTFResult | None:
    if edge is None:
        return None
    index, row, col, size = edge
    try:
        return edge_mtf(
            image=hu[index], pixel_mm=pixel_mm, roi=(slice(row, row + size), slice(col, col + size))
        )
    except (ValueError, np.linalg.LinAlgError) as err:
        logger.info("no MTF at the edge %s: %s", edge, err)
        return None


def _image_physics(
    role: str,
    hu: npt.NDArray[np.float64],
    rois: tuple[Roi, ...],
    pixel_mm: tuple[float, float],
    edge: tuple[int, int, int, int] | None,
) -> ImagePhysics:
    noise = noise_sd(hu=hu, rois=rois)
    nps = radial_nps(nps_2d(rois_stack=stack_rois(hu=hu, rois=rois), pixel_mm=pixel_mm))
    return ImagePhysics(
        role=role,
        noise_sd_hu=noise.mean_sd_hu,
        noise_sd_per_slice_hu=_per_slice_sd(hu, rois),
        mean_hu=float(np.mean([s.mean_hu for s in noise.per_roi])),
        nps=nps,
        mtf=_edge_mtf(hu, edge, pixel_mm[1]),
        estimated_noise_hu=float(np.median(estimate_volume_noise_sd(hu))),
    )


def physics_summary(
    *,
    input_hu: npt.ArrayLike | None,
    output_hu: npt.ArrayLike,
    reference_hu: npt.ArrayLike | None = None,
    pixel_mm: tuple[float, float],
) -> PhysicsSummary | None:
    """Physics metrics of ``output_hu`` against ``input_hu`` and/or ``reference_hu``.

    All are (slices, rows, cols) HU volumes, aligned slice by slice.

    Returns None when no uniform ROI exists in any slice (nothing to measure noise in).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = rng.normal(40.0, 20.0, (2, 64, 64))
    >>> summary = physics_summary(input_hu=noisy, output_hu=noisy, pixel_mm=(1.0, 1.0))
    >>> summary.noise_reduction_percent, summary.bias_vs_input_hu
    (0.0, 0.0)
    """
    images = {
        role: np.asarray(hu, dtype=np.float64)
        for role, hu in zip(ROLES, (input_hu, output_hu, reference_hu), strict=True)
        if hu is not None
    }
    shapes = {a.shape for a in images.values()}
    if len(shapes) != 1:
        raise ValueError(f"input, output and reference differ in shape: {sorted(shapes)}")
    search = images.get("reference", images["output"])
    rois = _find_rois(search, min(pixel_mm))
    if not rois:
        logger.warning("no uniform soft-tissue region found: the report has no noise or NPS figures")
        return None
    edge = find_edge(search)
    measured = {role: _image_physics(role, hu, rois, pixel_mm, edge) for role, hu in images.items()}
    out = measured["output"]
    inp = measured.get("input")
    return PhysicsSummary(
        images=measured,
        rois=rois,
        pixel_mm=pixel_mm,
        noise_reduction_percent=None
        if inp is None or inp.noise_sd_hu <= 0
        else noise_reduction_percent(input_sd=inp.noise_sd_hu, output_sd=out.noise_sd_hu),
        nps_peak_shift_percent=None
        if inp is None
        else 100.0 * (out.nps.peak_frequency_mm - inp.nps.peak_frequency_mm) / inp.nps.peak_frequency_mm,
        nps_mean_shift_percent=None
        if inp is None
        else 100.0 * (out.nps.mean_frequency_mm - inp.nps.mean_frequency_mm) / inp.nps.mean_frequency_mm,
        bias_vs_input_hu=None
        if "input" not in images
        else hu_bias(test=images["output"], reference=images["input"], rois=rois).mean_bias_hu,
        bias_vs_reference_hu=None
        if "reference" not in images
        else hu_bias(test=images["output"], reference=images["reference"], rois=rois).mean_bias_hu,
        edge=edge,
        protocols=_protocols(measured, rois, search_role="reference" if "reference" in images else "output"),
    )


def _protocols(measured: dict[str, ImagePhysics], rois: tuple[Roi, ...], search_role: str) -> dict[str, str]:
    out = measured["output"]
    size = rois[0].size
    protocols = {
        "rois": (
            f"{len(rois)} uniform square ROIs of {size}x{size} px found by find_uniform_rois on the "
            f"{search_role} (smoothed image within [-150, 150] HU, away from edges); "
            "the same ROIs in every image"
        ),
        "noise_sd": "sample SD (ddof=1) per ROI, mean over ROIs; per slice: mean over that slice's ROIs",
        "noise_reduction_percent": "100 * (1 - SD(output) / SD(input))",
        "nps": out.nps.protocol,
        "nps_peak_shift_percent": "100 * (peak(output) - peak(input)) / peak(input), radial NPS peaks",
        "nps_mean_frequency_shift_percent": (
            "100 * (mean(output) - mean(input)) / mean(input), power-weighted mean frequency of the radial "
            "NPS: the texture measure (coarser residual noise is negative)"
        ),
        "estimated_noise_sd": (
            "image-based global noise level per slice (SD in 7x7 px windows over soft tissue, mode of "
            "their histogram; meddenoise.metrics.noise_level), median over slices"
        ),
        "hu_bias": "mean(output) - mean(other) over the ROIs, mean over ROIs (target within +-3 HU)",
    }
    if out.mtf is not None:
        protocols["mtf"] = out.mtf.protocol + " (body-outline edge found automatically)"
    return protocols
