"""A job that pulls its series from a real Orthanc (WADO-RS) and stores the result there (STOW-RS)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.dicom.synthetic import make_series
from tests.pacs.conftest import Orthanc, orthanc  # noqa: F401 - the session fixture
from tests.server.conftest import start_server, wait_done


@pytest.mark.slow
def test_dicomweb_source_and_stow_destination(orthanc: Orthanc, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("dicomweb_client")
    source = make_series(tmp_path / "source", n_slices=4)
    for path in source.paths:
        orthanc.request("POST", "/instances", path.read_bytes())
    study_uid = str(pydicom.dcmread(source.paths[0]).StudyInstanceUID)
    server = start_server(tmp_path, token=False, args=["--dicomweb-root", orthanc.dicomweb])
    try:
        with server.client() as client:
            body = {
                "model": "tiny",
                "dicomweb": {"url": orthanc.dicomweb, "series_uid": source.series_uid},
                "destination": orthanc.dicomweb,
            }
            response = client.post("/jobs", json=body)
            assert response.status_code == 202, response.text
            job = wait_done(client, response.json()["job_id"])
            assert job["state"] == "done", job["error"]
            assert job["pushed_instances"] == 4 and job["progress"]["slices_total"] == 4
            outside = {**body, "destination": "http://127.0.0.1:1/dicom-web"}
            assert client.post("/jobs", json=outside).status_code == 403
    finally:
        server.stop()
    series = orthanc.study_series(study_uid)
    uids = {s["MainDicomTags"]["SeriesInstanceUID"] for s in series}
    assert uids == {source.series_uid, job["output_series_uid"]}
    assert all(len(s["Instances"]) == 4 for s in series)
