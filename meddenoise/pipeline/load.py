"""Find and read the series a command names (the shared first step of every pipeline)."""

from __future__ import annotations

from pathlib import Path

from meddenoise.dicom import CTSeries, SeriesInfo, find_series, select_series
from meddenoise.dicom import read_series as read_series_info
from meddenoise.errors import SeriesError
from meddenoise.progress import ProgressFactory, no_progress


def read_series(
    path: str | Path, *, series_uid: str | None = None, progress: ProgressFactory = no_progress
) -> CTSeries:
    """Read the one CT series under ``path`` (or the one named by ``series_uid``) as HU."""
    root = Path(path)
    infos = select_series(find_series(root), [series_uid] if series_uid else None)
    if len(infos) > 1:
        uids = ", ".join(info.series_uid for info in infos)
        raise SeriesError(f"{root}: holds {len(infos)} CT series ({uids}); choose one with series_uid")
    return load_info(infos[0], progress)


def load_info(info: SeriesInfo, progress: ProgressFactory) -> CTSeries:
    with progress(description=f"read {short_uid(info.series_uid)}", total=len(info.slices)) as advance:
        return read_series_info(info, progress=advance)


def short_uid(uid: str) -> str:
    return "…" + uid[-12:] if len(uid) > 13 else uid
