"""The node's durable queue: names only from valid UIDs, durable writes, hashed UIDs for logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from meddenoise.errors import OutputError
from meddenoise.pacs.queue import incoming_folder, instance_path, uid_tag, write_durably


@pytest.mark.parametrize("bad", ["../../etc", "1.2/3", "1.02.3", "", "1." + "2" * 70, "1.2.3\x00"])
def test_crafted_uids_never_become_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid UID: uid:"):
        incoming_folder(tmp_path, study_uid="1.2.3", series_uid=bad)
    with pytest.raises(ValueError, match="not a valid UID"):
        instance_path(tmp_path, bad)
    assert instance_path(tmp_path, "1.2.3") == tmp_path / "1.2.3.dcm"


def test_write_durably_replaces_and_reports_os_errors(tmp_path: Path) -> None:
    target = tmp_path / "a" / "1.2.3.dcm"
    write_durably(target, b"one")
    write_durably(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["1.2.3.dcm"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot store a received instance"):
        write_durably(tmp_path / "file" / "1.2.dcm", b"x")  # a file where a folder should be


def test_uid_tag_is_stable_and_hides_the_uid() -> None:
    assert uid_tag("1.2.840.1") == uid_tag("1.2.840.1") != uid_tag("1.2.840.2")
    assert "1.2.840" not in uid_tag("1.2.840.1")
