"""Turning a ``POST /jobs`` into a durable queued job (the blocking part, run off the event loop).

An upload is staged in ``jobs/.staging-<id>/``, fsync'ed, checked (one CT series), renamed to
``jobs/<id>/`` and only then recorded as queued in the ledger: the 202 comes after all of it, so an
acknowledged job is on disk, and a crash before the record leaves only a folder that the next start
removes. A JSON job names a DICOMweb series (pulled by the worker) or a server-side path, each
allowed only under the configured roots.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from meddenoise.pacs.queue import uid_tag
from meddenoise.pipeline import InferenceSettings
from meddenoise.server.intake import Refused, ZipLimits, discard, one_ct_series, publish, store_parts
from meddenoise.server.jobs import JobLedger, JobRecord
from meddenoise.server.pool import ModelPool
from meddenoise.server.settings import ServerSettings
from meddenoise.server.worker import job_folder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """What every job names: the model (served name; None: the default) and the strength."""

    model: str | None = None
    strength: float = 1.0


def new_job_id() -> str:
    """A fresh job id: 32 hex digits."""
    return uuid.uuid4().hex


def checked_options(options: JobOptions, *, pool: ModelPool, settings: ServerSettings) -> JobRecord:
    """A queued record template with the model and strength checked (Refused 400 otherwise)."""
    names = pool.names()
    model = options.model or settings.default_model or (names[0] if names else "")
    if model not in names:
        served = ", ".join(names) or "none"
        raise Refused(f"unknown model {model!r}; served: {served}")
    try:
        InferenceSettings(strength=options.strength)
    except ValueError as err:
        raise Refused(str(err)) from err
    return JobRecord(
        new_job_id(), "queued", model=model, strength=float(options.strength), created=time.time()
    )


def admit(ledger: JobLedger, record: JobRecord, settings: ServerSettings) -> None:
    """Record the job as queued, or Refused 429 when the queue is full (its folder is removed)."""
    if not ledger.admit(record, max_unfinished=settings.max_queued):
        discard(job_folder(settings.storage, record.job_id))
        raise Refused(f"the queue is full ({settings.max_queued} jobs); retry later", status=429)
    logger.info("job %s: queued (%s, series %s)", record.job_id, record.source, uid_tag(record.series_uid))


def check_capacity(ledger: JobLedger, settings: ServerSettings) -> None:
    """Refused 429 early, before an upload is read, when the queue is already full."""
    if ledger.unfinished() >= settings.max_queued:
        raise Refused(f"the queue is full ({settings.max_queued} jobs); retry later", status=429)


def stage_upload(
    record: JobRecord,
    *,
    inputs: list[BinaryIO],
    references: list[BinaryIO],
    settings: ServerSettings,
) -> JobRecord:
    """Store the uploaded series (and reference) durably under ``jobs/<id>/``; the record to queue."""
    final = job_folder(settings.storage, record.job_id)
    staging = final.with_name(f".staging-{record.job_id}")
    limits = ZipLimits(max_bytes=settings.max_upload_bytes)
    try:
        store_parts(inputs, staging / "input", limits=limits)
        info = one_ct_series(staging / "input")
        if references:
            store_parts(references, staging / "reference", limits=limits)
            one_ct_series(staging / "reference")
        publish(staging, final)
    except BaseException:
        discard(staging)
        raise
    return replace(
        record,
        series_uid=info.series_uid,
        study_uid=info.study_uid,
        slices_total=len(info.slices),
        has_reference=bool(references),
    )


def allowed_url(url: str, roots: tuple[str, ...], what: str) -> str:
    """``url`` when it starts with one of the configured DICOMweb ``roots``; Refused 403 otherwise."""
    if not any(url.rstrip("/").startswith(root.rstrip("/")) for root in roots):
        raise Refused(f"{what} {url!r} is not under a configured DICOMweb root (--dicomweb-root)", status=403)
    return url


def allowed_path(text: str, roots: tuple[Path, ...]) -> Path:
    """A server-side path when it lies under a configured input root; Refused 403 otherwise."""
    path = Path(text).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        raise Refused("the path is not under a configured input root (--input-root)", status=403)
    return path
