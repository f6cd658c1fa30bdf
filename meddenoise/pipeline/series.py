"""Read → denoise → write for DICOM series: the core composition.

Examples
--------
>>> from meddenoise.pipeline import read_series, denoise_series  # doctest: +SKIP
>>> series = read_series("scans/patient1")  # doctest: +SKIP
>>> denoised = denoise_series(series)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from meddenoise import __version__
from meddenoise.dicom import (
    CTSeries,
    Derivation,
    SeriesInfo,
    check_output_location,
    derived_series_folder,
    find_series,
    select_series,
    write_derived_series,
)
from meddenoise.errors import OutputError
from meddenoise.inference import InferenceSettings, denoise_volume, resolve_device
from meddenoise.models import LoadedModel
from meddenoise.pipeline.evaluate import evaluate_series, report_context
from meddenoise.pipeline.load import (
    input_folder,
    load_info,
    read_series,
    resolve_model,
    short_uid,
    warn_unfamiliar_pixels,
)
from meddenoise.pipeline.volume import refuse_irregular, save_series_volumes
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import write_report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesOutcome:
    """What happened to one input series: where its output went and how long it took."""

    source_series_uid: str
    output_folder: Path
    seconds: float
    report_folder: Path | None = None


def denoise_series(
    series: CTSeries,
    *,
    model: str | Path | LoadedModel | None = None,
    settings: InferenceSettings | None = None,
    progress: ProgressFactory = no_progress,
) -> CTSeries:
    """Denoise a loaded series; the result keeps the source's geometry and headers."""
    settings = settings or InferenceSettings()
    loaded = resolve_model(model)
    warn_unfamiliar_pixels(loaded, series.info.spacing_mm, f"series {series.info.series_uid}")
    with progress(
        description=f"denoise {short_uid(series.info.series_uid)}", total=len(series.info.slices)
    ) as advance:
        hu = denoise_volume(series.hu, model=loaded, settings=settings, progress=advance)
    return replace(series, hu=hu)


def model_derivation(model: LoadedModel, settings: InferenceSettings) -> Derivation:
    """How the derived series describes itself: model, version and strength."""
    card = model.card
    return Derivation(
        description=(
            f"Denoised by meddenoise {__version__}, model {card.name} v{card.version} "
            f"({card.architecture}), strength {settings.strength:.2f}"
        ),
        series_description_suffix="denoised",
        folder_suffix="denoised",
    )


def write_series(
    series: CTSeries,
    *,
    out_dir: str | Path,
    derivation: Derivation,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
) -> Path:
    """Write ``series.hu`` as a derived series of ``series.info``; returns the series folder."""
    with progress(
        description=f"write {short_uid(series.info.series_uid)}", total=len(series.info.slices)
    ) as advance:
        return write_derived_series(
            source=series.info,
            hu=series.hu,
            out_dir=Path(out_dir),
            derivation=derivation,
            padding_mask=series.padding_mask,
            overwrite=overwrite,
            progress=advance,
        )


def denoise_path(  # noqa: PLR0913 (the one entry point that names every knob of a denoise run)
    *,
    input_path: str | Path,
    out_dir: str | Path,
    model: str | Path | LoadedModel | None = None,
    settings: InferenceSettings | None = None,
    series_uids: Sequence[str] | None = None,
    reference_path: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
    also_save: Sequence[str] = (),
) -> list[SeriesOutcome]:
    """Denoise every chosen CT series under ``input_path`` into derived series under ``out_dir``.

    ``also_save`` ("nifti", "mha") also writes each denoised series as a volume beside its folder.
    """
    input_root, out_root = Path(input_path), Path(out_dir)
    check_output_location(input_root=input_folder(input_root), out_dir=out_root)
    settings = settings or InferenceSettings()
    device = resolve_device(settings.device)  # fail on a missing GPU before any work
    infos = select_series(find_series(input_root), series_uids)
    loaded = resolve_model(model, device=str(device))
    derivation = model_derivation(loaded, settings)
    refuse_existing(infos, out_root, derivation, overwrite)
    if also_save:
        refuse_irregular(infos)
    reference = read_series(reference_path, progress=progress) if reference_path is not None else None
    outcomes = []
    for info in infos:
        started = time.perf_counter()
        denoised = denoise_series(
            load_info(info, progress), model=loaded, settings=settings, progress=progress
        )
        folder = write_series(
            denoised, out_dir=out_root, derivation=derivation, overwrite=overwrite, progress=progress
        )
        save_series_volumes(denoised, folder=folder, formats=also_save, overwrite=overwrite)
        report = None
        if reference is not None:
            scores = evaluate_series(denoised=denoised, reference=reference)
            context = report_context(
                denoised=denoised, reference=reference, model=loaded, extra={"output_folder": folder.name}
            )
            report = folder.with_name(folder.name + ".report")
            write_report(out_dir=report, scores=scores, context=context)
        outcomes.append(SeriesOutcome(info.series_uid, folder, time.perf_counter() - started, report))
    return outcomes


def refuse_existing(
    infos: Sequence[SeriesInfo], out_root: Path, derivation: Derivation, overwrite: bool
) -> None:
    """Fail before any work when an output series already exists (the writer checks again)."""
    if overwrite:
        return
    for info in infos:
        folder = derived_series_folder(out_dir=out_root, source=info, derivation=derivation)
        if folder.exists():
            raise OutputError(f"{folder} already holds a series; pass --overwrite to replace it")
