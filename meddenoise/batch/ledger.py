"""The ledger: one SQLite file (WAL, synchronous=FULL) with one record per series.

A batch job, the DICOM node (and the REST server) keep their state here, in one record type, so a
crash or ``kill -9`` loses at most the step in flight: every ``put`` is committed before it
returns. SQLite's locking makes it safe for several processes on one machine (``--num-parts`` on
one host); on a network file system give each machine its own ledger (``--manifest``), since
SQLite locks are unreliable there.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from meddenoise.errors import OutputError

LEDGER_NAME = "meddenoise-manifest.sqlite"
RecordState = Literal["receiving", "received", "running", "done", "denoised", "sent", "failed"]
"""A batch series goes running → done | failed; a node series receiving → received → denoised → sent."""


@dataclass(frozen=True)
class SeriesRecord:
    """One series in the ledger: where it came from, how far it got, and what came of it.

    ``input_checksum`` lets a batch re-run skip unchanged series; ``origin_*``, ``instances``,
    ``last_received`` and ``released`` are the node's; ``retry_at`` (epoch s) delays a retry.
    """

    series_uid: str
    state: RecordState
    input_checksum: str = ""
    study_uid: str = ""
    origin_ae: str = ""
    origin_host: str = ""
    instances: int = 0
    last_received: float = 0.0
    released: bool = False
    output_folder: str = ""
    output_series_uid: str = ""
    output_instances: int = 0
    model: str = ""
    seconds: float = 0.0
    error: str = ""
    attempts: int = 0
    retry_at: float = 0.0


TABLE = "series"


def _create_sql(table: str, record: type) -> str:
    hints = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
    columns = [f"{f.name} {hints.get(str(f.type), 'TEXT')}" for f in fields(record)]
    columns[0] += " PRIMARY KEY"
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, updated REAL)"


class Ledger:
    """SQLite-backed ledger of :class:`SeriesRecord` (``get``/``put``/``records``).

    Thread-safe (one connection behind ``lock``, which callers also hold for read-modify-write).
    Use as a context manager, or call ``close``.

    Examples
    --------
    >>> import tempfile
    >>> with Ledger(Path(tempfile.mkdtemp()) / "m.sqlite") as ledger:
    ...     ledger.put(SeriesRecord("1.2.3", "done", "abc"))
    ...     ledger.get("1.2.3").state
    'done'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_create_sql(TABLE, SeriesRecord))
        except (OSError, sqlite3.Error) as err:
            raise OutputError(f"{self.path}: cannot open the ledger ({err})") from err

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (everything put is already committed)."""
        with self.lock:
            self._db.close()

    def get(self, series_uid: str) -> SeriesRecord | None:
        """The record of a series, or None."""
        rows = self._select("series_uid = ?", (series_uid,))
        return rows[0] if rows else None

    def put(self, record: SeriesRecord) -> None:
        """Insert or replace a record; committed (durably) before it returns."""
        self._upsert(asdict(record))

    def records(self, *states: RecordState) -> list[SeriesRecord]:
        """The records in any of ``states`` (all when none is given), by series UID."""
        if not states:
            return self._select("1", ())
        marks = ", ".join("?" for _ in states)
        return self._select(f"state IN ({marks})", states)

    def _upsert(self, values: dict[str, Any]) -> None:
        values = {**values, "updated": time.time()}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.lock:
            try:
                self._db.execute(
                    f"INSERT OR REPLACE INTO {TABLE} ({names}) VALUES ({marks})", tuple(values.values())
                )
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot record {values.get('series_uid')} ({err})") from err

    def _select(self, where: str, args: tuple[Any, ...]) -> list[SeriesRecord]:
        names = [f.name for f in fields(SeriesRecord)]
        with self.lock:
            try:
                rows = self._db.execute(
                    f"SELECT {', '.join(names)} FROM {TABLE} WHERE {where} ORDER BY series_uid", args
                ).fetchall()
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot read the ledger ({err})") from err
        kinds = {f.name: f.type for f in fields(SeriesRecord)}
        records = []
        for row in rows:
            values: dict[str, Any] = {
                n: bool(v) if kinds[n] == "bool" else v for n, v in zip(names, row, strict=True)
            }
            records.append(SeriesRecord(**values))
        return records
