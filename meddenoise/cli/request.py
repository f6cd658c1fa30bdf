"""Flags → one RunRequest, for every command that denoises (denoise, batch), validated before any work."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from meddenoise.pipeline import RunRequest

NoiseLevelOption = Annotated[
    str,
    typer.Option(
        "--noise-level",
        help="The input's noise SD in HU told to noise-aware models (used as given), or auto: estimated "
        "per slice and limited to the model's noise-map cap (60 HU for unet-pu-v7).",
    ),
]


def parse_noise_level(text: str) -> float | None:
    """``auto`` → None; a positive number of HU → that number; anything else → ValueError.

    Examples
    --------
    >>> parse_noise_level("auto") is None, parse_noise_level("35")
    (True, 35.0)
    """
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--noise-level {text!r}: give auto or a positive number of HU (e.g. 30)")
    return value


def build_request(
    *,
    model: str | None = None,
    strength: float = 1.0,
    noise_level: str = "auto",
    device: str = "auto",
    tile: int = 512,
    overlap: float = 0.25,
    batch_size: int | None = None,
    threads: int | None = None,
    series: list[str] | None = None,
    reference: Path | None = None,
    overwrite: bool = False,
    report: bool = False,
    show_phi: bool = False,
    dicom_report: bool = False,
    also_save: list[str] | None = None,
    allow_gaps: bool = False,
) -> RunRequest:
    """The request the flags describe; a bad value is a ValueError naming the flag, before any output."""
    from meddenoise.pipeline import InferenceSettings, OutputPolicy, ReportOptions, RunRequest

    if tile < 1:
        raise ValueError(f"--tile {tile}: must be a positive number of pixels")
    settings = InferenceSettings(
        roi=(tile, tile),
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        threads=threads,
        strength=strength,
        noise_level_hu=parse_noise_level(noise_level),
    )
    output = OutputPolicy(
        overwrite=overwrite,
        also_save=tuple(also_save or ()),  # type: ignore[arg-type]  # validated by OutputPolicy
        report=report,
        report_options=ReportOptions(show_phi=show_phi, dicom_report=dicom_report),
        allow_gaps=allow_gaps,
    )
    return RunRequest(
        model=model, settings=settings, output=output, series_uids=tuple(series or ()), reference=reference
    )
