"""Commands on series and volumes: info, models, denoise, simulate, evaluate, demo, train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    progress_bar,
    summarise_report,
)
from meddenoise.errors import SeriesError


@app.command(rich_help_panel="Series and volumes")
def info(path: Annotated[Path, typer.Argument(help="A DICOM folder tree or file.")]) -> None:
    """List the CT series under PATH without decoding pixels."""
    from meddenoise.dicom import find_series

    scan = find_series(path)
    for s in scan.series:
        typer.echo(
            f"{s.series_uid}\n  description: {s.description or '-'}\n  slices: {s.shape[0]}  size: "
            f"{s.shape[2]}x{s.shape[1]}  spacing (mm): {s.spacing_mm[1]:.3f} x {s.spacing_mm[2]:.3f} x "
            f"{s.spacing_mm[0]:.3f}  kernel: {s.kernel or '-'}"
        )
        for problem in (*s.fatal_problems, *s.problems):
            typer.echo(f"  problem: {problem}")
    for skipped, reason in scan.skipped:
        echo(f"skipped {skipped}: {reason}")
    if not scan.series:
        raise SeriesError(f"no CT series under {path} ({len(scan.skipped)} files skipped)")


@app.command(rich_help_panel="Series and volumes")
def models(
    card_of: Annotated[
        str | None, typer.Option("--card", help="Print this model's full card (name or checkpoint path).")
    ] = None,
) -> None:
    """List the models that ship with meddenoise (or print one model card in full)."""
    from meddenoise.models import DEFAULT_MODEL_NAME, card_markdown, load_model, shipped_models

    if card_of is not None:
        typer.echo(card_markdown(load_model(card_of).card))
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
    device: DeviceOption = "auto",
    roi: Annotated[int, typer.Option(help="Sliding-window size in pixels.")] = 512,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap.")] = 0.25,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 4,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: torch's).")] = None,
    series: SeriesOption = None,
    reference: Annotated[
        Path | None, typer.Option(help="Full-dose reference: write a metrics report.")
    ] = None,
    overwrite: OverwriteOption = False,
    report: Annotated[
        bool, typer.Option("--report", help="Write report.json/csv/html (noise, NPS, bias; + fidelity).")
    ] = False,
    show_phi: ShowPhiOption = False,
    dicom_report: DicomReportOption = False,
    also_save: Annotated[
        list[str] | None,
        typer.Option("--also-save", help="Also save as a volume: nifti or mha (repeatable)."),
    ] = None,
    hu_offset: HUOffsetOption = 0.0,
    hu_scale: HUScaleOption = 1.0,
    pixel_type: Annotated[
        str, typer.Option("--pixel-type", help="Volume output: keep, int16 or float32.")
    ] = "keep",
) -> None:
    """Denoise every CT series under IN into derived series under OUT.

    IN may also be a NIfTI, MetaImage or NRRD volume; OUT is then a volume file of the same kind.
    """
    from meddenoise.inference import InferenceSettings
    from meddenoise.pipeline import ReportOptions, denoise_path, report_denoised_outputs, resolve_model
    from meddenoise.pipeline.volume import denoise_volume_path, is_volume_path
    from meddenoise.volume import HUConvention

    settings = InferenceSettings(
        roi=(roi, roi),
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        threads=threads,
        strength=strength,
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
            model=model,
            settings=settings,
            convention=HUConvention(offset=hu_offset, scale=hu_scale),
            pixel_type=pixel_type_choice(pixel_type),
            overwrite=overwrite,
            progress=progress_bar,
        )
        echo(f"wrote {written}")
        return
    outcomes = denoise_path(
        input_path=input_path,
        out_dir=out_dir,
        model=model,
        settings=settings,
        series_uids=series,
        reference_path=None if (report or dicom_report) else reference,
        overwrite=overwrite,
        progress=progress_bar,
        also_save=also_save or (),
    )
    for outcome in outcomes:
        echo(f"wrote {outcome.output_folder} ({outcome.seconds:.1f} s)")
        if outcome.report_folder is not None:
            echo(f"report {outcome.report_folder / 'report.json'}")
    if report or dicom_report:
        reports = report_denoised_outputs(
            outputs=[(o.output_folder, o.source_series_uid) for o in outcomes],
            input_path=input_path,
            reference_path=reference,
            model=resolve_model(model),  # its card goes in the reports
            options=ReportOptions(show_phi=show_phi, dicom_report=dicom_report),
            progress=progress_bar,
        )
        for files in reports:
            for report_file in (files.json, files.html, files.dicom):
                if report_file is not None:
                    echo(f"report {report_file}")


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
    from meddenoise.pipeline import simulate_path
    from meddenoise.simulate import SimulationSettings

    settings = SimulationSettings(dose_fraction=dose, i0=i0, sigma_e2=sigma_e2, filter=fbp_filter)  # type: ignore[arg-type]
    outcomes = simulate_path(
        input_path=input_path,
        out_dir=out_dir,
        settings=settings,
        series_uids=series,
        seed=seed,
        device=device,
        overwrite=overwrite,
        progress=progress_bar,
    )
    for outcome in outcomes:
        echo(f"wrote {outcome.output_folder} ({outcome.seconds:.1f} s)")


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
    from meddenoise.pipeline import DEFAULT_PROTOCOLS, ReportOptions, evaluate_report_paths
    from meddenoise.pipeline.volume import evaluate_volume_paths, is_volume_path
    from meddenoise.volume import HUConvention

    if is_volume_path(denoised) or is_volume_path(reference):
        if not (is_volume_path(denoised) and is_volume_path(reference)):
            raise ValueError(
                f"{denoised} and {reference}: compare a volume with a volume, a series with a series"
            )
        json_path, _ = evaluate_volume_paths(
            denoised_path=denoised,
            reference_path=reference,
            out_dir=out,
            protocols=tuple(protocol or DEFAULT_PROTOCOLS),
            reference_convention=HUConvention(offset=reference_hu_offset, scale=reference_hu_scale),
        )
        summarise_report(json_path)
        return
    options = ReportOptions(
        protocols=tuple(protocol or DEFAULT_PROTOCOLS),
        show_phi=show_phi,
        figure_slices=tuple(figure_slice) if figure_slice else None,
        dicom_report=dicom_report,
    )
    files = evaluate_report_paths(
        denoised_path=denoised,
        reference_path=reference,
        input_path=input_path,
        out_dir=out,
        options=options,
        progress=progress_bar,
    )
    summarise_report(files.json)
    for extra in (files.html, files.dicom):
        if extra is not None:
            echo(f"report {extra}")


@app.command(rich_help_panel="Series and volumes")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's series and report.")] = Path(
        "demo-out"
    ),
    model: ModelOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Make a phantom series, simulate a quarter dose, denoise it and report PSNR/SSIM."""
    from meddenoise.demo import run_demo

    result = run_demo(out_dir=out, model=model, overwrite=overwrite, progress=progress_bar)
    echo(
        f"full dose:    {result.full_dose_folder}\nquarter dose: {result.low_dose_folder}\n"
        f"denoised:     {result.denoised_folder}\n\nquarter-dose input against the full dose:"
    )
    summarise_report(result.low_dose_report_json)
    echo("denoised against the full dose:")
    summarise_report(result.report_json)


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
