"""A real Orthanc for the PACS tests, on loopback only, with its own storage and config.

When run as root, the test process first moves into a private network namespace (only ``lo``,
brought up here), so Orthanc, the node and every association stay on 127.0.0.1 and nothing
listens on the sandbox's real interfaces (Orthanc 1.10 has no bind-address setting). Without
root, Orthanc listens on all interfaces but refuses remote HTTP and unknown DICOM peers.
Skips when Orthanc is not installed, fails when CI=true.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLONE_NEWNET = 0x40000000
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_AET = "ORTHANC"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float = 60.0) -> None:
    """Return once something accepts on 127.0.0.1:port; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST root, DICOMweb root, DICOM port and AE title."""

    http_port: int
    dicom_port: int
    aet: str = ORTHANC_AET

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def request(self, method: str, path: str, body: Any = None, *, timeout_s: float = 120.0) -> Any:
        """Call the REST API; JSON in and out (bytes bodies are sent as they are)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            text = response.read()
        return json.loads(text) if text else None

    def upload(self, folder: Path) -> list[dict[str, Any]]:
        """POST every file under ``folder`` to /instances."""
        return [
            self.request("POST", "/instances", path.read_bytes())
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        ]

    def add_modality(self, name: str, *, aet: str, port: int) -> None:
        self.request("PUT", f"/modalities/{name}", {"AET": aet, "Host": "127.0.0.1", "Port": port})

    def study_series(self, study_uid: str) -> list[dict[str, Any]]:
        """Orthanc's series of a study (by StudyInstanceUID), each with its instance list."""
        found = self.request("POST", "/tools/lookup", study_uid.encode())
        studies = [item["ID"] for item in found if item["Type"] == "Study"]
        return self.request("GET", f"/studies/{studies[0]}/series") if studies else []

    def reset(self) -> None:
        for patient in self.request("GET", "/patients"):
            self.request("DELETE", f"/patients/{patient}")


def _private_network() -> int | None:
    """Enter a new network namespace with loopback up; returns the old namespace's fd (or None)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    old = os.open("/proc/self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(old)
        return None
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    return old


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Start Orthanc (with DICOMweb) for the session; stop it afterwards."""
    binary = shutil.which("Orthanc")
    if binary is None or not DICOMWEB_PLUGIN.exists():
        message = "needs Orthanc and its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    old_namespace = _private_network()
    root = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(http_port=free_port(), dicom_port=free_port())
    config = {
        "Name": "meddenoise-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": server.http_port, "DicomPort": server.dicom_port, "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False, "DicomScuTimeout": 30,
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1, "SaveJobs": False, "HttpTimeout": 60,
    }  # fmt: skip
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.request("GET", "/system", timeout_s=2)
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start; see {root / 'orthanc.log'}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        if old_namespace is not None:
            ctypes.CDLL(None, use_errno=True).setns(old_namespace, CLONE_NEWNET)
            os.close(old_namespace)


@pytest.fixture(autouse=True)
def _collect_dropped_sockets(collect_dropped_association_sockets: None) -> None:
    """Every PACS test collects the sockets its killed peers left (see tests/conftest.py)."""
