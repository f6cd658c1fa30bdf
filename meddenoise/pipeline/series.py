"""The steps of the core composition for DICOM series: read, denoise, write.

:mod:`meddenoise.pipeline.runner` strings them together for every face.

Examples
--------
>>> from meddenoise.pipeline import read_series, denoise_series  # doctest: +SKIP
>>> series = read_series("scans/patient1")  # doctest: +SKIP
>>> denoised = denoise_series(series)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from meddenoise import __version__
from meddenoise.dicom import (
    CTSeries,
    Derivation,
    SeriesInfo,
    derived_series_folder,
    write_derived_series,
)
from meddenoise.dicom.derive import DerivedIdentity
from meddenoise.errors import OutputError
from meddenoise.inference import InferenceSettings, denoise_volume
from meddenoise.models import LoadedModel, ModelCard
from meddenoise.pipeline.load import resolve_model, short_uid, warn_unfamiliar_pixels
from meddenoise.progress import ProgressFactory, no_progress

logger = logging.getLogger(__name__)


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
    identity: DerivedIdentity | None = None,
) -> Path:
    """Write ``series.hu`` as a derived series of ``series.info``; returns the series folder.

    ``identity`` fixes the new series' UIDs (see :func:`derived_identity`); None makes new ones.
    """
    remove_leftovers(derived_series_folder(out_dir=Path(out_dir), source=series.info, derivation=derivation))
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
            identity=identity,
        )


@dataclass(frozen=True)
class DenoiseStep:
    """The runner's step that denoises a series with a loaded model."""

    model: LoadedModel
    settings: InferenceSettings

    @property
    def derivation(self) -> Derivation:
        """How the derived series describes itself."""
        return model_derivation(self.model, self.settings)

    @property
    def card(self) -> ModelCard:
        """The model's card (it goes into the results and reports)."""
        return self.model.card

    def apply(self, series: CTSeries, progress: ProgressFactory) -> CTSeries:
        """The denoised series."""
        return denoise_series(series, model=self.model, settings=self.settings, progress=progress)


def remove_leftovers(final: Path) -> None:
    """Delete the writer's temporary folders for ``final`` left by a killed run (never a whole series)."""
    for pattern in (f".tmp-{final.name}-*", f".old-{final.name}-*"):
        for leftover in final.parent.glob(pattern):
            logger.info("removing %s, left by an interrupted run", leftover.name)
            shutil.rmtree(leftover, ignore_errors=True)


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
