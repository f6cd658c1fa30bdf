"""The run's logs: ``log.csv`` (one row per validation) and ``log.jsonl`` (the same, as JSON lines).

On resume both are kept and appended to; rows past the resumed iteration (written after the last
saved state, before an interruption) are dropped first, so every validation appears once.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import TracebackType
from typing import IO, Any

COLUMNS = (
    "iteration",
    "train_loss",
    "lr",
    "abdomen_psnr_db",
    "abdomen_ssim",
    "full_psnr_db",
    "full_ssim",
    "seconds",
)


def _kept_lines(path: Path, up_to: int, *, header: bool) -> list[str]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] if header else []
    for line in lines[1:] if header else lines:
        if not line.strip():
            continue
        try:
            iteration = int(line.split(",", 1)[0]) if header else int(json.loads(line)["iteration"])
        except (ValueError, KeyError, json.JSONDecodeError):
            continue  # a half-written last line
        if iteration <= up_to:
            kept.append(line if line.endswith("\n") else line + "\n")
    return kept


class TrainingLog:
    """Appends one record per validation to ``log.csv`` and ``log.jsonl`` in ``out_dir``."""

    def __init__(self, out_dir: Path, *, resume_from: int | None = None) -> None:
        self.csv_path, self.jsonl_path = out_dir / "log.csv", out_dir / "log.jsonl"
        csv_lines = _kept_lines(self.csv_path, resume_from, header=True) if resume_from is not None else []
        json_lines = (
            _kept_lines(self.jsonl_path, resume_from, header=False) if resume_from is not None else []
        )
        self.csv_path.write_text("".join(csv_lines) or ",".join(COLUMNS) + "\n")
        self.jsonl_path.write_text("".join(json_lines))
        self._csv: IO[str] = self.csv_path.open("a", newline="")
        self._jsonl: IO[str] = self.jsonl_path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        """Append a record (its CSV row holds ``COLUMNS``; the JSON line holds everything)."""
        csv.writer(self._csv).writerow([record[c] for c in COLUMNS])
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._jsonl.write(json.dumps(clean) + "\n")
        self._csv.flush()
        self._jsonl.flush()

    def close(self) -> None:
        """Close both files."""
        self._csv.close()
        self._jsonl.close()

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
