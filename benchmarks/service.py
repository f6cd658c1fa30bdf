"""Load on the REST service: N concurrent clients submit small series to a real server process.

Starts ``meddenoise server`` on loopback (its own storage, a tiny untrained model unless ``--model``
names a checkpoint), then for each concurrency level in ``--clients`` runs that many clients, each
submitting ``--jobs`` series one after another (submit, poll until done, download the result). A
429 is retried after its Retry-After. Reports, per level: jobs per minute, p50 and p95 latency
(submit to downloaded result), the server's peak RSS (with its children), and lost jobs
(acknowledged but never done) and duplicated ones (a job id or derived series seen twice), both of
which must be 0.

    python benchmarks/service.py                          # 1, 4 and 16 clients, 4 jobs each
    python benchmarks/service.py --clients 1 4 --jobs 2 --slices 4 --size 64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

LAUNCH = "from meddenoise.cli import main, server_commands; import sys; sys.exit(main(sys.argv[1:]))"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tiny_model(folder: Path) -> Path:
    import torch

    from meddenoise.models import ModelCard, network_from_card, save_checkpoint

    torch.manual_seed(0)
    card = ModelCard(
        name="tiny", version="0", architecture="unet_pu", architecture_kwargs={"channels": [8, 16]}
    )
    path = folder / "tiny.pt"
    save_checkpoint(network=network_from_card(card), card=card, path=path)
    return path


def _series_parts(folder: Path, *, size: int, slices: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    from meddenoise.dicom.create import write_new_series
    from meddenoise.phantom import torso_phantom

    noisy = torso_phantom(size=size, slices=slices, pixel_mm=384 / size)
    noisy += np.random.default_rng(0).normal(0, 30, noisy.shape).astype(np.float32)
    written = write_new_series(hu=noisy, pixel_mm=384 / size, slice_mm=3.0, folder=folder)
    return [("files", (p.name, p.read_bytes(), "application/dicom")) for p in sorted(written.glob("*"))]


class RssSampler(threading.Thread):
    """Samples the server's RSS (with its children) every 0.1 s; ``peak_mb`` is the highest."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except Exception:  # the process ended
                return

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def _one_job(http: Any, parts: list[Any]) -> tuple[str, float, str]:
    start = time.perf_counter()
    while True:
        response = http.post("/jobs", files=parts, data={"model": "tiny"})
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("retry-after", "1")))
    response.raise_for_status()
    job_id = response.json()["job_id"]
    while (job := http.get(f"/jobs/{job_id}").json())["state"] not in ("done", "failed", "cancelled"):
        time.sleep(0.05)
    if job["state"] == "done":
        http.get(f"/jobs/{job_id}/result").raise_for_status()
    return job_id, time.perf_counter() - start, job["state"]


def run_level(url: str, parts: list[Any], *, clients: int, jobs: int) -> dict[str, Any]:
    """``clients`` threads, each submitting ``jobs`` jobs in turn; timings and outcomes."""
    import httpx

    outcomes: list[tuple[str, float, str]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            for _ in range(jobs):
                outcome = _one_job(http, parts)
                with lock:
                    outcomes.append(outcome)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies = np.array([seconds for _, seconds, _ in outcomes])
    return {
        "clients": clients,
        "jobs": len(outcomes),
        "jobs_per_min": round(60 * len(outcomes) / wall, 1),
        "p50_s": round(float(np.percentile(latencies, 50)), 2),
        "p95_s": round(float(np.percentile(latencies, 95)), 2),
        "ids": [job_id for job_id, _, _ in outcomes],
        "not_done": [job_id for job_id, _, state in outcomes if state != "done"],
    }


def _audit(url: str, ids: list[str]) -> tuple[int, int]:
    """(lost, duplicated): acknowledged jobs not done on the server; ids or outputs seen twice."""
    import httpx

    listed = httpx.get(f"{url}/jobs", timeout=60).json()
    done = {job["job_id"] for job in listed if job["state"] == "done"}
    outputs = [job["output_series_uid"] for job in listed if job["state"] == "done"]
    lost = len(set(ids) - done)
    duplicated = (len(ids) - len(set(ids))) + (len(outputs) - len(set(outputs))) + (len(listed) - len(ids))
    return lost, duplicated


def _start(storage: Path, models: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", LAUNCH, "server", "--port", str(port), "--storage", str(storage)]
    command += ["--models-dir", str(models), "--workers-per-device", str(workers), "--max-queued", "64"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--jobs", type=int, default=4, help="jobs per client")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="--workers-per-device of the server")
    parser.add_argument("--model", type=Path, help="a checkpoint (default: a tiny untrained one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meddenoise-service-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        if args.model:
            os.symlink(args.model.resolve(), root / "models" / "tiny.pt")
        else:
            _tiny_model(root / "models")
        parts = _series_parts(root / "series", size=args.size, slices=args.slices)
        port = _free_port()
        process = _start(root / "storage", root / "models", port, args.workers)
        sampler = RssSampler(process.pid)
        sampler.start()
        url = f"http://127.0.0.1:{port}"
        try:
            levels = [run_level(url, parts, clients=n, jobs=args.jobs) for n in args.clients]
            lost, duplicated = _audit(url, [i for level in levels for i in level["ids"]])
        finally:
            sampler.done.set()
            process.terminate()
            process.wait(timeout=60)
    print(f"series: {args.slices} slices of {args.size}x{args.size}; server workers: {args.workers}")
    print(f"{'clients':>8} {'jobs':>5} {'jobs/min':>9} {'p50 s':>7} {'p95 s':>7}")
    for level in levels:
        row = f"{level['clients']:>8} {level['jobs']:>5} {level['jobs_per_min']:>9} "
        print(row + f"{level['p50_s']:>7} {level['p95_s']:>7}")
    print(f"peak server RSS: {sampler.peak_mb:.0f} MiB; lost jobs: {lost}; duplicated jobs: {duplicated}")
    if args.json:
        summary: dict[str, Any] = {"levels": [{k: v for k, v in lv.items() if k != "ids"} for lv in levels]}
        summary |= {"peak_rss_mb": round(sampler.peak_mb), "lost": lost, "duplicated": duplicated}
        args.json.write_text(json.dumps(summary, indent=2))
    if lost or duplicated:
        sys.exit(1)


if __name__ == "__main__":
    main()
