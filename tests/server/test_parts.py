"""The server's parts without a server: zip checks, settings, the job ledger and the model pool."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pytest

from meddenoise.errors import ConfigError
from meddenoise.server import JobLedger, JobRecord, ModelPool, ServerSettings
from meddenoise.server.intake import Refused, ZipLimits, store_parts
from tests.server.conftest import save_model

LIMITS = ZipLimits(max_bytes=1_000_000, max_entries=3, max_ratio=50)


def _zip(entries: dict[str, bytes], *, link: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("entries", "link", "message"),
    [
        ({"../x.dcm": b"1"}, None, "'..'"),
        ({"/abs.dcm": b"1"}, None, "absolute"),
        ({"C:/win.dcm": b"1"}, None, "absolute"),
        ({}, "link.dcm", "link"),
        ({f"{k}.dcm": b"1" for k in range(4)}, None, "entries"),
        ({"zeros.dcm": bytes(200_000)}, None, "zip bomb"),
    ],
)
def test_unsafe_zips_are_refused(
    tmp_path: Path, entries: dict[str, bytes], link: str | None, message: str
) -> None:
    with pytest.raises(Refused, match=message):
        store_parts([_zip(entries, link=link)], tmp_path / "in", limits=LIMITS)
    assert not any((tmp_path / "in").rglob("*.dcm")) or message == "entries"


def test_zip_entries_get_numbered_names(tmp_path: Path) -> None:
    count = store_parts(
        [_zip({"a/b/IM1": b"12", "c/IM2": b"34"}), io.BytesIO(b"56")], tmp_path, limits=LIMITS
    )
    assert count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.dcm", "000001.dcm", "000002.dcm"]


def test_settings_refuse_a_public_address_without_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bearer token"):
        ServerSettings(storage=tmp_path, host="0.0.0.0")
    assert ServerSettings(storage=tmp_path, host="0.0.0.0", token="x" * 32).token


def test_job_ledger_claims_once_and_requeues_after_a_crash(tmp_path: Path) -> None:
    with JobLedger(tmp_path / "m.sqlite") as ledger:
        ledger.put_job(JobRecord("a", "queued", model="tiny", created=1.0))
        ledger.put_job(JobRecord("b", "queued", model="tiny", created=2.0))
        assert ledger.admit(JobRecord("c", "queued", model="tiny", created=3.0), max_unfinished=2) is False
        claimed = ledger.claim_next()
        assert claimed is not None and (claimed.job_id, claimed.attempts) == ("a", 1)
    with JobLedger(tmp_path / "m.sqlite") as reopened:
        assert [r.job_id for r in reopened.requeue_interrupted()] == ["a"]
        assert [r.state for r in reopened.jobs()] == ["queued", "queued"]
        assert reopened.update_job("a", when=("running",), state="done") is None


def test_pool_refuses_a_bad_file_and_keeps_the_old_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_model(tmp_path / "m.pt", version="1")
    pool = ModelPool(models_dir=tmp_path, device="cpu")
    old = pool.get("m")
    (tmp_path / "m.pt").write_bytes(b"garbage")
    with caplog.at_level(logging.ERROR, logger="meddenoise.server.pool"):
        pool.refresh()
    assert pool.get("m") is old and "model m refused" in caplog.text
    save_model(tmp_path / "m.pt", version="2")
    pool.refresh()
    assert pool.get("m").version == "tiny v2" and old.version == "tiny v1"
    (tmp_path / "m.pt").unlink()
    pool.refresh()
    with pytest.raises(KeyError, match="unknown model"):
        pool.get("m")
