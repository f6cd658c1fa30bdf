"""The server's durable job queue: one :class:`JobRecord` per job, in the ledger's SQLite file.

A job is a request (what to denoise, with which model and strength, where to send it), not a
series: the same series may be sent twice, with two models. So a job gets its own record type and
table (``jobs``), kept in the same ledger file as the node's and batch's :class:`SeriesRecord`
table, with the same durability (WAL, ``synchronous=FULL``: committed before ``put`` returns).
:class:`JobLedger` *is* a :class:`~meddenoise.batch.ledger.Ledger`: one connection, one lock.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from meddenoise.batch.ledger import Ledger
from meddenoise.errors import OutputError

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
"""A job goes queued → running → done | failed | cancelled; a crash sends running back to queued."""
FINAL_STATES: tuple[JobState, ...] = ("done", "failed", "cancelled")
JOB_TABLE = "jobs"


@dataclass(frozen=True)
class JobRecord:
    """One job: its source, its settings, how far it got and what came of it.

    ``source`` is ``"upload"`` (files under the job folder) or ``"dicomweb"`` (``source_url`` with
    ``study_uid``/``series_uid``); ``destination_url`` is an optional STOW-RS root for the result.
    ``model_version`` names the model that ran (set when it starts). ``series_uid`` and
    ``output_series_uid`` are stored but only ever logged hashed.
    """

    job_id: str
    state: JobState
    model: str
    strength: float = 1.0
    source: str = "upload"
    source_url: str = ""
    study_uid: str = ""
    series_uid: str = ""
    destination_url: str = ""
    has_reference: bool = False
    model_version: str = ""
    slices_total: int = 0
    slices_done: int = 0
    output_series_uid: str = ""
    pushed: int = 0
    error: str = ""
    attempts: int = 0
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0

    @property
    def final(self) -> bool:
        """Whether the job has ended (done, failed or cancelled)."""
        return self.state in FINAL_STATES


def _create_sql() -> str:
    hints = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
    columns = [f"{f.name} {hints.get(str(f.type), 'TEXT')}" for f in fields(JobRecord)]
    columns[0] += " PRIMARY KEY"
    return f"CREATE TABLE IF NOT EXISTS {JOB_TABLE} ({', '.join(columns)}, updated REAL)"


class JobLedger(Ledger):
    """The ledger with a ``jobs`` table: ``job``/``put_job``/``jobs``/``claim_next``.

    Examples
    --------
    >>> import tempfile
    >>> with JobLedger(Path(tempfile.mkdtemp()) / "m.sqlite") as ledger:
    ...     ledger.put_job(JobRecord("j1", "queued", model="tiny"))
    ...     ledger.claim_next().state
    'running'
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        try:
            with self.lock:
                self._db.execute(_create_sql())
        except sqlite3.Error as err:
            raise OutputError(f"{self.path}: cannot create the job table ({err})") from err

    def __enter__(self) -> JobLedger:
        return self

    def job(self, job_id: str) -> JobRecord | None:
        """The job's record, or None."""
        found = self._jobs("job_id = ?", (job_id,))
        return found[0] if found else None

    def put_job(self, record: JobRecord) -> None:
        """Insert or replace a job; committed (durably) before it returns."""
        values = {**asdict(record), "updated": time.time()}
        names, marks = ", ".join(values), ", ".join("?" for _ in values)
        with self.lock:
            try:
                self._db.execute(
                    f"INSERT OR REPLACE INTO {JOB_TABLE} ({names}) VALUES ({marks})", tuple(values.values())
                )
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot record job {record.job_id} ({err})") from err

    def jobs(self, *states: JobState) -> list[JobRecord]:
        """The jobs in any of ``states`` (all when none is given), oldest first."""
        if not states:
            return self._jobs("1", ())
        return self._jobs(f"state IN ({', '.join('?' for _ in states)})", states)

    def claim_next(self) -> JobRecord | None:
        """Mark the oldest queued job running (attempts + 1) and return it; None when none waits."""
        with self.lock:
            queued = self._jobs("state = 'queued'", (), limit=1)
            if not queued:
                return None
            record = replace(queued[0], state="running", attempts=queued[0].attempts + 1, started=time.time())
            self.put_job(record)
            return record

    def update_job(self, job_id: str, *, when: tuple[JobState, ...], **changes: Any) -> JobRecord | None:
        """Apply ``changes`` to a job atomically if its state is one of ``when``; the new record or None."""
        with self.lock:
            record = self.job(job_id)
            if record is None or record.state not in when:
                return None
            record = replace(record, **changes)
            self.put_job(record)
            return record

    def admit(self, record: JobRecord, *, max_unfinished: int) -> bool:
        """Store a new job unless ``max_unfinished`` jobs are already queued or running."""
        with self.lock:
            if self.unfinished() >= max_unfinished:
                return False
            self.put_job(record)
            return True

    def unfinished(self) -> int:
        """How many jobs are queued or running."""
        with self.lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM {JOB_TABLE} WHERE state IN ('queued', 'running')"
            ).fetchone()
        return int(row[0])

    def requeue_interrupted(self) -> list[JobRecord]:
        """After a restart: every job left running goes back to queued (it resumes); returns them."""
        with self.lock:
            interrupted = self.jobs("running")
            for record in interrupted:
                self.put_job(replace(record, state="queued", slices_done=0))
        return interrupted

    def _jobs(self, where: str, args: tuple[Any, ...], *, limit: int | None = None) -> list[JobRecord]:
        names = [f.name for f in fields(JobRecord)]
        kinds = {f.name: str(f.type) for f in fields(JobRecord)}
        tail = f" LIMIT {int(limit)}" if limit else ""
        sql = f"SELECT {', '.join(names)} FROM {JOB_TABLE} WHERE {where} ORDER BY created, job_id{tail}"
        with self.lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot read the job table ({err})") from err
        records = []
        for row in rows:
            values: dict[str, Any] = {
                n: bool(v) if kinds[n] == "bool" else v for n, v in zip(names, row, strict=True)
            }
            records.append(JobRecord(**values))
        return records
