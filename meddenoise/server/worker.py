"""The job runner: ``workers_per_device`` threads that take queued jobs from the ledger and run
each through the one series runner (:func:`meddenoise.pipeline.run_path` with a ``DenoiseStep``).

A job's state lives only in the ledger, so a restart finds it there: jobs left running go back to
the queue and run again from their stored input. Output is replaced atomically (the derived series
by the writer, ``result.zip`` by rename) and a job is marked done once, so a job interrupted by a
crash still ends with exactly one result. Cancelling marks the job cancelled in the ledger; the
running job sees it at its next progress step and stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from meddenoise.errors import MeddenoiseError
from meddenoise.pacs.dicomweb import pull, push
from meddenoise.pacs.queue import uid_tag
from meddenoise.pipeline import (
    DenoiseStep,
    InferenceSettings,
    OutputPolicy,
    SeriesResult,
    error_line,
    run_path,
)
from meddenoise.progress import Advance
from meddenoise.server.intake import fsync_path, one_ct_series
from meddenoise.server.jobs import JobLedger, JobRecord
from meddenoise.server.pool import ModelPool, PoolEntry

logger = logging.getLogger(__name__)

JOBS_FOLDER = "jobs"
RESULT_NAME = "result.zip"


class JobCancelled(Exception):
    """Raised inside a running job (from its progress callback) once it was cancelled."""


def job_folder(storage: Path, job_id: str) -> Path:
    """Where a job keeps its input, output and result: ``storage/jobs/<id>``."""
    return storage / JOBS_FOLDER / job_id


class JobRunner:
    """Threads that run queued jobs; ``start``, ``stop`` and ``wake`` (a job was queued)."""

    def __init__(self, *, storage: Path, ledger: JobLedger, pool: ModelPool, workers: int) -> None:
        self.storage = storage
        self.ledger = ledger
        self.pool = pool
        self.workers = workers
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Requeue jobs a crash left running, then start the worker threads."""
        for record in self.ledger.requeue_interrupted():
            logger.warning("job %s was interrupted; it runs again", record.job_id)
        for k in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"meddenoise-job-{k}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the workers to stop after their current step and wait for them."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout_s)

    def wake(self) -> None:
        """Tell an idle worker that a job is waiting."""
        with self._wake:
            self._wake.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            record = self.ledger.claim_next()
            if record is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            try:
                self._run(record)
            except Exception as err:  # a worker never dies: the job fails with the reason
                logger.exception("job %s failed unexpectedly", record.job_id)
                self._finish(record.job_id, state="failed", error=error_line(err))

    def _finish(self, job_id: str, **changes: object) -> None:
        self.ledger.update_job(job_id, when=("running",), finished=time.time(), **changes)

    def _run(self, record: JobRecord) -> None:
        try:
            entry = self.pool.get(record.model)
        except KeyError as err:
            self._finish(record.job_id, state="failed", error=str(err.args[0]))
            return
        self.ledger.update_job(record.job_id, when=("running",), model_version=entry.version)
        folder = job_folder(self.storage, record.job_id)
        logger.info("job %s: started on %s (attempt %d)", record.job_id, entry.version, record.attempts)
        try:
            input_path = self._input(record, folder)
            result = self._denoise(record, entry, input_path, folder)
            if result is None:
                return
            pushed = (
                push(url=record.destination_url, folder=Path(str(result.output_folder)))
                if record.destination_url
                else 0
            )
        except (MeddenoiseError, OSError, ValueError) as err:
            if not self._cancelled(record.job_id):
                logger.error("job %s failed: %s", record.job_id, type(err).__name__)
                self._finish(record.job_id, state="failed", error=error_line(err))
            return
        self._finish(
            record.job_id,
            state="done",
            output_series_uid=result.output_series_uid,
            slices_done=result.instances,
            pushed=pushed,
            error="",
        )
        logger.warning(
            "job %s: done (%d slices, series %s, %.1f s)",
            record.job_id,
            result.instances,
            uid_tag(result.output_series_uid),
            result.total_seconds,
        )

    def _input(self, record: JobRecord, folder: Path) -> Path:
        if record.source == "path":
            return Path(record.source_url)
        if record.source == "dicomweb":
            pull(url=record.source_url, out_dir=folder / "input", series_uid=record.series_uid)
            info = one_ct_series(folder / "input")
            self.ledger.update_job(record.job_id, when=("running",), slices_total=len(info.slices))
        return folder / "input"

    def _denoise(
        self, record: JobRecord, entry: PoolEntry, input_path: Path, folder: Path
    ) -> SeriesResult | None:
        settings = InferenceSettings(device=self.pool.device, strength=record.strength)
        summary = run_path(
            input_path=input_path,
            out_dir=folder / "output",
            make_step=lambda: DenoiseStep(entry.model, settings),
            policy=OutputPolicy(overwrite=True, report=True),
            series_uids=(record.series_uid,) if record.series_uid else (),
            reference_path=folder / "reference" if record.has_reference else None,
            progress=self._progress(record.job_id),
        )
        if self._stop.is_set():  # shutting down: the job runs again after the restart
            self.ledger.update_job(record.job_id, when=("running",), state="queued", slices_done=0)
            return None
        if self._cancelled(record.job_id):
            logger.warning("job %s: cancelled", record.job_id)
            return None
        if not summary.succeeded:
            error = "; ".join(r.error for r in summary.failed) or "no CT series"
            self._finish(record.job_id, state="failed", error=error)
            logger.error("job %s: failed", record.job_id)
            return None
        result = summary.succeeded[0]
        write_result_zip(result, folder / RESULT_NAME)
        return result

    def _cancelled(self, job_id: str) -> bool:
        current = self.ledger.job(job_id)
        return current is not None and current.state == "cancelled"

    def _progress(self, job_id: str) -> _Progress:
        return _Progress(self.ledger, job_id, self._stop)


class _Progress:
    """A ProgressFactory that records denoised slices and stops a cancelled job (or any, on shutdown)."""

    def __init__(self, ledger: JobLedger, job_id: str, stop: threading.Event) -> None:
        self.ledger = ledger
        self.job_id = job_id
        self.stop = stop
        self.done = 0

    def __call__(self, *, description: str, total: int) -> AbstractContextManager[Advance]:
        return self._open(description)

    @contextmanager
    def _open(self, description: str) -> Iterator[Advance]:
        counting = description.startswith("denoise")

        def advance(n: int) -> None:
            if self.stop.is_set():
                raise JobCancelled("the server is stopping")
            if counting:
                self.done += n
            changes = {"slices_done": self.done} if counting else {}
            if self.ledger.update_job(self.job_id, when=("running",), **changes) is None:
                raise JobCancelled(f"job {self.job_id} was cancelled")

        yield advance


def write_result_zip(result: SeriesResult, target: Path) -> Path:
    """Zip the derived series (under its folder name) and ``report.json``; atomically, fsync'ed."""
    series = Path(result.output_folder)  # type: ignore[arg-type]
    partial = target.with_name(f".{target.name}.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(series.rglob("*")):
            if path.is_file():
                archive.write(path, arcname=f"{series.name}/{path.relative_to(series).as_posix()}")
        if result.report is not None:
            archive.write(result.report.json, arcname="report.json")
    fsync_path(partial)
    os.replace(partial, target)
    fsync_path(target.parent)
    return target
