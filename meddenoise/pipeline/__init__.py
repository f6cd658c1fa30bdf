"""The only place that composes the steps, and the faces' one front door.

A face (the CLI, batch, the DICOM node, the demo, notebooks) builds a :class:`RunRequest`, calls
one function here and presents the result:

* :func:`denoise_path` / :func:`simulate_path` → :class:`RunSummary` of :class:`SeriesResult`,
  through the one series runner (:func:`run_path`, :func:`run_series`);
* :func:`evaluate` (series in memory) / :func:`evaluate_paths` (folders) → :class:`Evaluation`,
  rendered by :mod:`meddenoise.report`;
* the steps themselves for notebooks: :func:`read_series`, :func:`denoise_series`,
  :func:`write_series`.

The types the faces need (settings, results, cards) are re-exported here, so no face reaches past
pipeline into the layers below.

Examples
--------
>>> from meddenoise import pipeline  # doctest: +SKIP
>>> request = pipeline.RunRequest(settings=pipeline.InferenceSettings(strength=0.8))  # doctest: +SKIP
>>> summary = pipeline.denoise_path(input_path="scans", out_dir="out", request=request)  # doctest: +SKIP
>>> series = pipeline.read_series("scans/patient1")  # doctest: +SKIP
>>> denoised = pipeline.denoise_series(series)  # doctest: +SKIP
"""

from meddenoise.device import resolve_device
from meddenoise.dicom import (
    CTSeries,
    ProblemCode,
    ScanResult,
    SeriesInfo,
    check_output_location,
    find_series,
    shown_path,
    shown_text,
)
from meddenoise.inference import InferenceSettings
from meddenoise.models import DEFAULT_MODEL_NAME, LoadedModel, ModelCard, card_markdown, shipped_models
from meddenoise.pipeline.api import AsyncDenoiser, Denoiser
from meddenoise.pipeline.demo import DemoResult, run_demo
from meddenoise.pipeline.evaluate import (
    DEFAULT_PROTOCOLS,
    POSITION_TOLERANCE_MM,
    ReportOptions,
    evaluate,
    evaluate_paths,
    pair_by_position,
    score_series,
)
from meddenoise.pipeline.load import load_info, read_series, resolve_model, sampled_noise, short_uid
from meddenoise.pipeline.request import OutputPolicy, RunRequest
from meddenoise.pipeline.runner import (
    REPORT_SUFFIX,
    RunSummary,
    SeriesResult,
    SeriesStep,
    denoise_path,
    denoise_step,
    error_line,
    lost_results,
    run_path,
    run_series,
)
from meddenoise.pipeline.series import DenoiseStep, denoise_series, model_derivation, write_series
from meddenoise.pipeline.simulate import SimulateStep, simulate_path
from meddenoise.pipeline.volume import denoise_volume_path, evaluate_volume_paths, is_volume_path
from meddenoise.report import Evaluation, ReportFiles
from meddenoise.simulate import SimulationSettings
from meddenoise.volume import HUConvention, PixelType

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PROTOCOLS",
    "POSITION_TOLERANCE_MM",
    "REPORT_SUFFIX",
    "AsyncDenoiser",
    "CTSeries",
    "DemoResult",
    "DenoiseStep",
    "Denoiser",
    "Evaluation",
    "HUConvention",
    "InferenceSettings",
    "LoadedModel",
    "ModelCard",
    "OutputPolicy",
    "PixelType",
    "ProblemCode",
    "ReportFiles",
    "ReportOptions",
    "RunRequest",
    "RunSummary",
    "ScanResult",
    "SeriesInfo",
    "SeriesResult",
    "SeriesStep",
    "SimulateStep",
    "SimulationSettings",
    "card_markdown",
    "check_output_location",
    "denoise_path",
    "denoise_series",
    "denoise_step",
    "denoise_volume_path",
    "error_line",
    "evaluate",
    "evaluate_paths",
    "evaluate_volume_paths",
    "find_series",
    "is_volume_path",
    "load_info",
    "lost_results",
    "model_derivation",
    "pair_by_position",
    "read_series",
    "resolve_device",
    "resolve_model",
    "run_demo",
    "run_path",
    "run_series",
    "sampled_noise",
    "score_series",
    "shipped_models",
    "short_uid",
    "shown_path",
    "shown_text",
    "simulate_path",
    "write_series",
]
