"""The DICOM node against a real Orthanc: round trip, refusal, kill -9 while receiving and sending."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from meddenoise.batch.ledger import LEDGER_NAME, Ledger
from tests.conftest import require_shared
from tests.pacs.conftest import Orthanc, free_port, wait_for_port
from tests.pacs.helpers import PYTHON

pytestmark = pytest.mark.slow
NODE_AET = "MEDDENOISE"
SERIES = "fixtures/dcmqi-ct-3slice"


@pytest.fixture
def clean_orthanc(orthanc: Orthanc) -> Iterator[Orthanc]:
    orthanc.reset()
    yield orthanc
    orthanc.reset()


class NodeProcess:
    """``meddenoise serve`` in a subprocess (so it can be SIGKILLed), on a free loopback port."""

    def __init__(self, storage: Path, model: Path, *extra: str) -> None:
        self.port = free_port()
        self.command = [
            PYTHON, "-m", "meddenoise.cli", "serve", "--storage", str(storage), "--port", str(self.port),
            "--ae-title", NODE_AET, "--allow", "ORTHANC", "--idle-timeout", "1", "--model", str(model),
            "--device", "cpu", *extra,
        ]  # fmt: skip
        self.log = storage.parent / f"node-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> NodeProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*self.command, *extra], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _wait_for(condition, *, timeout_s: float = 120.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


def _derived(orthanc: Orthanc, study_uid: str) -> list[dict[str, object]]:
    return [
        s
        for s in orthanc.study_series(study_uid)
        if "denoised" in str(s["MainDicomTags"].get("SeriesDescription", ""))
    ]


def _study_uid(folder: Path) -> str:
    first = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


def test_round_trip_back_to_the_sender_and_refusal(
    tmp_path: Path, clean_orthanc: Orthanc, tiny_model: Path
) -> None:
    orthanc, source = clean_orthanc, require_shared(SERIES)
    node = NodeProcess(tmp_path / "node", tiny_model, "--return-port", str(orthanc.dicom_port)).start()
    try:
        intruder = AE(ae_title="INTRUDER")
        intruder.add_requested_context(Verification)
        refused = intruder.associate("127.0.0.1", node.port, ae_title=NODE_AET)
        assert refused.is_rejected and not refused.is_established
        orthanc.add_modality("meddenoise", aet=NODE_AET, port=node.port)
        assert orthanc.request("POST", "/modalities/meddenoise/echo", {}) == {}
        uploaded = orthanc.upload(source)
        orthanc.request("POST", "/modalities/meddenoise/store", [uploaded[0]["ParentSeries"]])
        study = _study_uid(source)
        _wait_for(
            lambda: any(len(s["Instances"]) == 3 for s in _derived(orthanc, study)), what="the derived series"
        )
        time.sleep(2)  # nothing more arrives
        series = orthanc.study_series(study)
        assert sorted(len(s["Instances"]) for s in series) == [3, 3] and len(_derived(orthanc, study)) == 1
        assert node.stop() == 0  # SIGTERM: a clean exit
    finally:
        if node.process and node.process.poll() is None:
            node.kill()
    with Ledger(tmp_path / "node" / LEDGER_NAME) as manifest:
        (record,) = manifest.records()
    assert record.state == "sent" and record.origin_ae == "ORTHANC" and record.output_instances == 3
    log = node.log.read_text()
    assert record.series_uid not in log and record.study_uid not in log  # no UIDs (PHI) in the log


def _scu_send(port: int, files: list[Path], *, release: bool = True) -> object:
    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context(CTImageStorage, [str(pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    assert assoc.is_established
    for path in files:
        assert assoc.send_c_store(path).Status == 0x0000
    if release:
        assoc.release()
    return assoc


def test_killed_while_receiving_ends_up_in_orthanc_exactly_once(
    tmp_path: Path, clean_orthanc: Orthanc, tiny_model: Path
) -> None:
    orthanc, source = clean_orthanc, require_shared(SERIES)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    node = NodeProcess(
        tmp_path / "node", tiny_model, "--destination", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    )
    orthanc.add_modality("meddenoise", aet=NODE_AET, port=node.port)
    node.start()
    assoc = _scu_send(node.port, files[:2], release=False)  # two of three stored and acknowledged...
    node.kill()  # ...and the node dies with the association open
    assoc.abort()  # type: ignore[attr-defined]
    node.start()
    try:
        time.sleep(3)  # past the idle timeout: an aborted series must not be processed
        assert orthanc.study_series(_study_uid(source)) == []
        _scu_send(node.port, files)  # the sender resends the whole series
        study = _study_uid(source)
        _wait_for(
            lambda: any(len(s["Instances"]) == 3 for s in _derived(orthanc, study)), what="the derived series"
        )
        time.sleep(2)
        assert [len(s["Instances"]) for s in orthanc.study_series(study)] == [3]
    finally:
        node.kill()


def test_killed_while_sending_resends_the_same_instances(
    tmp_path: Path, clean_orthanc: Orthanc, tiny_model: Path
) -> None:
    orthanc, source = clean_orthanc, require_shared(SERIES)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    destination = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    node = NodeProcess(tmp_path / "node", tiny_model, "--destination", destination)
    orthanc.add_modality("meddenoise", aet=NODE_AET, port=node.port)
    node.start("--send-interval", "2")
    study = _study_uid(source)
    try:
        _scu_send(node.port, files)
        _wait_for(
            lambda: any(s["Instances"] for s in _derived(orthanc, study)), what="the first sent instance"
        )
        node.kill()
        (partial,) = _derived(orthanc, study)
        assert 1 <= len(partial["Instances"]) < 3  # type: ignore[arg-type]
        (folder,) = (tmp_path / "node" / "derived").iterdir()
        on_disk = {
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in folder.glob("*.dcm")
        }
        node.start()
        _wait_for(
            lambda: any(len(s["Instances"]) == 3 for s in _derived(orthanc, study)), what="the whole series"
        )
        time.sleep(2)
        (derived,) = orthanc.study_series(study)
        tags = [orthanc.request("GET", f"/instances/{i}")["MainDicomTags"] for i in derived["Instances"]]
        assert {t["SOPInstanceUID"] for t in tags} == on_disk  # re-sent from disk, not re-derived
    finally:
        node.kill()
