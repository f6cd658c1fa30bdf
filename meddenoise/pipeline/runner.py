"""The one series runner: read → transform (denoise or simulate) → write → report, per series.

Every face calls it: ``denoise``, ``simulate``, ``batch``, the DICOM node and the demo. Each
series gets its own :class:`SeriesResult`; one failing series never stops the others, and a
series that cannot be processed (a scout with mixed orientations, a series with a gap) is
refused with its reason instead of stopping the run. Everything the run knows about its output
(folder, SeriesInstanceUID, instance count) comes from what it wrote, never from reading it back.

Examples
--------
>>> from meddenoise.pipeline import RunRequest, denoise_path  # doctest: +SKIP
>>> summary = denoise_path(input_path="scans", out_dir="out", request=RunRequest())  # doctest: +SKIP
>>> [r.output_folder for r in summary.succeeded]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from meddenoise.device import resolve_device
from meddenoise.dicom import (
    CTSeries,
    Derivation,
    ScanResult,
    SeriesInfo,
    check_output_location,
    find_series,
    select_series,
    shown_path,
    shown_text,
)
from meddenoise.dicom.derive import derived_identity
from meddenoise.errors import MeddenoiseError, SeriesError
from meddenoise.models import ModelCard
from meddenoise.pipeline.evaluate import evaluate, write_evaluation
from meddenoise.pipeline.load import (
    input_folder,
    load_info,
    read_series,
    resolve_model,
    sampled_noise,
    short_uid,
)
from meddenoise.pipeline.request import OutputPolicy, RunRequest
from meddenoise.pipeline.series import DenoiseStep, refuse_existing, write_series
from meddenoise.pipeline.stream import stream_denoise
from meddenoise.pipeline.volume import refuse_irregular, save_series_volumes
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import Evaluation, ReportFiles

logger = logging.getLogger(__name__)

REPORT_SUFFIX = ".report"


class SeriesStep(Protocol):
    """What a run does to each series between reading and writing (denoise, simulate)."""

    @property
    def derivation(self) -> Derivation: ...

    @property
    def card(self) -> ModelCard | None: ...

    def apply(self, series: CTSeries, progress: ProgressFactory) -> CTSeries: ...


@dataclass(frozen=True, eq=False)
class SeriesResult:
    """What came of one input series.

    On success ``output_folder`` holds the derived series, whose new SeriesInstanceUID and
    instance count are given; ``series`` is the derived series in memory (dropped by
    :func:`run_path`, which keeps memory flat over many series, as it drops ``evaluation``).
    ``error`` is empty on success.
    ``seconds`` splits the time into read, the step ("denoise"/"simulate"), write and report.
    ``input_noise_hu`` is the input's estimated noise SD (median of a few slices' estimates).
    """

    source_series_uid: str
    output_folder: Path | None = None
    output_series_uid: str = ""
    instances: int = 0
    model: ModelCard | None = None
    seconds: Mapping[str, float] = field(default_factory=dict)
    series: CTSeries | None = None
    report: ReportFiles | None = None
    evaluation: Evaluation | None = None
    input_noise_hu: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the series was written."""
        return not self.error

    @property
    def total_seconds(self) -> float:
        """Wall time spent on the series."""
        return float(sum(self.seconds.values()))


@dataclass(frozen=True)
class RunSummary:
    """Every series' result, and the files the scan skipped (with the reason)."""

    results: tuple[SeriesResult, ...] = ()
    skipped_files: tuple[tuple[Path, str], ...] = ()

    @property
    def succeeded(self) -> tuple[SeriesResult, ...]:
        """The series that were written."""
        return tuple(r for r in self.results if r.ok)

    @property
    def failed(self) -> tuple[SeriesResult, ...]:
        """The series that were refused or failed, each with its error."""
        return tuple(r for r in self.results if not r.ok)

    @property
    def exit_code(self) -> int:
        """0 when every series was written, 1 when any was refused or failed."""
        return 1 if self.failed else 0


def error_line(error: BaseException) -> str:
    """An exception as one line (MeddenoiseError messages already are; others get their type)."""
    text = str(error) if isinstance(error, MeddenoiseError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def run_series(
    info: SeriesInfo,
    *,
    step: SeriesStep,
    out_dir: Path,
    policy: OutputPolicy,
    reference: CTSeries | None = None,
    progress: ProgressFactory = no_progress,
) -> SeriesResult:
    """Read, transform, write (and report on) one series; any failure becomes ``result.error``.

    Only ``KeyboardInterrupt`` and ``SystemExit`` pass through: a batch must go on after any
    per-series error, and the writer leaves nothing half-written behind.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    try:
        if info.fatal_problems:
            raise SeriesError(
                f"series {shown_text(info.series_uid)} refused: {'; '.join(info.fatal_problems)}"
            )
        if streams(step, policy):
            return _streamed(info, step=step, out_dir=out_dir, policy=policy, progress=progress)
        source = load_info(info, progress)
        noise_hu = sampled_noise(info, source).sd_hu
        _log_noise(info, noise_hu, step)
        lap("read")
        derived = step.apply(source, progress)
        lap("step")
        identity = derived_identity(source=info, derivation=step.derivation)
        folder = write_series(
            derived,
            out_dir=out_dir,
            derivation=step.derivation,
            overwrite=policy.overwrite,
            progress=progress,
            identity=identity,
        )
        save_series_volumes(derived, folder=folder, formats=policy.also_save, overwrite=policy.overwrite)
        # The series in memory is now the written one: its UID is the new series'.
        derived = replace(derived, info=replace(derived.info, series_uid=identity.series_uid))
        lap("write")
        report, evaluation = None, None
        if policy.report:
            evaluation = evaluate(
                denoised=derived,
                reference=reference,
                input_series=source,
                card=step.card,
                options=policy.report_options,
                extra={
                    "output_folder": folder.name,
                    "derivation_description": step.derivation.description,
                },
            )
            report = write_evaluation(
                evaluation,
                out_dir=folder.with_name(folder.name + REPORT_SUFFIX),
                options=policy.report_options,
                source=derived,
            )
            lap("report")
    except Exception as err:  # one series' failure is recorded; the run goes on
        logger.debug("series %s failed", short_uid(info.series_uid), exc_info=True)
        return SeriesResult(info.series_uid, model=step.card, seconds=seconds, error=error_line(err))
    logger.info("series %s: %s", short_uid(info.series_uid), seconds)
    return SeriesResult(
        source_series_uid=info.series_uid,
        output_folder=folder,
        output_series_uid=identity.series_uid,
        instances=len(info.slices),
        model=step.card,
        seconds=seconds,
        series=derived,
        report=report,
        evaluation=evaluation,
        input_noise_hu=noise_hu,
    )


def _log_noise(info: SeriesInfo, noise_hu: float, step: SeriesStep) -> None:
    """The series' estimated noise, and whether the model's noise map will be capped below it."""
    logger.info("series %s: estimated noise %.1f HU SD", short_uid(info.series_uid), noise_hu)
    if not isinstance(step, DenoiseStep) or step.settings.noise_level_hu is not None:
        return
    card = step.model.card
    if card.noise_level_cap_hu is not None and noise_hu > card.noise_level_cap_hu:
        logger.info(
            "series %s: model %s denoises it as if it had %g HU (its noise-map cap), keeping "
            "low-contrast detail; give --noise-level to override",
            short_uid(info.series_uid),
            card.name,
            card.noise_level_cap_hu,
        )


def streams(step: SeriesStep, policy: OutputPolicy) -> bool:
    """Whether a series is denoised chunk by chunk in flat memory: when nothing needs the whole
    volume at once (a report, a volume copy) and no slice may be missing (``allow_gaps``)."""
    return isinstance(step, DenoiseStep) and not (policy.report or policy.also_save or policy.allow_gaps)


def _streamed(
    info: SeriesInfo, *, step: SeriesStep, out_dir: Path, policy: OutputPolicy, progress: ProgressFactory
) -> SeriesResult:
    assert isinstance(step, DenoiseStep)
    started = time.perf_counter()
    for problem in info.problems:
        logger.warning("series %s: %s", info.series_uid, problem)
    noise_hu = sampled_noise(info).sd_hu
    _log_noise(info, noise_hu, step)
    identity = derived_identity(source=info, derivation=step.derivation)
    folder = stream_denoise(
        info, step=step, out_dir=out_dir, identity=identity, overwrite=policy.overwrite, progress=progress
    )
    return SeriesResult(
        source_series_uid=info.series_uid,
        output_folder=folder,
        output_series_uid=identity.series_uid,
        instances=len(info.slices),
        model=step.card,
        seconds={"stream": round(time.perf_counter() - started, 3)},
        input_noise_hu=noise_hu,
    )


def lost_results(scan: ScanResult, series_uids: Sequence[str] = ()) -> list[SeriesResult]:
    """A failed result for each series none of whose files could be used (else it would vanish)."""
    results = []
    for uid, files in scan.lost_series.items():
        if series_uids and uid not in series_uids:
            continue
        why = "; ".join(f"{shown_path(f.path.name)}: {f.problem.message}" for f in files[:3])
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        results.append(SeriesResult(uid, error=f"series {shown_text(uid)}: no usable slice ({why}{more})"))
    return results


def plan_run(
    *,
    input_path: str | Path,
    out_dir: str | Path,
    make_step: Callable[[], SeriesStep],
    policy: OutputPolicy,
    series_uids: Sequence[str] = (),
) -> tuple[SeriesStep, tuple[SeriesInfo, ...], ScanResult]:
    """Everything checked before any output is written, cheapest first: the output location, the
    series found and chosen, then the step (loading a model), existing outputs and ``also_save``
    on irregular grids. Returns the step, the chosen series and the scan."""
    input_root, out_root = Path(input_path), Path(out_dir)
    check_output_location(input_root=input_folder(input_root), out_dir=out_root)
    scan = find_series(input_root, allow_gaps=policy.allow_gaps)
    infos = select_series(scan, series_uids or None)
    step = make_step()
    usable = [info for info in infos if not info.fatal_problems]
    refuse_existing(usable, out_root, step.derivation, policy.overwrite)
    if policy.also_save:
        refuse_irregular(usable)
    return step, infos, scan


def run_path(
    *,
    input_path: str | Path,
    out_dir: str | Path,
    make_step: Callable[[], SeriesStep],
    policy: OutputPolicy,
    series_uids: Sequence[str] = (),
    reference_path: str | Path | None = None,
    progress: ProgressFactory = no_progress,
    on_result: Callable[[SeriesResult], None] | None = None,
) -> RunSummary:
    """Run the step ``make_step`` makes over every chosen CT series under ``input_path``.

    ``on_result`` hears of each series as it finishes, with its in-memory series and evaluation,
    which the summary then drops.

    Raises (before writing anything) for a bad output location, no or an unknown series, a bad
    model, an existing output without ``policy.overwrite``, or an unreadable reference;
    per-series problems are results, not exceptions.
    """
    step, infos, scan = plan_run(
        input_path=input_path, out_dir=out_dir, make_step=make_step, policy=policy, series_uids=series_uids
    )
    reference = read_series(reference_path, progress=progress) if reference_path is not None else None
    if reference is not None and not policy.report:
        raise ValueError("a reference is scored in the report: set the output policy's report")
    results = lost_results(scan, series_uids)
    for result in results:
        if on_result is not None:
            on_result(result)
    for info in infos:
        result = run_series(
            info, step=step, out_dir=Path(out_dir), policy=policy, reference=reference, progress=progress
        )
        logger.info("series %s: %s", short_uid(info.series_uid), result.error or "written")
        if on_result is not None:
            on_result(result)
        results.append(replace(result, series=None, evaluation=None))
    return RunSummary(results=tuple(results), skipped_files=scan.skipped)


def denoise_step(request: RunRequest) -> DenoiseStep:
    """Resolve the request's device (failing on a missing GPU) and load its model, once."""
    device = resolve_device(request.settings.device)
    return DenoiseStep(resolve_model(request.model, device=str(device)), request.settings)


def denoise_path(
    *,
    input_path: str | Path,
    out_dir: str | Path,
    request: RunRequest | None = None,
    progress: ProgressFactory = no_progress,
    on_result: Callable[[SeriesResult], None] | None = None,
) -> RunSummary:
    """Denoise every chosen CT series under ``input_path`` into derived series under ``out_dir``.

    Examples
    --------
    >>> summary = denoise_path(input_path="scans", out_dir="out", request=RunRequest())  # doctest: +SKIP
    >>> summary.exit_code  # doctest: +SKIP
    0
    """
    request = request or RunRequest()
    return run_path(
        input_path=input_path,
        out_dir=out_dir,
        make_step=lambda: denoise_step(request),
        policy=request.output,
        series_uids=request.series_uids,
        reference_path=request.reference,
        progress=progress,
        on_result=on_result,
    )


__all__ = [
    "REPORT_SUFFIX",
    "RunSummary",
    "SeriesResult",
    "SeriesStep",
    "denoise_path",
    "denoise_step",
    "error_line",
    "plan_run",
    "run_path",
    "run_series",
]
