"""The REST server end to end: a real process on loopback, a real httpx client, real DICOM."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.dicom.synthetic import make_series
from tests.server.conftest import TOKEN, ServerProcess, httpx, series_files, wait_done, zipped


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series")
    make_series(folder, n_slices=5)
    return folder


def submit(client: Any, folder: Path, **data: Any) -> dict[str, Any]:
    response = client.post("/jobs", files=series_files(folder), data=data)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['job_id']}"
    return response.json()


def result_zip(client: Any, job_id: str) -> zipfile.ZipFile:
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_health_needs_no_token_and_models_list_versions(server: ServerProcess) -> None:
    with server.client(token=None) as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
    with server.client() as client:
        models = {m["name"]: m for m in client.get("/models").json()}
    assert models["tiny"]["version"] == "0.1" and models["tiny2"]["card_name"] == "tiny-two"
    assert len(models["tiny"]["weights_sha256"]) == 64


def test_round_trip_of_a_series(client: Any, series_folder: Path) -> None:
    job = submit(client, series_folder, model="tiny", strength="0.8")
    assert job["state"] == "queued" and job["progress"]["slices_total"] == 5
    done = wait_done(client, job["job_id"])
    assert done["state"] == "done", done["error"]
    assert done["progress"] == {"slices_done": 5, "slices_total": 5}
    assert done["model_version"] == "tiny v0.1" and done["attempts"] == 1
    archive = result_zip(client, job["job_id"])
    names = archive.namelist()
    assert "report.json" in names
    instances = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names if n.endswith(".dcm")]
    assert len(instances) == 5
    assert {str(ds.SeriesInstanceUID) for ds in instances} == {done["output_series_uid"]}
    assert all("DERIVED" in ds.ImageType for ds in instances)


def test_a_zip_upload_with_a_reference(client: Any, series_folder: Path) -> None:
    files = {f"scan/{p.name}": p.read_bytes() for p in series_folder.rglob("*") if p.is_file()}
    response = client.post(
        "/jobs",
        files=[
            ("files", ("series.zip", zipped(files), "application/zip")),
            *[("reference", part) for _, part in series_files(series_folder)],
        ],
        data={"model": "tiny2"},
    )
    assert response.status_code == 202, response.text
    done = wait_done(client, response.json()["job_id"])
    assert done["state"] == "done" and done["model_version"] == "tiny-two v2.0"


@pytest.mark.slow
def test_ten_concurrent_jobs_on_two_models(server: ServerProcess, series_folder: Path) -> None:
    parts = series_files(series_folder)

    async def run() -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
            posts = [
                http.post("/jobs", files=parts, data={"model": "tiny" if k % 2 else "tiny2"})
                for k in range(10)
            ]
            return [r.json() for r in await asyncio.gather(*posts)]

    jobs = asyncio.run(run())
    assert len({job["job_id"] for job in jobs}) == 10
    with server.client() as client:
        finished = [wait_done(client, job["job_id"]) for job in jobs]
        assert [f["state"] for f in finished] == ["done"] * 10
        assert {f["model_version"] for f in finished} == {"tiny v0.1", "tiny-two v2.0"}
        assert len({f["output_series_uid"] for f in finished}) == 10
        for f in finished:
            assert sum(n.endswith(".dcm") for n in result_zip(client, f["job_id"]).namelist()) == 5


def test_cancel_a_running_and_a_queued_job(client: Any, tmp_path: Path) -> None:
    make_series(tmp_path / "long", n_slices=48)
    jobs = [submit(client, tmp_path / "long", model="tiny") for _ in range(3)]
    wait_done(client, jobs[0]["job_id"], states=("running", "done"))
    for job in jobs:
        response = client.delete(f"/jobs/{job['job_id']}")
        assert response.status_code in (200, 409)
    for job in jobs:
        final = wait_done(client, job["job_id"])
        if final["state"] == "cancelled":
            assert client.get(f"/jobs/{job['job_id']}/result").status_code == 409
    assert wait_done(client, jobs[-1]["job_id"])["state"] == "cancelled"
    assert client.delete(f"/jobs/{jobs[-1]['job_id']}").status_code == 409


BAD_UID = "0" * 32


@pytest.mark.parametrize(
    ("case", "status"),
    [("not-dicom", 400), ("mr", 422), ("dotdot", 400), ("bomb", 400), ("too-large", 413), ("model", 400)],
)
def test_bad_uploads_are_refused(
    client: Any, tmp_path: Path, series_folder: Path, case: str, status: int
) -> None:
    data = {"model": "tiny"}
    if case == "not-dicom":
        files = [("files", ("notes.txt", b"hello, not DICOM", "text/plain"))]
    elif case == "mr":
        make_series(tmp_path / "mr", n_slices=2, modality="MR")
        files = series_files(tmp_path / "mr")
    elif case == "dotdot":
        files = [("files", ("x.zip", zipped({"../../evil.dcm": b"x" * 100}), "application/zip"))]
    elif case == "bomb":
        files = [("files", ("x.zip", zipped({"a.dcm": bytes(1_500_000)}), "application/zip"))]
    elif case == "too-large":
        files = [("files", ("big.dcm", bytes(3 * 1024 * 1024), "application/dicom"))]
    else:
        files, data = series_files(series_folder), {"model": "no-such-model"}
    response = client.post("/jobs", files=files, data=data)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    if case == "model":
        assert "tiny, tiny2" in response.json()["detail"]


def test_tokens_and_unknown_jobs(server: ServerProcess, series_folder: Path) -> None:
    for token in (None, "wrong-token-0123456789"):
        with server.client(token=token) as http:
            response = http.post("/jobs", files=series_files(series_folder))
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert http.get("/models").status_code == 401
    with server.client() as client:
        for path in (f"/jobs/{BAD_UID}", f"/jobs/{BAD_UID}/result", "/jobs/../etc"):
            assert client.get(path).status_code == 404
        assert client.delete(f"/jobs/{BAD_UID}").status_code == 404
        bad_json = client.post("/jobs", json={"path": "/etc", "model": "tiny"})
        assert bad_json.status_code == 403
        assert (
            client.post("/jobs", json={"dicomweb": {"url": "http://x", "series_uid": "1.2"}}).status_code
            == 403
        )
        assert client.post("/jobs", json={"nonsense": 1}).status_code == 400


def test_logs_carry_no_uids(server: ServerProcess, series_folder: Path) -> None:
    uids = {str(pydicom.dcmread(p).SeriesInstanceUID) for p in series_folder.rglob("*") if p.is_file()}
    log = "".join(p.read_text() for p in server.storage.parent.glob("server-*.log"))
    assert "job" in log and not any(uid in log for uid in uids)
