"""Unattended batch jobs over a tree of studies: select, shard, resume, denoise, record.

Each series goes through the pipeline's one series runner (:func:`meddenoise.pipeline.run_series`).
The job keeps a ledger (:class:`meddenoise.batch.ledger.Ledger` in practice; any object with
``get``/``put`` works) so that a re-run resumes: finished series whose input is unchanged are
skipped, failed ones are retried only when asked, and a series whose input changed is redone.
Outputs are written atomically, so a crash or ``kill -9`` leaves
either a whole derived series or none, and the ledger never says "done" before the rename.

The input checksum is sha256 over the sorted (relative path, size, mtime in ns) of the series'
files: cheap (no second read of the pixels) and conservative (a touched file is redone).

Examples
--------
>>> from meddenoise.batch import run_batch  # doctest: +SKIP
>>> summary = run_batch(  # doctest: +SKIP
...     in_tree="in", out_tree="out", ledger=ledger, select=lambda info: None
... )
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from meddenoise.batch.ledger import RecordState, SeriesRecord
from meddenoise.errors import require_extra
from meddenoise.pipeline import (
    DenoiseStep,
    LoadedModel,
    RunRequest,
    ScanResult,
    SeriesInfo,
    check_output_location,
    error_line,
    find_series,
    lost_results,
    resolve_device,
    resolve_model,
    run_series,
    short_uid,
)

logger = logging.getLogger(__name__)


class RecordStore(Protocol):
    """Where a batch records its series (durably: ``put`` returns after the record is safe)."""

    def get(self, series_uid: str) -> SeriesRecord | None: ...

    def put(self, record: SeriesRecord) -> None: ...


@dataclass(frozen=True)
class BatchJob:
    """What a worker needs to denoise one series (picklable, for Dask)."""

    info: SeriesInfo
    out_dir: Path
    request: RunRequest


@dataclass(frozen=True)
class JobResult:
    """What came of one BatchJob; ``error`` is empty on success."""

    series_uid: str
    seconds: float
    output_folder: str = ""
    output_series_uid: str = ""
    output_instances: int = 0
    error: str = ""


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs: retry failed series, which part of a sharded job, and where (Dask).

    ``dask`` is a scheduler address (``tcp://host:8786``) or ``local:N`` for a LocalCluster of N
    worker processes; None runs the series here, one after another.
    """

    retry_failed: bool = False
    num_parts: int = 1
    part_id: int = 0
    dask: str | None = None

    def __post_init__(self) -> None:
        if self.num_parts < 1 or not 0 <= self.part_id < self.num_parts:
            raise ValueError(f"part_id must be in 0..{self.num_parts - 1}, not {self.part_id}")


@dataclass(frozen=True)
class BatchSummary:
    """Counts for the summary table: series succeeded, skipped (with reason) and failed (with error)."""

    succeeded: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    unreadable_files: tuple[tuple[Path, str], ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 when nothing failed in this run, 1 otherwise."""
        return 1 if self.failed else 0


def input_checksum(info: SeriesInfo, *, root: Path) -> str:
    """sha256 over the sorted (relative path, size, mtime_ns) of the files of ``info``."""
    digest = hashlib.sha256()
    for path in sorted({ref.path for ref in info.slices}):
        stat = path.stat()
        try:
            name = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(path.resolve())
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def shard_of(series_uid: str, *, num_parts: int) -> int:
    """The part (0..num_parts-1) a series belongs to: stable across runs, machines and Pythons."""
    if num_parts < 1:
        raise ValueError(f"num_parts must be >= 1, not {num_parts}")
    return int(hashlib.sha256(series_uid.encode("utf-8")).hexdigest()[:16], 16) % num_parts


def worker_model(model: str | Path | LoadedModel | None, device: str) -> LoadedModel:
    """The model, loaded once per process (each Dask worker keeps its own)."""
    return model if isinstance(model, LoadedModel) else _cached_model(model, device)


@functools.lru_cache(maxsize=2)
def _cached_model(model_ref: str | Path | None, device: str) -> LoadedModel:
    return resolve_model(model_ref, device=device)


def run_job(job: BatchJob) -> JobResult:
    """Denoise and write one series; any failure becomes ``JobResult.error`` (the batch goes on)."""
    started = time.perf_counter()
    request = job.request
    try:
        model = worker_model(request.model, str(resolve_device(request.settings.device)))
    except Exception as err:  # a worker that cannot load the model fails its series, not the batch
        return JobResult(job.info.series_uid, time.perf_counter() - started, error=error_line(err))
    policy = replace(request.output, overwrite=True)  # the ledger, not the folder, says what is done
    result = run_series(
        job.info, step=DenoiseStep(model, request.settings), out_dir=job.out_dir, policy=policy
    )
    seconds = time.perf_counter() - started
    if not result.ok:
        return JobResult(job.info.series_uid, seconds, error=result.error)
    return JobResult(
        job.info.series_uid, seconds, str(result.output_folder), result.output_series_uid, result.instances
    )


def plan_batch(
    infos: Iterable[SeriesInfo],
    *,
    root: Path,
    ledger: RecordStore,
    select: Callable[[SeriesInfo], str | None],
    retry_failed: bool,
    part: tuple[int, int] = (1, 0),
) -> tuple[list[tuple[SeriesInfo, str]], list[tuple[str, str]]]:
    """Split the series into (to do, with checksum) and (skipped, with reason) for this part."""
    num_parts, part_id = part
    todo, skipped = [], []
    for info in infos:
        if shard_of(info.series_uid, num_parts=num_parts) != part_id:
            continue
        reason = select(info)
        if reason is not None:
            skipped.append((info.series_uid, f"rules: {reason}"))
            continue
        checksum = input_checksum(info, root=root)
        record = ledger.get(info.series_uid)
        if record is not None and record.input_checksum == checksum:
            if record.state == "done":
                skipped.append((info.series_uid, "done before"))
                continue
            if record.state == "failed" and not retry_failed:
                skipped.append((info.series_uid, "failed before (use --retry-failed)"))
                continue
        todo.append((info, checksum))
    return todo, skipped


def run_batch(
    *,
    in_tree: str | Path,
    out_tree: str | Path,
    ledger: RecordStore,
    select: Callable[[SeriesInfo], str | None],
    request: RunRequest | None = None,
    options: BatchOptions = BatchOptions(),
    on_result: Callable[[JobResult], None] | None = None,
) -> BatchSummary:
    """Denoise every selected series of this part under ``in_tree`` into ``out_tree``, resumably.

    ``select`` returns why a series is left out (None to take it); ``on_result`` hears of each
    series as it finishes. Per-series failures are recorded, not raised.
    """
    if options.dask is not None:
        require_extra("dask.distributed", extra="dask", feature="batch --dask")  # before any work
    root, out_root = Path(in_tree), Path(out_tree)
    check_output_location(input_root=root, out_dir=out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    request = request or RunRequest()
    loaded = worker_model(request.model, str(resolve_device(request.settings.device)))  # fail early
    scan = find_series(root)
    todo, skipped = plan_batch(
        scan.series,
        root=root,
        ledger=ledger,
        select=select,
        retry_failed=options.retry_failed,
        part=(options.num_parts, options.part_id),
    )
    recorder = _Recorder(ledger, f"{loaded.card.name} v{loaded.card.version}", on_result)
    skipped += _record_lost(scan, recorder, ledger=ledger, options=options)
    for info, checksum in todo:
        recorder.start(info.series_uid, checksum)
    jobs = [BatchJob(info, out_root, request) for info, _ in todo]
    if options.dask is None:
        for job in jobs:
            recorder.finish(run_job(job))
    else:
        from meddenoise.batch.dask import run_on_dask

        run_on_dask(jobs, address=options.dask, on_result=recorder.finish)
    return BatchSummary(tuple(recorder.succeeded), tuple(skipped), tuple(recorder.failed), scan.skipped)


def _record_lost(
    scan: ScanResult, recorder: _Recorder, *, ledger: RecordStore, options: BatchOptions
) -> list[tuple[str, str]]:
    """Record as failed the series of this part none of whose files could be used; returns those
    skipped because they failed before (unless retrying)."""
    skipped = []
    for result in lost_results(scan):
        uid = result.source_series_uid
        if shard_of(uid, num_parts=options.num_parts) != options.part_id:
            continue
        previous = ledger.get(uid)
        if previous is not None and previous.state == "failed" and not options.retry_failed:
            skipped.append((uid, "failed before (use --retry-failed)"))
            continue
        recorder.start(uid, "")
        recorder.finish(JobResult(uid, 0.0, error=result.error))
    return skipped


class _Recorder:
    """Puts each series' start and outcome into the ledger, and tallies them."""

    def __init__(
        self, ledger: RecordStore, model_name: str, on_result: Callable[[JobResult], None] | None
    ) -> None:
        self.ledger, self.model_name, self.on_result = ledger, model_name, on_result
        self.started: dict[str, SeriesRecord] = {}
        self.succeeded: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def start(self, series_uid: str, checksum: str) -> None:
        previous = self.ledger.get(series_uid)
        attempts = (previous.attempts if previous else 0) + 1
        record = SeriesRecord(series_uid, "running", checksum, model=self.model_name, attempts=attempts)
        self.ledger.put(record)
        self.started[series_uid] = record

    def finish(self, result: JobResult) -> None:
        uid = result.series_uid
        state: RecordState = "failed" if result.error else "done"
        self.ledger.put(
            replace(
                self.started[uid],
                state=state,
                output_folder=result.output_folder,
                output_series_uid=result.output_series_uid,
                output_instances=result.output_instances,
                seconds=result.seconds,
                error=result.error,
            )
        )
        if result.error:
            self.failed.append((uid, result.error))
            logger.warning("series %s failed in %.1f s: %s", short_uid(uid), result.seconds, result.error)
        else:
            self.succeeded.append(uid)
            logger.info("series %s done in %.1f s", short_uid(uid), result.seconds)
        if self.on_result is not None:
            self.on_result(result)
