"""The node's durable queue: received instances on disk, series state in the manifest.

Layout under the storage folder::

    incoming/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   received, fsync'ed
    derived/<SeriesInstanceUID>-denoised/                                   written atomically
    meddenoise-manifest.sqlite                                              SeriesRecord per series

File and folder names come only from UIDs that pass validation, never from raw tag text, so a
crafted tag cannot escape the storage folder. A file is renamed into place after ``fsync`` before
the C-STORE is answered with success.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from meddenoise.batch.ledger import Ledger, SeriesRecord
from meddenoise.dicom.derive import is_valid_uid
from meddenoise.errors import OutputError

logger = logging.getLogger(__name__)


def uid_tag(uid: str) -> str:
    """A short, stable stand-in for a UID in logs (no PHI): the first 12 hex digits of its sha256."""
    return "uid:" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:12]


def incoming_folder(storage: Path, *, study_uid: str, series_uid: str) -> Path:
    """``storage/incoming/<study>/<series>``; ValueError when either UID is not a valid UID."""
    return series_folder(storage / "incoming", study_uid=study_uid, series_uid=series_uid)


def series_folder(root: Path, *, study_uid: str, series_uid: str) -> Path:
    """``root/<study>/<series>``; ValueError when either UID is not a valid UID."""
    for uid in (study_uid, series_uid):
        if not is_valid_uid(uid):
            raise ValueError(f"not a valid UID: {uid_tag(uid)}")
    return root / study_uid / series_uid


def instance_path(folder: Path, sop_instance_uid: str) -> Path:
    """``folder/<SOPInstanceUID>.dcm``; ValueError when the UID is not a valid UID."""
    if not is_valid_uid(sop_instance_uid):
        raise ValueError(f"not a valid UID: {uid_tag(sop_instance_uid)}")
    return folder / f"{sop_instance_uid}.dcm"


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (then fsync the folder).

    Raises
    ------
    OutputError
        On any OS error (disk full, permissions), naming the folder and the cause.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".part-", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot store a received instance ({err.strerror or err})") from err


def note_instance(
    manifest: Ledger, *, series_uid: str, study_uid: str, origin: tuple[str, str], new: bool
) -> None:
    """Record that an instance of a series is arriving (before its file is written)."""
    with manifest.lock:
        record = manifest.get(series_uid)
        now = time.time()
        if record is None or (new and record.state != "receiving"):
            if record is not None:
                logger.warning(
                    "series %s got new instances after it was %s; redoing it",
                    uid_tag(series_uid),
                    record.state,
                )
            record = SeriesRecord(
                series_uid, "receiving", study_uid=study_uid, origin_ae=origin[0], origin_host=origin[1]
            )
        manifest.put(replace(record, last_received=now, released=False))


def note_released(manifest: Ledger, series_uids: set[str]) -> None:
    """The association that delivered these series ended normally: they may complete when idle."""
    with manifest.lock:
        for uid in series_uids:
            record = manifest.get(uid)
            if record is not None and record.state == "receiving":
                manifest.put(replace(record, released=True, last_received=time.time()))


def due_series(manifest: Ledger, *, idle_s: float, incomplete_s: float) -> list[SeriesRecord]:
    """Receiving series that are complete now: released and idle for ``idle_s``.

    A series whose association never ended normally (sender or node crashed) waits for the
    sender to resend; after ``incomplete_s`` it is marked failed, its files kept.
    """
    now = time.time()
    ready = []
    for record in manifest.records("receiving"):
        idle = now - record.last_received
        if record.released and idle >= idle_s:
            ready.append(record)
        elif not record.released and idle >= incomplete_s:
            logger.warning("series %s incomplete for %.0f s; marked failed", uid_tag(record.series_uid), idle)
            manifest.put(
                replace(record, state="failed", error="incomplete: the association never ended normally")
            )
    return ready
