"""Find and read what a command names: its series and its model (the first step of every pipeline)."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meddenoise.dicom import CTSeries, SeriesInfo, find_series, select_series
from meddenoise.dicom import read_series as read_series_info
from meddenoise.errors import SeriesError
from meddenoise.metrics import estimate_noise_sd
from meddenoise.models import DEFAULT_MODEL_NAME, LoadedModel, load_model, shipped_models
from meddenoise.progress import ProgressFactory, no_progress

NOISE_SAMPLE_SLICES = 5

logger = logging.getLogger(__name__)


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


def input_folder(path: Path) -> Path:
    """The folder an input lives in (the input itself, or a file's parent); it must exist."""
    if not path.exists():
        raise SeriesError(f"{path} does not exist")
    return path if path.is_dir() else path.parent


def load_info(info: SeriesInfo, progress: ProgressFactory) -> CTSeries:
    """Decode a found series, first warning of its non-fatal problems (skipped files, tilt, ...)."""
    for problem in info.problems:
        logger.warning("series %s: %s", info.series_uid, problem)
    with progress(description=f"read {short_uid(info.series_uid)}", total=len(info.slices)) as advance:
        return read_series_info(info, progress=advance)


def short_uid(uid: str) -> str:
    return "…" + uid[-12:] if len(uid) > 13 else uid


CPU_RUNTIME_SUFFIXES = ("-int8", "-onnx")
"""On a CPU, the default model runs as its shipped ONNX Runtime variant when one ships (INT8
first): ``meddenoise export`` made them and checked that they lose at most 0.1 dB."""


def default_model_name(device: str) -> str:
    """The shipped default for ``device``: its fastest shipped variant on a CPU with ONNX Runtime,
    the torch checkpoint on a GPU (or where onnxruntime is not installed)."""
    if device != "cpu" or importlib.util.find_spec("onnxruntime") is None:
        return DEFAULT_MODEL_NAME
    shipped = {card.name for card in shipped_models()}
    for suffix in CPU_RUNTIME_SUFFIXES:
        if DEFAULT_MODEL_NAME + suffix in shipped:
            return DEFAULT_MODEL_NAME + suffix
    return DEFAULT_MODEL_NAME


def resolve_model(model: str | Path | LoadedModel | None, *, device: str = "cpu") -> LoadedModel:
    """A loaded model from a shipped name, a checkpoint path, or an already loaded model.

    None means the shipped default, in its fastest shipped runtime for ``device``
    (:func:`default_model_name`).
    """
    if isinstance(model, LoadedModel):
        return model
    return load_model(model if model is not None else default_model_name(device), device=device)


def warn_unfamiliar_pixels(model: LoadedModel, spacing_mm: tuple[float, float, float], source: str) -> None:
    """Warn (one line naming ``source``) when the in-plane pixels lie outside the model's training range."""
    for pixel_mm in sorted(set(spacing_mm[1:])):
        message = model.card.pixel_size_warning(pixel_mm)
        if message:
            logger.warning("%s: %s", source, message)
            return


@dataclass(frozen=True)
class SampledNoise:
    """A series' noise (HU SD): the median estimate over a few evenly spaced slices."""

    sd_hu: float
    slices: int
    fallbacks: int  # sampled slices with too little soft tissue (estimated over every non-air window)

    def describe(self) -> str:
        """One line, e.g. ``"noise 17.8 HU SD (median of 5 slices)"``."""
        fell_back = (
            f"; {self.fallbacks} with too little soft tissue used every non-air window"
            if self.fallbacks
            else ""
        )
        return f"noise {self.sd_hu:.1f} HU SD (median of {self.slices} slices{fell_back})"


def sampled_noise(info: SeriesInfo, series: CTSeries | None = None) -> SampledNoise:
    """The noise of up to :data:`NOISE_SAMPLE_SLICES` evenly spaced slices: taken from ``series``
    when it is already decoded, else decoding only those slices, so that ``info``, a streamed run
    and a whole-volume run all report the same figure."""
    n = len(info.slices) if series is None else series.hu.shape[0]
    picks = np.unique(np.linspace(0, n - 1, num=min(n, NOISE_SAMPLE_SLICES)).round().astype(int))
    if series is not None:
        slices = [series.hu[i] for i in picks]
    else:
        chosen = tuple(info.slices[i] for i in picks)
        slices = list(read_series_info(replace(info, slices=chosen, shape=(len(picks), *info.shape[1:]))).hu)
    estimates = [estimate_noise_sd(hu) for hu in slices]
    return SampledNoise(
        sd_hu=float(np.median([e.sd_hu for e in estimates])),
        slices=len(estimates),
        fallbacks=sum(e.fallback for e in estimates),
    )
