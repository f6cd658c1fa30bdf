"""Write simulated low-dose versions of full-dose series (projection-domain noise insertion)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from meddenoise import __version__
from meddenoise.device import resolve_device
from meddenoise.dicom import CTSeries, Derivation
from meddenoise.models import ModelCard
from meddenoise.pipeline.load import short_uid
from meddenoise.pipeline.request import OutputPolicy
from meddenoise.pipeline.runner import RunSummary, SeriesResult, run_path
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings, simulate_from_settings


@dataclass(frozen=True)
class SimulateStep:
    """The runner's step that turns a full-dose series into a simulated lower-dose one."""

    settings: SimulationSettings
    seed: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(resolve_device(self.device)))  # fail on a missing GPU now

    @property
    def derivation(self) -> Derivation:
        """How the simulated series describes itself (the dose is in its folder name)."""
        return Derivation(
            description=f"meddenoise {__version__}: {self.settings.describe()}",
            series_description_suffix=f"sim {self.settings.dose_fraction:.0%} dose",
            folder_suffix=f"sim-dose{round(self.settings.dose_fraction * 100):03d}",
        )

    @property
    def card(self) -> ModelCard | None:
        """No model makes a simulated series."""
        return None

    def apply(self, series: CTSeries, progress: ProgressFactory) -> CTSeries:
        """The series with the extra noise of the lower dose."""
        info = series.info
        with progress(
            description=f"simulate {short_uid(info.series_uid)}", total=len(info.slices)
        ) as advance:
            hu = simulate_from_settings(
                series.hu,
                pixel_mm=info.spacing_mm[1:],
                settings=self.settings,
                seed=self.seed,
                device=self.device,
                padding_mask=series.padding_mask,
                progress=advance,
            )
        return replace(series, hu=hu)


def simulate_path(
    *,
    input_path: str | Path,
    out_dir: str | Path,
    step: SimulateStep,
    series_uids: Sequence[str] = (),
    overwrite: bool = False,
    progress: ProgressFactory = no_progress,
    on_result: Callable[[SeriesResult], None] | None = None,
) -> RunSummary:
    """Write a simulated low-dose derived series for every chosen CT series under ``input_path``.

    Examples
    --------
    >>> step = SimulateStep(settings=SimulationSettings(dose_fraction=0.25), seed=1)  # doctest: +SKIP
    >>> summary = simulate_path(input_path="full", out_dir="sim", step=step)  # doctest: +SKIP
    """
    return run_path(
        input_path=input_path,
        out_dir=out_dir,
        make_step=lambda: step,
        policy=OutputPolicy(overwrite=overwrite),
        series_uids=series_uids,
        progress=progress,
        on_result=on_result,
    )
