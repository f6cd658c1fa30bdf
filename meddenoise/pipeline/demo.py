"""``meddenoise demo``: the whole job on a digital phantom, with no patient data needed.

It writes a noise-free torso phantom through a simulated full-dose scan as a DICOM series, makes a
quarter-dose version the way the Mayo data were made (projection-domain noise insertion), denoises
that with the shipped default model, and reports PSNR/SSIM of both the low-dose input and the
denoised series against the full dose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meddenoise.dicom.create import write_new_series
from meddenoise.errors import OutputError
from meddenoise.models import LoadedModel
from meddenoise.phantom import torso_phantom
from meddenoise.pipeline import denoise_path, evaluate_paths, simulate_path
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings, simulate_from_settings

PHANTOM_SIZE = 512
PHANTOM_SLICES = 6
PIXEL_MM = 0.75  # a typical abdominal field of view: 384 mm at 512 x 512
SLICE_MM = 3.0
SEED = 2016  # the year of the AAPM Low Dose CT Grand Challenge


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its series and reports."""

    full_dose_folder: Path
    low_dose_folder: Path
    denoised_folder: Path
    report_json: Path
    low_dose_report_json: Path


def run_demo(
    *,
    out_dir: str | Path,
    model: str | Path | LoadedModel | None = None,
    overwrite: bool = False,
    size: int = PHANTOM_SIZE,
    slices: int = PHANTOM_SLICES,
    progress: ProgressFactory = no_progress,
) -> DemoResult:
    """Phantom → full dose → simulated 25 % dose → denoised, with reports against the full dose.

    ``size`` (pixels per side) and ``slices`` shrink the phantom for quick checks; its pixels grow
    so the body keeps its size in mm.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty; pass --overwrite to replace the demo's output")
    pixel_mm = PIXEL_MM * PHANTOM_SIZE / size
    clean = torso_phantom(size=size, slices=slices, pixel_mm=pixel_mm, seed=SEED)
    # The phantom is noise-free, so its full-dose scan draws the whole noise of a dose-1 scan.
    full_settings = SimulationSettings(dose_fraction=1.0, mode="pre-log")
    with progress(description="scan phantom", total=slices) as advance:
        full = simulate_from_settings(
            clean, pixel_mm=(pixel_mm, pixel_mm), settings=full_settings, seed=SEED, progress=advance
        )
    full_folder = write_new_series(
        hu=full,
        pixel_mm=pixel_mm,
        slice_mm=SLICE_MM,
        folder=out / "full-dose",
        overwrite=overwrite,
        series_description="Digital torso phantom, full dose",
    )
    low_settings = SimulationSettings(dose_fraction=0.25)
    (low,) = simulate_path(
        input_path=full_folder,
        out_dir=out / "low-dose",
        settings=low_settings,
        seed=SEED + 1,
        overwrite=overwrite,
        progress=progress,
    )
    (denoised,) = denoise_path(
        input_path=low.output_folder,
        out_dir=out / "denoised",
        model=model,
        reference_path=full_folder,
        overwrite=overwrite,
        progress=progress,
    )
    assert denoised.report_folder is not None  # a reference was given
    low_report, _ = evaluate_paths(
        denoised_path=low.output_folder,
        reference_path=full_folder,
        out_dir=out / "low-dose-report",
        progress=progress,
    )
    return DemoResult(
        full_dose_folder=full_folder,
        low_dose_folder=low.output_folder,
        denoised_folder=denoised.output_folder,
        report_json=denoised.report_folder / "report.json",
        low_dose_report_json=low_report,
    )
