"""Write simulated low-dose versions of full-dose series (projection-domain noise insertion)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from meddenoise import __version__
from meddenoise.dicom import Derivation, check_output_location, find_series, select_series
from meddenoise.pipeline.load import input_folder, load_info, short_uid
from meddenoise.pipeline.series import SeriesOutcome, refuse_existing, write_series
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings, simulate_from_settings


def simulate_path(
    *,
    input_path: str | Path,
    out_dir: str | Path,
    settings: SimulationSettings,
    series_uids: Sequence[str] | None = None,
    seed: int | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
) -> list[SeriesOutcome]:
    """Write a simulated low-dose derived series for every chosen CT series under ``input_path``."""
    input_root, out_root = Path(input_path), Path(out_dir)
    check_output_location(input_root=input_folder(input_root), out_dir=out_root)
    infos = select_series(find_series(input_root), series_uids)
    derivation = Derivation(
        description=f"meddenoise {__version__}: {settings.describe()}",
        series_description_suffix=f"sim {settings.dose_fraction:.0%} dose",
        folder_suffix=f"sim-dose{round(settings.dose_fraction * 100):03d}",
    )
    refuse_existing(infos, out_root, derivation, overwrite)
    outcomes = []
    for info in infos:
        started = time.perf_counter()
        series = load_info(info, progress)
        with progress(
            description=f"simulate {short_uid(info.series_uid)}", total=len(info.slices)
        ) as advance:
            hu = simulate_from_settings(
                series.hu,
                pixel_mm=info.spacing_mm[1:],
                settings=settings,
                seed=seed,
                device=device,
                padding_mask=series.padding_mask,
                progress=advance,
            )
        folder = write_series(
            replace(series, hu=hu),
            out_dir=out_root,
            derivation=derivation,
            overwrite=overwrite,
            progress=progress,
        )
        outcomes.append(SeriesOutcome(info.series_uid, folder, time.perf_counter() - started))
    return outcomes
