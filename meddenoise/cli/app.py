"""The typer app, its shared options, and the only printing and progress bars in meddenoise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from meddenoise import __version__

if TYPE_CHECKING:
    from meddenoise.pipeline import Evaluation, PixelType, SeriesResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Denoise low-dose CT DICOM series and measure the result.",
)
STATE = {"quiet": False, "debug": False}

ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="Shipped model name or checkpoint path.")
]
SeriesOption = Annotated[
    list[str] | None, typer.Option("--series", help="Only this SeriesInstanceUID (repeatable).")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output series.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
HUOffsetOption = Annotated[
    float, typer.Option("--hu-offset", help="Volume input: HU = stored * scale + offset (e.g. -1024).")
]
HUScaleOption = Annotated[
    float, typer.Option("--hu-scale", help="Volume input: HU = stored * scale + offset.")
]
ShowPhiOption = Annotated[
    bool, typer.Option("--show-phi", help="Write patient name/ID, raw UIDs and paths in reports.")
]
DicomReportOption = Annotated[
    bool, typer.Option("--dicom-report", help="Also write the report as a DICOM Encapsulated PDF.")
]


@contextmanager
def progress_bar(*, description: str, total: int) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=description,
        unit="slice",
        disable=True if STATE["quiet"] else None,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


def pixel_type_choice(name: str) -> PixelType:
    from typing import get_args

    from meddenoise.pipeline import PixelType

    valid = get_args(PixelType)
    if name not in valid:
        raise ValueError(f"--pixel-type {name!r}; valid: {', '.join(valid)}")
    return name  # type: ignore[return-value]


def echo(message: str) -> None:
    if not STATE["quiet"]:
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
    STATE.update(quiet=quiet, debug=debug)
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def print_run(result: SeriesResult) -> None:
    """One series' outcome as it finishes: where it went (and its report), or why it failed."""
    from meddenoise.pipeline import shown_text

    if not result.ok:
        uid = shown_text(result.source_series_uid)
        named = result.error if uid in result.error else f"{result.error} (series {uid})"
        typer.echo(f"error: {named}", err=True)
        return
    noise = f", input noise {result.input_noise_hu:.1f} HU SD" if result.input_noise_hu is not None else ""
    echo(f"wrote {result.output_folder} ({result.instances} slices, {result.total_seconds:.1f} s{noise})")
    if result.evaluation is not None:
        print_evaluation(result.evaluation)
    if result.report is not None:
        for written in (result.report.html or result.report.json, result.report.dicom):
            if written is not None:
                echo(f"report {written}")


def print_evaluation(evaluation: Evaluation) -> None:
    """The fidelity scores (output, and the input where known) and the noise of an evaluation."""
    baseline = evaluation.input_scores or {}
    for protocol_id, scores in evaluation.scores.items():
        line = f"  {protocol_id}: PSNR {_psnr(scores.mean_psnr)}  SSIM {scores.mean_ssim:.4f}"
        if protocol_id in baseline:
            low = baseline[protocol_id]
            line += f"  (low-dose input: PSNR {_psnr(low.mean_psnr)}  SSIM {low.mean_ssim:.4f})"
        echo(f"{line}  [{scores.protocol.describe().split(';')[0]}]")
    physics = evaluation.physics
    if physics is not None and physics.noise_reduction_percent is not None:
        echo(
            f"  noise in uniform ROIs: {physics.images['input'].noise_sd_hu:.1f} → "
            f"{physics.images['output'].noise_sd_hu:.1f} HU SD ({-physics.noise_reduction_percent:+.0f} %)"
        )


def _psnr(value: float) -> str:
    return "inf (identical)" if value == float("inf") else f"{value:.2f} dB"
