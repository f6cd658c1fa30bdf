"""Simulated low-/full-dose training pairs, cached on disk.

Simulation costs about a second per 512² slice, so each run of consecutive slices is simulated
once and stored as an ``.npz`` (int16 HU) keyed by everything that made it. Runs of consecutive
slices, rather than single slices, give 2.5D networks their neighbours with independent noise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from meddenoise.dicom import CTSeries, SeriesInfo, find_series, read_series
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings, simulate_from_settings

logger = logging.getLogger(__name__)

CACHE_VERSION = "pairs-v1"


@dataclass(frozen=True)
class PairRun:
    """Consecutive slices of one series at full dose and at a simulated lower dose (HU, int16)."""

    full_hu: npt.NDArray[np.int16]
    low_hu: npt.NDArray[np.int16]
    pixel_mm: tuple[float, float]
    dose_fraction: float
    series_uid: str


@dataclass(frozen=True)
class RunRequest:
    """One run to simulate: a series, its first slice, the run length and the noise settings."""

    info: SeriesInfo
    start: int
    length: int
    settings: SimulationSettings
    seed: int
    pixel_scale: float = 1.0  # simulate on a grid with pixels this many times the series' own

    def key(self) -> str:
        parts: list[object] = [
            CACHE_VERSION,
            self.info.series_uid,
            self.start,
            self.length,
            self.settings.describe(),
            self.seed,
        ]
        if self.pixel_scale != 1.0:  # runs on the series' own grid keep their cached keys
            parts.append(self.pixel_scale)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def run_starts(*, n_slices: int, runs: int, length: int) -> list[int]:
    """Evenly spread start indices of ``runs`` runs of ``length`` slices (fewer if the series is short)."""
    length = min(length, n_slices)
    if runs <= 0:
        return []
    starts = np.linspace(0, n_slices - length, num=runs).round().astype(int)
    return sorted(set(int(s) for s in starts))


def series_under(folders: tuple[Path, ...]) -> Iterator[SeriesInfo]:
    """Every readable CT series in ``folders`` (series with fatal problems are logged and skipped)."""
    for folder in folders:
        for info in find_series(folder).series:
            if info.fatal_problems:
                logger.warning("skipping %s: %s", folder, "; ".join(info.fatal_problems))
                continue
            yield info


def _cached(request: RunRequest, path: Path) -> PairRun:
    with np.load(path) as data:
        return PairRun(
            full_hu=data["full_hu"],
            low_hu=data["low_hu"],
            pixel_mm=(float(data["pixel_mm"][0]), float(data["pixel_mm"][1])),
            dose_fraction=float(data["dose"]),
            series_uid=request.info.series_uid,
        )


def regrid(
    hu: npt.NDArray[np.floating],
    pixel_mm: tuple[float, float],
    scale: float,
    mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.float32], tuple[float, float], npt.NDArray[np.bool_] | None]:
    """Slices (n, rows, cols) resampled to pixels ``scale`` times larger, over the same field of view.

    Area averaging to coarser pixels (as a coarser reconstruction grid would); bicubic to finer ones.
    A padding mask follows by nearest neighbour. Returns the slices, the new pixel size and mask.
    """
    rows, cols = (max(16, round(n / scale)) for n in hu.shape[1:])
    tensor = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[:, None]
    if rows * cols < hu.shape[1] * hu.shape[2]:
        out = F.interpolate(tensor, size=(rows, cols), mode="area")
    else:
        out = F.interpolate(tensor, size=(rows, cols), mode="bicubic", align_corners=False)
    new_mask = None
    if mask is not None:
        resized = F.interpolate(torch.from_numpy(mask.astype(np.float32))[:, None], size=(rows, cols))
        new_mask = resized[:, 0].numpy() > 0.5
    new_pixel = (pixel_mm[0] * hu.shape[1] / rows, pixel_mm[1] * hu.shape[2] / cols)
    return out[:, 0].numpy(), new_pixel, new_mask


def _simulate(request: RunRequest, series: CTSeries, *, path: Path, device: str) -> PairRun:
    block = slice(request.start, request.start + request.length)
    full = series.hu[block]
    mask = series.padding_mask[block] if series.padding_mask is not None else None
    pixel_mm = (request.info.spacing_mm[1], request.info.spacing_mm[2])
    if request.pixel_scale != 1.0:
        full, pixel_mm, mask = regrid(full, pixel_mm, request.pixel_scale, mask)
    low = simulate_from_settings(
        full,
        pixel_mm=pixel_mm,
        settings=request.settings,
        seed=request.seed,
        device=device,
        padding_mask=mask,
    )
    run = PairRun(
        full_hu=_to_int16(full),
        low_hu=_to_int16(low),
        pixel_mm=pixel_mm,
        dose_fraction=request.settings.dose_fraction,
        series_uid=request.info.series_uid,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        full_hu=run.full_hu,
        low_hu=run.low_hu,
        pixel_mm=np.array(pixel_mm),
        dose=np.array(request.settings.dose_fraction),
    )
    os.replace(tmp, path)
    return run


def _to_int16(hu: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)


def build_runs(
    requests: list[RunRequest],
    *,
    cache_dir: Path,
    device: str = "cpu",
    progress: ProgressFactory = no_progress,
    description: str = "simulate pairs",
) -> list[PairRun]:
    """Load or simulate every requested run; each series is read at most once."""
    runs = []
    loaded: dict[str, CTSeries] = {}
    with progress(description=description, total=sum(r.length for r in requests)) as advance:
        for request in requests:
            path = cache_dir / f"{request.key()}.npz"
            if path.exists():
                runs.append(_cached(request, path))
            else:
                uid = request.info.series_uid
                if uid not in loaded:
                    loaded.clear()  # keep one series in memory at a time
                    loaded[uid] = read_series(request.info)
                runs.append(_simulate(request, loaded[uid], path=path, device=device))
            advance(request.length)
    return runs
