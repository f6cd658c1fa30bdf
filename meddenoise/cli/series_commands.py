"""Commands on series and volumes: info, models, denoise, simulate, evaluate, demo, train.

Each command parses its flags, builds a request, calls one pipeline (or training) function and
prints what came back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meddenoise.cli.app import (
    DeviceOption,
    DicomReportOption,
    HUOffsetOption,
    HUScaleOption,
    ModelOption,
    OverwriteOption,
    SeriesOption,
    ShowPhiOption,
    app,
    echo,
    pixel_type_choice,
    print_evaluation,
    print_run,
    progress_bar,
)
from meddenoise.cli.request import NoiseLevelOption, build_request
from meddenoise.errors import MeddenoiseError, SeriesError

if TYPE_CHECKING:
    from meddenoise.pipeline import RunSummary, SeriesInfo


@app.command(rich_help_panel="Series and volumes")
def info(
    path: Annotated[Path, typer.Argument(help="A DICOM folder tree or file.")],
    noise: Annotated[
        bool, typer.Option("--noise/--no-noise", help="Estimate each series' noise (median of five slices).")
    ] = True,
) -> None:
    """List the CT series under PATH (headers only, plus five slices per series for the noise estimate)."""
    from meddenoise.pipeline import find_series, shown_path

    scan = find_series(path)
    for s in scan.series:
        typer.echo(
            f"{s.series_uid}\n  description: {s.description or '-'}\n  slices: {s.shape[0]}  size: "
            f"{s.shape[2]}x{s.shape[1]}  spacing (mm): {s.spacing_mm[1]:.3f} x {s.spacing_mm[2]:.3f} x "
            f"{s.spacing_mm[0]:.3f}  kernel: {s.kernel or '-'}"
        )
        if noise and not s.fatal_problems:
            typer.echo(f"  {_noise_line(s)}")
        for problem in (*s.fatal_problems, *s.problems):
            typer.echo(f"  problem: {problem}")
    for skipped, reason in scan.skipped:
        echo(f"skipped {shown_path(skipped)}: {reason}")
    if not scan.series:
        raise SeriesError(f"no CT series under {path} ({len(scan.skipped)} files skipped)")


def _noise_line(info: SeriesInfo) -> str:
    from meddenoise.pipeline import sampled_noise

    try:
        return sampled_noise(info).describe()
    except (MeddenoiseError, ValueError) as err:
        return f"noise: not estimated ({' '.join(str(err).split())})"


@app.command(rich_help_panel="Series and volumes")
def models(
    card_of: Annotated[
        str | None, typer.Option("--card", help="Print this model's full card (name or checkpoint path).")
    ] = None,
) -> None:
    """List the models that ship with meddenoise (or print one model card in full)."""
    from meddenoise.pipeline import DEFAULT_MODEL_NAME, card_markdown, resolve_model, shipped_models

    if card_of is not None:
        typer.echo(card_markdown(resolve_model(card_of).card))
        return
    for card in shipped_models():
        default = " (default)" if card.name == DEFAULT_MODEL_NAME else ""
        dims = "2D" if card.context_slices == 1 else f"2.5D ({card.context_slices} slices)"
        typer.echo(
            f"{card.name}{default}: {card.architecture}, {dims}, v{card.version}\n  {card.description}"
        )
        for metric in card.metrics:
            typer.echo(
                f"  {metric.name} = {metric.value} ({metric.protocol}; {metric.dataset}; {metric.dose})"
            )


@app.command(rich_help_panel="Series and volumes")
def denoise(
    input_path: Annotated[Path, typer.Argument(metavar="IN", help="DICOM folder tree or file.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder for the derived series.")],
    model: ModelOption = None,
    strength: Annotated[float, typer.Option(min=0.0, max=1.0, help="Blend: 0 = input, 1 = network.")] = 1.0,
    noise_level: NoiseLevelOption = "auto",
    device: DeviceOption = "auto",
    tile: Annotated[int, typer.Option("--tile", "--roi", help="Sliding-window tile in pixels.")] = 512,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap.")] = 0.25,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Tiles per forward pass (default: a 512² slice's worth on CPU, fitted on GPU)."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: torch's).")] = None,
    series: SeriesOption = None,
    reference: Annotated[
        Path | None, typer.Option(help="Full-dose reference: the report also scores PSNR/SSIM against it.")
    ] = None,
    overwrite: OverwriteOption = False,
    report: Annotated[
        bool,
        typer.Option("--report", help="Write <series>.report/ (json, csv, html): noise, NPS, bias, images."),
    ] = False,
    show_phi: ShowPhiOption = False,
    dicom_report: DicomReportOption = False,
    also_save: Annotated[
        list[str] | None,
        typer.Option("--also-save", help="Also save as a volume: nifti or mha (repeatable)."),
    ] = None,
    allow_gaps: Annotated[
        bool, typer.Option("--allow-gaps", help="Denoise series with missing slices (recorded).")
    ] = False,
    hu_offset: HUOffsetOption = 0.0,
    hu_scale: HUScaleOption = 1.0,
    pixel_type: Annotated[
        str, typer.Option("--pixel-type", help="Volume output: keep, int16 or float32.")
    ] = "keep",
) -> None:
    """Denoise every CT series under IN into derived series under OUT.

    IN may also be a NIfTI, MetaImage or NRRD volume; OUT is then a volume file of the same kind.
    Each series is done on its own: one that cannot be denoised is reported and the rest go on.
    """
    from meddenoise.pipeline import HUConvention, denoise_path, denoise_volume_path, is_volume_path

    request = build_request(
        model=model,
        strength=strength,
        noise_level=noise_level,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        threads=threads,
        series=series,
        reference=reference,
        overwrite=overwrite,
        report=report,
        show_phi=show_phi,
        dicom_report=dicom_report,
        also_save=also_save,
        allow_gaps=allow_gaps,
    )
    if is_volume_path(input_path):
        if series or reference or report or dicom_report or also_save:
            raise ValueError(
                f"{input_path} is a volume: --series, --reference, --report, --dicom-report and --also-save "
                "apply to DICOM input (score volumes with meddenoise evaluate)"
            )
        written = denoise_volume_path(
            input_path=input_path,
            output_path=out_dir,
            request=request,
            convention=HUConvention(offset=hu_offset, scale=hu_scale),
            pixel_type=pixel_type_choice(pixel_type),
            progress=progress_bar,
        )
        echo(f"wrote {written}")
        return
    summary = denoise_path(
        input_path=input_path, out_dir=out_dir, request=request, progress=progress_bar, on_result=print_run
    )
    _finish(summary)


def _finish(summary: RunSummary) -> None:
    from meddenoise.pipeline import shown_path

    for path, reason in summary.skipped_files:
        echo(f"skipped {shown_path(path)}: {reason}")
    echo(
        f"done: {len(summary.succeeded)} series written, {len(summary.failed)} failed or refused, "
        f"{len(summary.skipped_files)} files skipped"
    )
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command(rich_help_panel="Series and volumes")
def simulate(
    input_path: Annotated[Path, typer.Argument(metavar="IN", help="Full-dose DICOM folder tree or file.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder for the simulated series.")],
    dose: Annotated[
        float, typer.Option(help="Dose fraction a in (0, 1], e.g. 0.25 for quarter dose.")
    ] = 0.25,
    i0: Annotated[float, typer.Option(help="Full-dose photons per ray.")] = 1.5e5,
    sigma_e2: Annotated[float, typer.Option("--sigma-e2", help="Electronic noise variance.")] = 10.0,
    fbp_filter: Annotated[
        str, typer.Option("--filter", help="FBP filter: ram-lak, shepp-logan, cosine, hann.")
    ] = "hann",
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible noise.")] = None,
    device: DeviceOption = "cpu",
    series: SeriesOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Write a simulated low-dose version of each CT series (projection-domain noise insertion)."""
    from meddenoise.pipeline import SimulateStep, SimulationSettings, simulate_path

    settings = SimulationSettings(dose_fraction=dose, i0=i0, sigma_e2=sigma_e2, filter=fbp_filter)  # type: ignore[arg-type]
    summary = simulate_path(
        input_path=input_path,
        out_dir=out_dir,
        step=SimulateStep(settings=settings, seed=seed, device=device),
        series_uids=tuple(series or ()),
        overwrite=overwrite,
        progress=progress_bar,
        on_result=print_run,
    )
    _finish(summary)


@app.command(rich_help_panel="Series and volumes")
def evaluate(
    denoised: Annotated[Path, typer.Argument(metavar="DENOISED", help="Denoised (or any test) series.")],
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE", help="Full-dose reference series.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.csv, report.html.")],
    input_path: Annotated[
        Path | None, typer.Option("--input", help="The low-dose input DENOISED was made from.")
    ] = None,
    protocol: Annotated[list[str] | None, typer.Option(help="Metric protocol (repeatable).")] = None,
    figure_slice: Annotated[
        list[int] | None, typer.Option("--figure-slice", help="Slice index to show (repeatable).")
    ] = None,
    show_phi: ShowPhiOption = False,
    dicom_report: DicomReportOption = False,
    reference_hu_offset: Annotated[
        float, typer.Option("--reference-hu-offset", help="Volume reference: HU = stored * scale + offset.")
    ] = 0.0,
    reference_hu_scale: Annotated[
        float, typer.Option("--reference-hu-scale", help="Volume reference: HU = stored * scale + offset.")
    ] = 1.0,
) -> None:
    """Score DENOISED against REFERENCE (slices paired by position) and write a report with figures.

    Two volume files (NIfTI, MetaImage, NRRD) on the same grid are scored voxel by voxel.
    """
    from meddenoise.pipeline import (
        DEFAULT_PROTOCOLS,
        HUConvention,
        ReportOptions,
        evaluate_paths,
        evaluate_volume_paths,
        is_volume_path,
    )

    protocols = tuple(protocol or DEFAULT_PROTOCOLS)
    if is_volume_path(denoised) or is_volume_path(reference):
        if not (is_volume_path(denoised) and is_volume_path(reference)):
            raise ValueError(
                f"{denoised} and {reference}: compare a volume with a volume, a series with a series"
            )
        evaluation, files = evaluate_volume_paths(
            denoised_path=denoised,
            reference_path=reference,
            out_dir=out,
            protocols=protocols,
            reference_convention=HUConvention(offset=reference_hu_offset, scale=reference_hu_scale),
        )
    else:
        options = ReportOptions(
            protocols=protocols,
            show_phi=show_phi,
            figure_slices=tuple(figure_slice) if figure_slice else None,
            dicom_report=dicom_report,
        )
        evaluation, files = evaluate_paths(
            denoised_path=denoised,
            reference_path=reference,
            input_path=input_path,
            out_dir=out,
            options=options,
            progress=progress_bar,
        )
    print_evaluation(evaluation)
    for written in (files.json, files.html, files.dicom):
        if written is not None:
            echo(f"report {written}")


@app.command(rich_help_panel="Series and volumes")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's series and report.")] = Path(
        "demo-out"
    ),
    model: ModelOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Make a phantom series, simulate a quarter dose, denoise it, and report all three side by side."""
    from meddenoise.pipeline import run_demo

    result = run_demo(out_dir=out, model=model, overwrite=overwrite, progress=progress_bar)
    echo(
        f"full dose:    {result.full_dose_folder}\nquarter dose: {result.low_dose_folder}\n"
        f"denoised:     {result.denoised_folder}\n"
    )
    print_evaluation(result.evaluation)
    echo(f"\nreport (open in a browser): {result.report_html}")
    echo(f"before/after picture:       {result.before_after_png}")


@app.command(rich_help_panel="Series and volumes")
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="A training recipe (TOML) from configs/.")],
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue from output.dir/last.pt, appending to the run's logs."),
    ] = False,
) -> None:
    """Train a model from a recipe: simulate pairs, optimise, validate, write a checkpoint and card."""
    from meddenoise.training import load_recipe, train_recipe

    result = train_recipe(load_recipe(config), resume=resume, progress=progress_bar)
    echo(
        f"checkpoint {result.checkpoint} (best at iteration {result.best_iteration}, "
        f"{result.seconds / 60:.1f} min)\nlow-dose input: {result.input_scores}\n"
        f"model:          {result.scores}"
    )


@app.command(rich_help_panel="Series and volumes")
def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Shipped model name or .pt checkpoint.")],
    out: Annotated[Path, typer.Argument(metavar="OUT.onnx", help="Where to write the ONNX model.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Static INT8 quantisation, calibrated on simulated CT.")
    ] = False,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibrate on this DICOM folder instead of the train sets.")
    ] = None,
    recipe: Annotated[
        Path, typer.Option(help="Training recipe naming the train/validation sets (calibration, scoring).")
    ] = Path("configs/train_default.toml"),
    max_loss_db: Annotated[
        float, typer.Option(help="Refuse an INT8 model that loses more PSNR than this on validation.")
    ] = 0.1,
) -> None:
    """Export a model to ONNX (its card in the ONNX metadata), optionally quantised to INT8."""
    from meddenoise.training.export import export_onnx

    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the output must end in .onnx")
    card = export_onnx(
        model=model, out_path=out, int8=int8, calibration=calibration, recipe=recipe, max_loss_db=max_loss_db
    )
    echo(f"wrote {out} ({card.name} v{card.version}, sha256 {card.weights_sha256[:16]}…)")
