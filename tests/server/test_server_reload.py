"""Hot reload: a changed checkpoint serves new jobs while running ones finish on the old model;
a bad file is refused and the model it would replace keeps serving; a new file is picked up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.dicom.synthetic import make_series
from tests.server.conftest import save_model, series_files, start_server, wait_done


def wait_models(client: Any, check: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        models = {m["name"]: m for m in client.get("/models").json()}
        if check(models):
            return models
        time.sleep(0.2)
    raise TimeoutError(f"models never matched: {models}")


@pytest.mark.slow
def test_hot_reload_while_jobs_run(tmp_path: Path) -> None:
    make_series(tmp_path / "long", n_slices=48)
    server = start_server(tmp_path, token=False)
    try:
        with server.client() as client:
            first = client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"}).json()
            wait_done(client, first["job_id"], states=("running", "done"))
            save_model(server.models_dir / "tiny.pt", version="0.2", seed=5)
            wait_models(client, lambda m: m["tiny"]["version"] == "0.2")
            second = client.post(
                "/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"}
            ).json()
            assert wait_done(client, first["job_id"])["model_version"] == "tiny v0.1"
            assert wait_done(client, second["job_id"])["model_version"] == "tiny v0.2"

            (server.models_dir / "tiny.pt").write_bytes(b"not a checkpoint")
            save_model(server.models_dir / "extra.pt", version="7", name="extra")
            models = wait_models(client, lambda m: "extra" in m)
            assert models["tiny"]["version"] == "0.2"  # the bad file was refused; 0.2 keeps serving
            third = client.post("/jobs", files=series_files(tmp_path / "long"), data={"model": "tiny"}).json()
            assert wait_done(client, third["job_id"])["state"] == "done"
    finally:
        server.stop()
    log = "".join(p.read_text() for p in tmp_path.glob("server-*.log"))
    assert "model tiny refused" in log and "tiny v0.2 keeps serving" in log
