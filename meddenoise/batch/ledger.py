"""The job manifest: one SQLite file (WAL, synchronous=FULL) recording every series' state.

A batch job and the DICOM node both keep their state here, so a crash or ``kill -9`` loses at most
the step in flight: every ``put`` is committed before it returns. SQLite's locking makes it safe for
several processes on one machine (``--num-parts`` on one host); on a network file system give each
machine its own manifest (``--manifest``), since SQLite locks are unreliable there.
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
from meddenoise.pipeline.batch import SeriesRecord

MANIFEST_NAME = "meddenoise-manifest.sqlite"
NodeState = Literal["receiving", "received", "denoised", "sent", "failed"]


@dataclass(frozen=True)
class NodeRecord:
    """One series at the DICOM node: where it came from, how far it got, and what came of it."""

    series_uid: str
    study_uid: str
    state: NodeState
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


def _create_sql(table: str, record: type) -> str:
    hints = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
    columns = [f"{f.name} {hints.get(str(f.type), 'TEXT')}" for f in fields(record)]
    columns[0] += " PRIMARY KEY"
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, updated REAL)"


class Manifest:
    """SQLite-backed ledger for batch jobs (``get``/``put``) and the node (``node_*``).

    Thread-safe (one connection behind a lock). Use as a context manager, or call ``close``.

    Examples
    --------
    >>> import tempfile
    >>> with Manifest(Path(tempfile.mkdtemp()) / "m.sqlite") as manifest:
    ...     manifest.put(SeriesRecord("1.2.3", "done", "abc"))
    ...     manifest.get("1.2.3").state
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
            self._db.execute(_create_sql("batch_series", SeriesRecord))
            self._db.execute(_create_sql("node_series", NodeRecord))
        except (OSError, sqlite3.Error) as err:
            raise OutputError(f"{self.path}: cannot open the manifest ({err})") from err

    def __enter__(self) -> Manifest:
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
        """The batch record of a series, or None."""
        rows = self._select("batch_series", SeriesRecord, "series_uid = ?", (series_uid,))
        return rows[0] if rows else None

    def put(self, record: SeriesRecord) -> None:
        """Insert or replace a batch record; committed (durably) before it returns."""
        self._upsert("batch_series", asdict(record))

    def batch_records(self) -> list[SeriesRecord]:
        """Every batch record, by series UID."""
        return self._select("batch_series", SeriesRecord, "1", ())

    def node_get(self, series_uid: str) -> NodeRecord | None:
        """The node record of a series, or None."""
        rows = self._select("node_series", NodeRecord, "series_uid = ?", (series_uid,))
        return rows[0] if rows else None

    def node_put(self, record: NodeRecord) -> None:
        """Insert or replace a node record; committed (durably) before it returns."""
        self._upsert("node_series", asdict(record))

    def node_records(self, *states: NodeState) -> list[NodeRecord]:
        """The node records in any of ``states`` (all when none is given), by series UID."""
        if not states:
            return self._select("node_series", NodeRecord, "1", ())
        marks = ", ".join("?" for _ in states)
        return self._select("node_series", NodeRecord, f"state IN ({marks})", states)

    def _upsert(self, table: str, values: dict[str, Any]) -> None:
        values = {**values, "updated": time.time()}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.lock:
            try:
                self._db.execute(
                    f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})", tuple(values.values())
                )
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot record {values.get('series_uid')} ({err})") from err

    def _select(self, table: str, record: Any, where: str, args: tuple[Any, ...]) -> list[Any]:
        names = [f.name for f in fields(record)]
        with self.lock:
            try:
                rows = self._db.execute(
                    f"SELECT {', '.join(names)} FROM {table} WHERE {where} ORDER BY series_uid", args
                ).fetchall()
            except sqlite3.Error as err:
                raise OutputError(f"{self.path}: cannot read the manifest ({err})") from err
        kinds = {f.name: f.type for f in fields(record)}
        return [
            record(**{n: (bool(v) if kinds[n] == "bool" else v) for n, v in zip(names, row, strict=True)})
            for row in rows
        ]
