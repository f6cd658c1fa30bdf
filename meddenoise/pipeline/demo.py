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
from meddenoise.phantom import anatomical_phantom
from meddenoise.pipeline.evaluate import ReportOptions
from meddenoise.pipeline.request import OutputPolicy, RunRequest
from meddenoise.pipeline.runner import SeriesResult, denoise_path
from meddenoise.pipeline.simulate import SimulateStep, simulate_path
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import Evaluation, write_comparison_png
from meddenoise.simulate import SimulationSettings, simulate_from_settings

PHANTOM_SIZE = 512
PHANTOM_SLICES = 6
PIXEL_MM = 0.75  # a typical abdominal field of view: 384 mm at 512 x 512
SLICE_MM = 3.0
SEED = 2016  # the year of the AAPM Low Dose CT Grand Challenge
DOSE = 0.25
BEFORE_AFTER_NAME = "before-after.png"


@dataclass(frozen=True, eq=False)
class DemoResult:
    """Where the demo wrote its series, its report and its picture, and what it measured."""

    full_dose_folder: Path
    low_dose_folder: Path
    denoised_folder: Path
    report_html: Path
    report_json: Path
    before_after_png: Path
    evaluation: Evaluation


def run_demo(
    *,
    out_dir: str | Path,
    model: str | Path | LoadedModel | None = None,
    overwrite: bool = False,
    size: int = PHANTOM_SIZE,
    slices: int = PHANTOM_SLICES,
    progress: ProgressFactory = no_progress,
) -> DemoResult:
    """Phantom → full dose → simulated 25 % dose → denoised, with one report of all three.

    ``size`` (pixels per side) and ``slices`` shrink the phantom for quick checks; its pixels grow
    so the body keeps its size in mm.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty; pass --overwrite to replace the demo's output")
    full_folder = _scan_phantom(out, size=size, slices=slices, overwrite=overwrite, progress=progress)
    simulated = simulate_path(
        input_path=full_folder,
        out_dir=out / "low-dose",
        step=SimulateStep(settings=SimulationSettings(dose_fraction=DOSE), seed=SEED + 1),
        overwrite=overwrite,
        progress=progress,
    )
    (low,) = _ok(simulated.results)
    assert low.output_folder is not None
    finished: list[SeriesResult] = []
    request = RunRequest(
        model=model,
        reference=full_folder,
        output=OutputPolicy(overwrite=overwrite, report=True, report_options=ReportOptions()),
    )
    denoise_path(
        input_path=low.output_folder,
        out_dir=out / "denoised",
        request=request,
        progress=progress,
        on_result=finished.append,
    )
    (denoised,) = _ok(tuple(finished))
    assert denoised.output_folder and denoised.report and denoised.report.html and denoised.evaluation
    picture = write_comparison_png(denoised.evaluation, path=out / BEFORE_AFTER_NAME)
    return DemoResult(
        full_dose_folder=full_folder,
        low_dose_folder=low.output_folder,
        denoised_folder=denoised.output_folder,
        report_html=denoised.report.html,
        report_json=denoised.report.json,
        before_after_png=picture,
        evaluation=denoised.evaluation,
    )


def _scan_phantom(out: Path, *, size: int, slices: int, overwrite: bool, progress: ProgressFactory) -> Path:
    """The phantom "scanned" at full dose, written as a DICOM series; returns its folder."""
    pixel_mm = PIXEL_MM * PHANTOM_SIZE / size
    clean = anatomical_phantom(size=size, slices=slices, pixel_mm=pixel_mm, seed=SEED)
    # The phantom is noise-free, so its full-dose scan draws the whole noise of a dose-1 scan.
    full_settings = SimulationSettings(dose_fraction=1.0, mode="pre-log")
    with progress(description="scan phantom", total=slices) as advance:
        full = simulate_from_settings(
            clean, pixel_mm=(pixel_mm, pixel_mm), settings=full_settings, seed=SEED, progress=advance
        )
    return write_new_series(
        hu=full,
        pixel_mm=pixel_mm,
        slice_mm=SLICE_MM,
        folder=out / "full-dose",
        overwrite=overwrite,
        series_description="Digital torso phantom, full dose",
    )


def _ok(results: tuple[SeriesResult, ...]) -> tuple[SeriesResult, ...]:
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise OutputError(f"the demo failed: {failed[0]}")
    return results
