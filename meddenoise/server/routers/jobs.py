"""``/jobs``: submit (multipart upload or JSON), poll, fetch the result, cancel."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from meddenoise.server.intake import Refused, one_ct_series
from meddenoise.server.jobs import JobRecord
from meddenoise.server.routers import server_of
from meddenoise.server.submit import (
    JobOptions,
    admit,
    allowed_path,
    allowed_url,
    check_capacity,
    checked_options,
    stage_upload,
)
from meddenoise.server.worker import RESULT_NAME, job_folder

router = APIRouter(prefix="/jobs", tags=["jobs"])
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_FILES = 10_000


class DicomWebSource(BaseModel):
    """A series to pull with WADO-RS from a configured DICOMweb root."""

    model_config = ConfigDict(extra="forbid")
    url: str
    series_uid: str


class JobRequest(BaseModel):
    """A JSON job: a DICOMweb series or a server-side path, and an optional STOW-RS destination."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    strength: float = 1.0
    dicomweb: DicomWebSource | None = None
    path: str | None = None
    destination: str | None = None


def describe(record: JobRecord) -> dict[str, Any]:
    """A job as ``GET /jobs/{id}`` shows it."""
    return {
        "job_id": record.job_id,
        "state": record.state,
        "model": record.model,
        "model_version": record.model_version,
        "strength": record.strength,
        "progress": {"slices_done": record.slices_done, "slices_total": record.slices_total},
        "error": record.error,
        "attempts": record.attempts,
        "output_series_uid": record.output_series_uid,
        "pushed_instances": record.pushed,
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "result": f"/jobs/{record.job_id}/result" if record.state == "done" else None,
    }


def _job(request: Request, job_id: str) -> JobRecord:
    record = server_of(request).ledger.job(job_id) if JOB_ID.match(job_id) else None
    if record is None:
        raise Refused(f"no job {job_id!r}", status=404)
    return record


@router.post("", status_code=202)
async def submit(request: Request) -> JSONResponse:
    """Queue a job: a multipart upload (``files``: DICOM files or zips; ``reference``; ``model``;
    ``strength``) or a JSON :class:`JobRequest`. 202 with the job id once it is on disk."""
    server = server_of(request)
    check_capacity(server.ledger, server.settings)
    if request.headers.get("content-type", "").startswith("application/json"):
        record = await _from_json(request)
    else:
        record = await _from_upload(request)
    await run_in_threadpool(admit, server.ledger, record, server.settings)
    server.runner.wake()
    location = f"/jobs/{record.job_id}"
    return JSONResponse(describe(record), status_code=202, headers={"Location": location})


async def _from_upload(request: Request) -> JobRecord:
    server = server_of(request)
    async with request.form(max_files=MAX_FILES, max_fields=100) as form:
        try:
            strength = float(str(form.get("strength") or 1.0))
        except ValueError as err:
            raise Refused(f"strength must be a number, got {form.get('strength')!r}") from err
        model = form.get("model")
        options = JobOptions(model=str(model) if model else None, strength=strength)
        record = checked_options(options, pool=server.pool, settings=server.settings)
        files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        inputs = [v.file for k, v in files if k != "reference"]
        references = [v.file for k, v in files if k == "reference"]
        if not inputs:
            raise Refused("the upload holds no files (send them as form field 'files')")
        return await run_in_threadpool(
            stage_upload, record, inputs=inputs, references=references, settings=server.settings
        )


async def _from_json(request: Request) -> JobRecord:
    server = server_of(request)
    settings = server.settings
    try:
        body = JobRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise Refused(f"bad job request: {err.errors()[0]['msg']} at {err.errors()[0]['loc']}") from err
    if (body.dicomweb is None) == (body.path is None):
        raise Refused("name exactly one source: 'dicomweb' or 'path'")
    record = checked_options(
        JobOptions(model=body.model, strength=body.strength), pool=server.pool, settings=settings
    )
    if body.destination:
        record = replace(
            record, destination_url=allowed_url(body.destination, settings.dicomweb_roots, "destination")
        )
    if body.dicomweb is not None:
        url = allowed_url(body.dicomweb.url, settings.dicomweb_roots, "source")
        return replace(record, source="dicomweb", source_url=url, series_uid=body.dicomweb.series_uid)
    path = allowed_path(str(body.path), settings.input_roots)
    info = await run_in_threadpool(one_ct_series, path)
    job_folder(settings.storage, record.job_id).mkdir(parents=True)
    return replace(
        record, source="path", source_url=str(path), series_uid=info.series_uid, slices_total=len(info.slices)
    )


@router.get("")
def list_jobs(request: Request) -> list[dict[str, Any]]:
    """Every job the ledger holds, oldest first."""
    return [describe(record) for record in server_of(request).ledger.jobs()]


@router.get("/{job_id}")
def status(request: Request, job_id: str) -> dict[str, Any]:
    """The job's state, progress in slices, model version and error."""
    return describe(_job(request, job_id))


@router.get("/{job_id}/result", response_model=None)
def result(request: Request, job_id: str) -> FileResponse:
    """The derived series and ``report.json``, zipped (409 until the job is done)."""
    record = _job(request, job_id)
    if record.state != "done":
        raise Refused(f"job {job_id} is {record.state}, not done", status=409)
    path = job_folder(server_of(request).settings.storage, job_id) / RESULT_NAME
    return FileResponse(path, media_type="application/zip", filename=f"{job_id}.zip")


@router.delete("/{job_id}")
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job (a running one stops at its next chunk of slices)."""
    import time

    record = _job(request, job_id)
    ledger = server_of(request).ledger
    changed = ledger.update_job(job_id, when=("queued", "running"), state="cancelled", finished=time.time())
    if changed is None:
        raise Refused(f"job {job_id} is already {record.state}", status=409)
    return describe(changed)
