"""The report's figures as PNG bytes (matplotlib, Agg backend, imported inside each function).

* :func:`slice_panel`: input / denoised / reference / difference side by side at one slice, one row
  per display window;
* :func:`fidelity_plot`: PSNR and SSIM per slice;
* :func:`nps_plot`: radial NPS of input, output and reference overlaid;
* :func:`noise_plot`: noise SD versus slice.

Display windows come from :data:`meddenoise.windowing.WINDOWS` and are picked from the HU content
(:func:`choose_windows`): always soft tissue (abdomen), plus lung when the slice holds lung.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from meddenoise.metrics import PhysicsSummary, SeriesScores
from meddenoise.windowing import DisplayWindow, window_by_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 96
LUNG_FRACTION = 0.03
"""Share of a slice's pixels in [-950, -600] HU above which the lung window is shown too."""
DIFFERENCE_HALF_WIDTH_HU = 100.0
COLOURS = {"input": "tab:red", "output": "tab:blue", "reference": "black"}
LABELS = {"input": "input (low dose)", "output": "denoised", "reference": "reference (full dose)"}


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def choose_windows(hu: npt.ArrayLike) -> tuple[DisplayWindow, ...]:
    """Display windows that fit the anatomy: abdomen always, lung too where lung is present."""
    image = np.asarray(hu)
    windows = [window_by_name("abdomen")]
    lung = float(np.mean((image > -950.0) & (image < -600.0)))
    if lung > LUNG_FRACTION:
        windows.append(window_by_name("lung"))
    return tuple(windows)


def evenly_spaced(n_slices: int, count: int = 3) -> list[int]:
    """``count`` slice indices spread evenly over a series (fewer for short series)."""
    if n_slices <= count:
        return list(range(n_slices))
    return sorted({(n_slices * (2 * k + 1)) // (2 * count) for k in range(count)})


def slice_panel(
    *,
    images: Mapping[str, npt.NDArray[np.floating]],
    title: str,
    windows: Sequence[str] | None = None,
) -> bytes:
    """PNG of one slice: each image in ``images`` (role → 2D HU) per display window, plus a difference.

    ``windows`` names the display windows (default: abdomen, and lung where lung is present). The
    difference is denoised − reference when a reference exists, else denoised − input, shown at
    ±100 HU.
    """
    output = np.asarray(images["output"], dtype=np.float64)
    base_role = "reference" if "reference" in images else "input"
    difference = output - np.asarray(images[base_role], dtype=np.float64)
    shown = (
        tuple(window_by_name(name) for name in windows)
        if windows is not None
        else choose_windows(images.get("reference", output))
    )
    columns = [r for r in ("input", "output", "reference") if r in images]
    n_cols = len(columns) + 1
    figure = _figure(2.6 * n_cols, 2.75 * len(shown) + 0.3)
    axes = figure.subplots(len(shown), n_cols, squeeze=False)
    for row, window in enumerate(shown):
        for col, role in enumerate(columns):
            ax = axes[row][col]
            ax.imshow(
                images[role], cmap="gray", vmin=window.lower_hu, vmax=window.upper_hu, interpolation="nearest"
            )
            ax.set_title(
                f"{LABELS[role]}\n{window.name} C{window.center_hu:g}/W{window.width_hu:g}", fontsize=8
            )
        ax = axes[row][-1]
        ax.imshow(
            difference,
            cmap="gray",
            vmin=-DIFFERENCE_HALF_WIDTH_HU,
            vmax=DIFFERENCE_HALF_WIDTH_HU,
            interpolation="nearest",
        )
        ax.set_title(f"denoised − {base_role}\n±{DIFFERENCE_HALF_WIDTH_HU:g} HU", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def fidelity_plot(
    *, scores: Mapping[str, SeriesScores], baseline: Mapping[str, SeriesScores] | None = None
) -> bytes:
    """PNG of PSNR (left) and SSIM (right) per slice for each protocol; dashed: the input, if given."""
    figure = _figure(9.0, 3.2)
    psnr_ax, ssim_ax = figure.subplots(1, 2)
    for number, (key, series) in enumerate(scores.items()):
        pairs = ((f"denoised, {key}", series, "-"), (f"input, {key}", (baseline or {}).get(key), "--"))
        for label, source, style in pairs:
            if source is None:
                continue
            positions = [s.position_mm if s.position_mm is not None else s.index for s in source.per_slice]
            psnr = [s.psnr if np.isfinite(s.psnr) else np.nan for s in source.per_slice]
            ssim = [s.ssim for s in source.per_slice]
            psnr_ax.plot(positions, psnr, style, marker=".", color=f"C{number}", label=label)
            ssim_ax.plot(positions, ssim, style, marker=".", color=f"C{number}", label=label)
    psnr_ax.set(xlabel="slice position (mm)", ylabel="PSNR (dB)", title="PSNR per slice")
    ssim_ax.set(xlabel="slice position (mm)", ylabel="SSIM", title="SSIM per slice")
    for ax in (psnr_ax, ssim_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(figure)


def nps_plot(*, physics: PhysicsSummary) -> bytes:
    """PNG of the radial NPS of input, output and reference overlaid, with their peaks marked."""
    figure = _figure(6.0, 3.6)
    ax = figure.subplots()
    for role, image in physics.images.items():
        nps = image.nps
        above_zero = nps.frequency_mm > 0  # the detrended ROIs leave ~0 power at f = 0
        ax.plot(
            nps.frequency_mm[above_zero],
            nps.nps_hu2mm2[above_zero],
            color=COLOURS[role],
            label=f"{LABELS[role]} (peak {nps.peak_frequency_mm:.2f} mm⁻¹)",
        )
        ax.axvline(nps.peak_frequency_mm, color=COLOURS[role], linestyle=":", linewidth=1)
    ax.set(
        xlabel="spatial frequency (mm⁻¹)",
        ylabel="NPS (HU² mm²)",
        title=f"Radial noise power spectrum ({len(physics.rois)} ROIs)",
    )
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def noise_plot(*, physics: PhysicsSummary, positions_mm: Sequence[float]) -> bytes:
    """PNG of the noise SD in uniform ROIs versus slice position for each image."""
    figure = _figure(6.0, 3.2)
    ax = figure.subplots()
    for role, image in physics.images.items():
        sd = [np.nan if v is None else v for v in image.noise_sd_per_slice_hu]
        ax.plot(positions_mm, sd, marker="o", markersize=3, color=COLOURS[role], label=LABELS[role])
    ax.set(xlabel="slice position (mm)", ylabel="noise SD (HU)", title="Noise in uniform ROIs per slice")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)
