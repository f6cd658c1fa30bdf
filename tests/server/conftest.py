"""A real ``meddenoise server`` process on loopback, and a real httpx client for it.

Each server is a subprocess started through the CLI (``meddenoise server``), so the tests see what
a user sees, and a test can SIGKILL it. Models are tiny untrained checkpoints (fast on CPU).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "test-token-0123456789abcdef"
LAUNCH = "from meddenoise.cli import main, server_commands; import sys; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def save_model(path: Path, *, version: str = "0.1", seed: int = 0, name: str = "tiny") -> Path:
    """A tiny untrained UNetPU checkpoint (like tests/conftest.py save_tiny_model), named and versioned."""
    import torch

    from meddenoise.models import ModelCard, network_from_card, save_checkpoint

    torch.manual_seed(seed)
    card = ModelCard(
        name=name, version=version, architecture="unet_pu", architecture_kwargs={"channels": [8, 16]}
    )
    staging = path.with_name(f".{path.stem}-staging.pt")  # saved beside, then renamed: never half-seen
    save_checkpoint(network=network_from_card(card), card=card, path=staging)
    os.replace(staging, path)
    staging.with_name(staging.name + ".card.json").unlink()
    return path


@dataclass
class ServerProcess:
    """A running server: its URL, storage, process and the arguments to restart it."""

    storage: Path
    models_dir: Path
    args: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    token: str | None = TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [
            sys.executable,
            "-c",
            LAUNCH,
            "server",
            "--port",
            str(self.port),
            "--storage",
            str(self.storage),
        ]
        command += ["--models-dir", str(self.models_dir), "--device", "cpu", *self.args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = self.storage.parent / f"server-{self.port}.log"
        with log.open("ab") as stream:  # the child keeps its own descriptor
            self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server did not start; see {log}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, *, token: str | None = ...) -> Any:  # type: ignore[assignment]
        chosen = self.token if token is ... else token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def start_server(tmp: Path, *, args: list[str] = (), token: bool = True, models: int = 1) -> ServerProcess:  # type: ignore[assignment]
    models_dir = tmp / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    save_model(models_dir / "tiny.pt")
    if models > 1:
        save_model(models_dir / "tiny2.pt", version="2.0", seed=1, name="tiny-two")
    extra = list(args)
    if token:
        token_file = tmp / "token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        extra += ["--token-file", str(token_file)]
    return ServerProcess(
        storage=tmp / "storage", models_dir=models_dir, args=extra, token=TOKEN if token else None
    ).start()


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def series_files(folder: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The files of a series folder as httpx multipart parts (field ``files``)."""
    return [
        ("files", (f"f{k}.dcm", path.read_bytes(), "application/dicom"))
        for k, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file()))
    ]


def wait_done(
    client: Any,
    job_id: str,
    *,
    timeout_s: float = 240,
    states: tuple[str, ...] = ("done", "failed", "cancelled"),
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['state']} after {timeout_s} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module: two models, a token, a 2 MiB upload limit, two workers."""
    running = start_server(
        tmp_path_factory.mktemp("server"),
        args=["--max-upload-mb", "2", "--workers-per-device", "2"],
        models=2,
    )
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Any]:
    with server.client() as http:
        yield http
