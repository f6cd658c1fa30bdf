"""The command line: the only module that prints or sets exit codes.

Every command is a thin face on ``meddenoise.pipeline``. Bad data raises a MeddenoiseError deep
down; here it becomes one line on stderr and exit code 1 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import click
import typer

from meddenoise import __version__
from meddenoise.errors import MeddenoiseError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Denoise low-dose CT DICOM series and measure the result.",
)
_state = {"quiet": False, "debug": False}

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Shipped model name or checkpoint path.")
]
SeriesOption = Annotated[
    list[str] | None, typer.Option("--series", help="Only this SeriesInstanceUID (repeatable).")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output series.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]


@contextmanager
def _bar(*, description: str, total: int) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=description,
        unit="slice",
        disable=True if _state["quiet"] else None,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


def _echo(message: str) -> None:
    if not _state["quiet"]:
        typer.echo(message)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meddenoise {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs and tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """meddenoise: low-dose CT denoising for DICOM series."""
    _state.update(quiet=quiet, debug=debug)
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@app.command()
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
    if not scan.series:
        typer.echo(f"no CT series under {path}")
    for skipped, reason in scan.skipped:
        _echo(f"skipped {skipped}: {reason}")
    if not scan.series:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the models that ship with meddenoise."""
    from meddenoise.models import DEFAULT_MODEL_NAME, shipped_models

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


@app.command()
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
) -> None:
    """Denoise every CT series under IN into derived series under OUT."""
    from meddenoise.inference import InferenceSettings
    from meddenoise.pipeline import denoise_path

    settings = InferenceSettings(
        roi=(roi, roi),
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        threads=threads,
        strength=strength,
    )
    outcomes = denoise_path(
        input_path=input_path,
        out_dir=out_dir,
        model=model,
        settings=settings,
        series_uids=series,
        reference_path=reference,
        overwrite=overwrite,
        progress=_bar,
    )
    for outcome in outcomes:
        _echo(f"wrote {outcome.output_folder} ({outcome.seconds:.1f} s)")
        if outcome.report_folder is not None:
            _echo(f"report {outcome.report_folder / 'report.json'}")


@app.command()
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
        progress=_bar,
    )
    for outcome in outcomes:
        _echo(f"wrote {outcome.output_folder} ({outcome.seconds:.1f} s)")


@app.command()
def evaluate(
    denoised: Annotated[Path, typer.Argument(metavar="DENOISED", help="Denoised (or any test) series.")],
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE", help="Full-dose reference series.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.csv.")],
    protocol: Annotated[list[str] | None, typer.Option(help="Metric protocol (repeatable).")] = None,
) -> None:
    """Score DENOISED against REFERENCE (slices paired by position) and write a report."""
    from meddenoise.pipeline import DEFAULT_PROTOCOLS, evaluate_paths

    paths = evaluate_paths(
        denoised_path=denoised,
        reference_path=reference,
        out_dir=out,
        protocols=protocol or DEFAULT_PROTOCOLS,
        progress=_bar,
    )
    _summarise_report(paths[0])


def _summarise_report(report_json: Path) -> None:
    import json

    report = json.loads(report_json.read_text())
    for protocol_id, scores in report["series"].items():
        psnr = scores["mean_psnr_db"]
        psnr_text = "inf (identical)" if psnr is None else f"{psnr:.2f} dB"
        _echo(
            f"  {protocol_id}: PSNR {psnr_text}  SSIM {scores['mean_ssim']:.4f}  "
            f"RMSE {scores['mean_rmse']:.4g} {scores['rmse_unit']}  [{report['protocols'][protocol_id].split(';')[0]}]"
        )
    _echo(f"report {report_json}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's series and report.")] = Path(
        "demo-out"
    ),
    model: ModelOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Make a phantom series, simulate a quarter dose, denoise it and report PSNR/SSIM."""
    from meddenoise.demo import run_demo

    result = run_demo(out_dir=out, model=model, overwrite=overwrite, progress=_bar)
    _echo(
        f"full dose:    {result.full_dose_folder}\nquarter dose: {result.low_dose_folder}\n"
        f"denoised:     {result.denoised_folder}\n\nquarter-dose input against the full dose:"
    )
    _summarise_report(result.low_dose_report_json)
    _echo("denoised against the full dose:")
    _summarise_report(result.report_json)


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="A training recipe (TOML) from configs/.")],
) -> None:
    """Train a model from a recipe: simulate pairs, optimise, validate, write a checkpoint and card."""
    from meddenoise.training import load_recipe, train_recipe

    result = train_recipe(load_recipe(config), progress=_bar)
    _echo(
        f"checkpoint {result.checkpoint} (best at iteration {result.best_iteration}, "
        f"{result.seconds / 60:.1f} min)\nlow-dose input: {result.input_scores}\n"
        f"model:          {result.scores}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 bad data, 2 usage, 130 interrupted)."""
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as usage:
        usage.show()
        return usage.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except (MeddenoiseError, ValueError, OSError) as error:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
