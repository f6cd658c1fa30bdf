"""A server killed mid-job (SIGKILL) resumes the job after a restart and finishes it exactly once."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from tests.dicom.synthetic import make_series
from tests.server.conftest import series_files, start_server, wait_done


@pytest.mark.slow
def test_kill_mid_job_then_restart_finishes_each_job_once(tmp_path: Path) -> None:
    make_series(tmp_path / "long", n_slices=64)
    server = start_server(tmp_path, token=False)
    try:
        with server.client() as client:
            ids = [
                client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"}).json()[
                    "job_id"
                ]
                for _ in range(2)
            ]
            deadline = time.monotonic() + 120
            while client.get(f"/jobs/{ids[0]}").json()["progress"]["slices_done"] == 0:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
        server.kill()
        server.start()
        with server.client() as client:
            jobs = [wait_done(client, job_id) for job_id in ids]
            assert [job["state"] for job in jobs] == ["done", "done"]
            assert jobs[0]["attempts"] == 2 and jobs[1]["attempts"] == 1
            assert [job["job_id"] for job in client.get("/jobs").json()] == ids
            archive = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{ids[0]}/result").content))
            assert sum(name.endswith(".dcm") for name in archive.namelist()) == 64
        for job_id in ids:
            output = server.storage / "jobs" / job_id / "output"
            names = sorted(p.name for p in output.iterdir())  # one series, its report, no leftovers
            assert len(names) == 2 and names[1] == names[0] + ".report", names
    finally:
        server.stop()


@pytest.mark.slow
def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    make_series(tmp_path / "long", n_slices=48)
    server = start_server(tmp_path, token=False, args=["--max-queued", "1"])
    try:
        with server.client() as client:
            first = client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"})
            assert first.status_code == 202
            refused = client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert wait_done(client, first.json()["job_id"])["state"] == "done"
            assert len(client.get("/jobs").json()) == 1
            again = client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"})
            assert again.status_code == 202
    finally:
        server.stop()
