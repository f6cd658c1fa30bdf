"""Scores to files: ``report.json`` and ``report.csv``, each stating its metric protocol.

``report.csv`` has one row per slice (per slice × protocol when there is a reference), with the
noise SD of input, output and reference in that slice's uniform ROIs when physics was measured.

The content is built first as plain data (:func:`report_document`, :func:`csv_rows`) and written
second, so a later HTML report (with figures) can render the same document.

Infinite PSNR (identical slices) is written as JSON ``null`` next to ``"psnr_infinite": true`` (and
``"n_infinite_psnr"`` per series), and as the text ``inf`` in CSV (``float("inf")`` parses it).
The JSON never holds NaN or Infinity literals. Both files are written atomically: a temporary
file in the same folder, then ``os.replace``; an existing report in ``out_dir`` is replaced.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from meddenoise import __version__
from meddenoise.errors import OutputError
from meddenoise.metrics import SeriesScores, SliceScore

logger = logging.getLogger(__name__)

JSON_NAME = "report.json"
CSV_NAME = "report.csv"
CSV_COLUMNS = (
    "slice_index",
    "position_mm",
    "protocol",
    "psnr_db",
    "ssim",
    "rmse",
    "rmse_unit",
    "protocol_description",
    "noise_sd_input_hu",
    "noise_sd_output_hu",
    "noise_sd_reference_hu",
)
VERSIONED_PACKAGES = ("numpy", "scipy", "scikit-image", "pydicom", "torch", "monai", "matplotlib")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _slice_entry(score: SliceScore) -> dict[str, object]:
    return {
        "index": score.index,
        "position_mm": score.position_mm,
        "psnr_db": _finite_or_none(score.psnr),
        "psnr_infinite": math.isinf(score.psnr),
        "ssim": score.ssim,
        "rmse": score.rmse,
    }


def _series_entry(scores: SeriesScores) -> dict[str, object]:
    protocol = scores.protocol
    return {
        "protocol": protocol.id,
        "protocol_description": protocol.describe_full(),
        "data_range": protocol.data_range,
        "rmse_unit": protocol.rmse_unit,
        "aggregation": scores.aggregation,
        "n_slices": scores.n_slices,
        "n_infinite_psnr": scores.n_infinite_psnr,
        "mean_psnr_db": _finite_or_none(scores.mean_psnr),
        "mean_ssim": scores.mean_ssim,
        "mean_rmse": scores.mean_rmse,
        "per_slice": [_slice_entry(s) for s in scores.per_slice],
    }


def package_versions() -> dict[str, str]:
    """Installed versions of meddenoise and the libraries its numbers depend on (without importing them)."""
    found = {"meddenoise": __version__, "python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def report_document(
    *,
    scores: Mapping[str, SeriesScores],
    context: Mapping[str, object],
    created: datetime | None = None,
    physics: Mapping[str, object] | None = None,
    input_scores: Mapping[str, SeriesScores] | None = None,
) -> dict[str, object]:
    """The report as plain JSON-ready data (what ``report.json`` holds).

    Parameters
    ----------
    scores
        Series scores keyed by protocol id (as :func:`meddenoise.metrics.score_volume` returns).
    context
        What the caller knows about the run: inputs, model card, UIDs. Paths, dataclasses and numpy
        scalars are converted when written.
    created
        Timestamp to record; now (UTC) when omitted.
    physics
        Physics metrics (``PhysicsSummary.as_dict()``), written under ``"physics"`` when given.
    input_scores
        Scores of the low-dose input against the same reference, written under ``"input_series"``.
    """
    when = created if created is not None else datetime.now(UTC)
    document: dict[str, object] = {
        "meddenoise_version": __version__,
        "created": when.isoformat(timespec="seconds"),
        "context": dict(context),
        "protocols": {key: s.protocol.describe_full() for key, s in scores.items()},
        "series": {key: _series_entry(s) for key, s in scores.items()},
    }
    if input_scores:
        document["input_series"] = {key: _series_entry(s) for key, s in input_scores.items()}
    if physics is not None:
        document["physics"] = dict(physics)
    if physics is not None or input_scores:
        document["versions"] = package_versions()
    return document


def _csv_number(value: float | None) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else repr(float(value))


def _noise_columns(physics: Mapping[str, object] | None, index: int) -> dict[str, str]:
    images = (physics or {}).get("images") or {}
    assert isinstance(images, Mapping)
    out = {}
    for role in ("input", "output", "reference"):
        per_slice = images.get(role, {}).get("noise_sd_per_slice_hu", [])
        value = per_slice[index] if index < len(per_slice) else None
        out[f"noise_sd_{role}_hu"] = _csv_number(value)
    return out


def csv_rows(
    *,
    scores: Mapping[str, SeriesScores],
    physics: Mapping[str, object] | None = None,
    positions_mm: Sequence[float] | None = None,
) -> list[dict[str, str]]:
    """One row per slice × protocol, with the columns :data:`CSV_COLUMNS`.

    Without scores (no reference) there is one row per slice of ``positions_mm`` holding only the
    physics columns.
    """
    rows: list[dict[str, str]] = []
    if not scores:
        for index, position in enumerate(positions_mm or ()):
            row = dict.fromkeys(CSV_COLUMNS, "")
            row.update(
                slice_index=str(index), position_mm=_csv_number(position), **_noise_columns(physics, index)
            )
            rows.append(row)
        return rows
    for series in scores.values():
        protocol = series.protocol
        for s in series.per_slice:
            rows.append(
                {
                    "slice_index": str(s.index),
                    "position_mm": _csv_number(s.position_mm),
                    "protocol": protocol.id,
                    "psnr_db": _csv_number(s.psnr),
                    "ssim": _csv_number(s.ssim),
                    "rmse": _csv_number(s.rmse),
                    "rmse_unit": protocol.rmse_unit,
                    "protocol_description": protocol.describe_full(),
                    **_noise_columns(physics, s.index),
                }
            )
    return rows


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"report context value of type {type(value).__name__} is not JSON serialisable")


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputError(f"{path}: cannot write the report ({err.strerror or err})") from err
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write the report ({err.strerror or err})") from err


def json_text(document: Mapping[str, object]) -> str:
    """``document`` as strict JSON (no NaN/Infinity), indented."""
    return json.dumps(document, indent=2, allow_nan=False, default=_json_default) + "\n"


def csv_text(rows: Sequence[Mapping[str, str]]) -> str:
    """Rows from :func:`csv_rows` as CSV text with the header :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_text_atomic(path: Path, text: str | bytes) -> Path:
    """Create ``path.parent`` if needed and write ``text`` (or bytes) atomically; returns ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot create the report folder ({err.strerror or err})") from err
    _write_atomic(path, text)
    return path


def write_report(
    *,
    out_dir: Path,
    scores: Mapping[str, SeriesScores],
    context: Mapping[str, object],
    physics: Mapping[str, object] | None = None,
    input_scores: Mapping[str, SeriesScores] | None = None,
    positions_mm: Sequence[float] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.csv`` into ``out_dir`` (created if needed).

    Returns
    -------
    tuple[Path, Path]
        The paths of ``report.json`` and ``report.csv``.

    Raises
    ------
    OutputError
        If ``out_dir`` cannot be created or written.
    ValueError
        If ``context`` holds a non-finite float (JSON has no NaN/Infinity).
    TypeError
        If ``context`` holds a value that cannot be serialised.

    Examples
    --------
    >>> import tempfile
    >>> from meddenoise.metrics import score_volume
    >>> scores = score_volume(denoised=np.ones((1, 8, 8)), reference=np.zeros((1, 8, 8)))
    >>> json_path, csv_path = write_report(out_dir=Path(tempfile.mkdtemp()), scores=scores, context={})
    >>> json_path.name, csv_path.name
    ('report.json', 'report.csv')
    """
    document = report_document(scores=scores, context=context, physics=physics, input_scores=input_scores)
    text = json_text(document)
    table = csv_text(csv_rows(scores=scores, physics=physics, positions_mm=positions_mm))
    json_path = write_text_atomic(out_dir / JSON_NAME, text)
    csv_path = write_text_atomic(out_dir / CSV_NAME, table)
    logger.info("wrote %s and %s", json_path, csv_path)
    return json_path, csv_path
