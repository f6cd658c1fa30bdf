"""Faults: a full disk while writing, and ``kill -9`` at random moments for denoise, batch and the node.

After each kill, what a reader can see is checked (every visible series folder whole), and after
the rerun or restart: 0 series lost, 0 duplicated, 0 half series visible, no temporary folder
left. The number of kills per face is ``MEDDENOISE_KILLS`` (default 5 when ``CI=true``, 3
otherwise; the issue's manual run uses 20). Moments are drawn from a seeded generator
(``MEDDENOISE_KILL_SEED``), printed with the result so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from meddenoise.batch.ledger import LEDGER_NAME, Ledger
from tests.conftest import REPO_ROOT
from tests.dicom.synthetic import SyntheticSeries, make_series

# Killed peers leave pynetdicom sockets to the collector: collect them in the test that made them.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collect_dropped_association_sockets")]

SLICES = 3
PYTHON = sys.executable


def kills() -> int:
    default = "5" if os.environ.get("CI", "").lower() == "true" else "3"
    return int(os.environ.get("MEDDENOISE_KILLS", default))


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("MEDDENOISE_KILL_SEED", str(int(time.time()))))
    print(f"MEDDENOISE_KILL_SEED={seed}")
    return random.Random(seed)


def cli(*args: object) -> list[str]:
    return [PYTHON, "-m", "meddenoise.cli", *map(str, args)]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def make_input(folder: Path, count: int = 3) -> list[SyntheticSeries]:
    return [make_series(folder / f"s{k}", n_slices=SLICES, nested=False, seed=k) for k in range(count)]


def visible_series(out: Path) -> dict[str, Path]:
    """Source SeriesInstanceUID → folder, for every visible (not dot-named) series folder in ``out``.

    Each must be whole: SLICES readable slices of one new series, each pointing back to the source.
    """
    found: dict[str, Path] = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(folder.iterdir())
        assert len(files) == SLICES, f"half a series visible: {folder} has {len(files)} of {SLICES}"
        headers = [dcmread(p) for p in files]
        assert len({str(ds.SeriesInstanceUID) for ds in headers}) == 1
        assert len({str(ds.SOPInstanceUID) for ds in headers}) == SLICES
        for ds in headers:
            assert ds.pixel_array.shape == (128, 128)
        source = folder.name.removesuffix("-denoised")
        assert source not in found, f"{source} written twice"
        found[source] = folder
    return found


def run_and_kill(command: list[str], *, after_s: float, log: Path) -> int | None:
    """Start ``command``, SIGKILL it after ``after_s`` seconds (None if it finished first)."""
    with log.open("ab") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env())
    try:
        return process.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return None


def timed_run(command: list[str], log: Path) -> float:
    started = time.monotonic()
    with log.open("ab") as stream:
        done = subprocess.run(
            command, stdout=stream, stderr=subprocess.STDOUT, env=env(), timeout=300, check=False
        )
    assert done.returncode == 0, log.read_text()[-3000:]
    return time.monotonic() - started


# ---------------------------------------------------------------------------- denoise


def test_kill_9_during_denoise_then_rerun(tmp_path: Path, tiny_model: Path, rng: random.Random) -> None:
    sources = make_input(tmp_path / "in")
    out, log = tmp_path / "out", tmp_path / "denoise.log"
    command = cli("denoise", tmp_path / "in", out, "--model", tiny_model, "--device", "cpu", "--overwrite")
    full = timed_run(command, log)
    survived = 0
    for _ in range(kills()):
        run_and_kill(command, after_s=rng.uniform(0.1, full), log=log)
        visible_series(out)  # whatever the moment, no half series is visible
        survived += 1
    timed_run(command, log)
    assert sorted(visible_series(out)) == sorted(s.series_uid for s in sources)  # 0 lost, 0 duplicated
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # temporaries cleaned
    print(f"denoise: {survived} kills survived")


# ---------------------------------------------------------------------------- batch


def test_kill_9_during_batch_then_resume(tmp_path: Path, tiny_model: Path, rng: random.Random) -> None:
    sources = make_input(tmp_path / "in")
    out, log = tmp_path / "out", tmp_path / "batch.log"
    command = cli("batch", tmp_path / "in", out, "--model", tiny_model, "--device", "cpu")
    probe = tmp_path / "probe"
    full = timed_run(cli("batch", tmp_path / "in", probe, "--model", tiny_model, "--device", "cpu"), log)
    survived = 0
    for _ in range(kills()):
        run_and_kill(command, after_s=rng.uniform(0.1, full), log=log)
        if out.exists():
            visible_series(out)
            with Ledger(out / LEDGER_NAME) as ledger:
                for record in ledger.records("done"):  # "done" is never recorded before the rename
                    assert Path(record.output_folder).is_dir()
        survived += 1
    timed_run(command, log)
    written = visible_series(out)
    assert sorted(written) == sorted(s.series_uid for s in sources)
    with Ledger(out / LEDGER_NAME) as ledger:
        records = ledger.records()
    assert [r.state for r in records] == ["done"] * len(sources)
    for record in records:
        folder = written[record.series_uid]
        assert Path(record.output_folder) == folder and record.output_instances == SLICES
        assert str(dcmread(next(folder.iterdir())).SeriesInstanceUID) == record.output_series_uid
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    print(f"batch: {survived} kills survived")


# ---------------------------------------------------------------------------- the DICOM node


class Destination:
    """A Storage SCP in this process: the node's destination; records every instance it gets."""

    def __init__(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

        from tests.pacs.conftest import free_port

        self.port = free_port()
        self.received: list[tuple[str, str, tuple[str, ...]]] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="DEST")
        ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: object) -> int:
        ds = event.dataset  # type: ignore[attr-defined]
        sources = tuple(str(item.ReferencedSOPInstanceUID) for item in ds.get("SourceImageSequence", []))
        with self.lock:
            self.received.append((str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), sources))
        return 0x0000

    def derived_of(self, source: SyntheticSeries) -> dict[str, set[str]]:
        """Derived SeriesInstanceUID → its distinct SOPInstanceUIDs, for series made from ``source``."""
        source_sops = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in source.paths}
        found: dict[str, set[str]] = {}
        with self.lock:
            for series_uid, sop, refs in self.received:
                if set(refs) & source_sops:
                    found.setdefault(series_uid, set()).add(sop)
        return found


def _send(port: int, files: tuple[Path, ...], outcome: list[bool]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDDENOISE")
        if not assoc.is_established:
            outcome.append(False)
            return
        ok = all(getattr(assoc.send_c_store(p), "Status", None) == 0 for p in files)
        assoc.release()
        outcome.append(ok)
    except Exception:  # the node died under us: the sender will resend
        outcome.append(False)


@pytest.fixture
def destination() -> Iterator[Destination]:
    pytest.importorskip("pynetdicom")
    dest = Destination()
    yield dest
    dest.server.shutdown()


# The sender threads here are pynetdicom's: a kill mid-association leaves their socket unclosed, and a
# collection during the test reports it (CI saw it). Only that warning is ignored, only here.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_kill_9_of_the_node_then_restart(
    tmp_path: Path, tiny_model: Path, rng: random.Random, destination: Destination
) -> None:
    from tests.pacs.conftest import free_port, wait_for_port

    storage, log = tmp_path / "node", tmp_path / "node.log"
    port = free_port()
    command = cli(
        "serve", "--storage", storage, "--port", port, "--ae-title", "MEDDENOISE", "--allow", "TESTSCU",
        "--idle-timeout", "1", "--model", tiny_model, "--device", "cpu",
        "--destination", f"DEST@127.0.0.1:{destination.port}",
    )  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as stream:
            process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env())
        wait_for_port(port, timeout_s=120)
        return process

    def sent(series: SyntheticSeries) -> bool:
        if not (storage / LEDGER_NAME).exists():
            return False
        with Ledger(storage / LEDGER_NAME) as ledger:
            record = ledger.get(series.series_uid)
        return record is not None and record.state == "sent"

    all_series = [
        make_series(tmp_path / "in" / f"s{k}", n_slices=SLICES, nested=False, seed=10 + k)
        for k in range(kills())
    ]
    node = start()
    survived = 0
    try:
        for series in all_series:
            outcome: list[bool] = []
            sender = threading.Thread(target=_send, args=(port, series.paths, outcome))
            started = time.monotonic()
            sender.start()
            deadline = started + rng.uniform(0.0, 6.0)  # receiving, completing (1 s idle), denoising, sending
            while time.monotonic() < deadline and not sent(series):
                time.sleep(0.05)
            node.send_signal(signal.SIGKILL)
            node.wait(timeout=30)
            sender.join(timeout=60)
            node = start()
            survived += 1
            if outcome != [True]:
                resend: list[bool] = []
                _send(port, series.paths, resend)  # as a PACS retries a failed transfer
                assert resend == [True]
            limit = time.monotonic() + 120
            while not sent(series):
                assert time.monotonic() < limit, log.read_text()[-3000:]
                time.sleep(0.2)
            derived = destination.derived_of(series)
            assert len(derived) == 1, f"duplicated derived series: {sorted(derived)}"  # 0 duplicated
            assert [len(sops) for sops in derived.values()] == [SLICES]  # 0 lost
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=30)
    derived_root = storage / "derived"
    visible = sorted(p.name for p in derived_root.iterdir() if not p.name.startswith("."))
    assert visible == sorted(f"{s.series_uid}-denoised" for s in all_series)
    for name in visible:
        assert len(list((derived_root / name).iterdir())) == SLICES
    print(f"node: {survived} kills survived")


# ---------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 KiB tmpfs (room for one 3-slice series, not two); skips where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); test_cli covers RLIMIT_FSIZE"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("face", ["denoise", "batch"])
def test_disk_full_leaves_no_half_series_and_says_so(
    tmp_path: Path, tiny_model: Path, small_disk: Path, face: str
) -> None:
    sources = make_input(tmp_path / "in")
    out = small_disk / "out"
    extra = ("--manifest", tmp_path / "ledger.sqlite") if face == "batch" else ()
    done = subprocess.run(
        cli(face, tmp_path / "in", out, "--model", tiny_model, "--device", "cpu", *extra),
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith(("error: ", "failed "))]
    assert said and all("cannot write" in line and "No space left on device" in line for line in said)
    written = visible_series(out)
    assert 1 <= len(written) < len(sources)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the failed temp is gone
