"""The only place that composes the steps: read → denoise → write → evaluate.

The CLI, notebooks, batch jobs and the PACS node call these functions. Each takes keyword
arguments and frozen settings, never an argparse namespace.

Examples
--------
>>> from meddenoise import pipeline  # doctest: +SKIP
>>> series = pipeline.read_series("scans/patient1")  # doctest: +SKIP
>>> denoised = pipeline.denoise_series(series)  # doctest: +SKIP
>>> pipeline.write_series(denoised, out_dir="out", derivation=...)  # doctest: +SKIP
"""

from meddenoise.pipeline.evaluate import (
    DEFAULT_PROTOCOLS,
    ReportOptions,
    evaluate_paths,
    evaluate_report_paths,
    evaluate_series,
    pair_by_position,
    report_context,
    report_denoised_outputs,
    write_evaluation_report,
)
from meddenoise.pipeline.series import (
    SeriesOutcome,
    denoise_path,
    denoise_series,
    model_derivation,
    read_series,
    resolve_model,
    write_series,
)
from meddenoise.pipeline.simulate import simulate_path

__all__ = [
    "DEFAULT_PROTOCOLS",
    "ReportOptions",
    "SeriesOutcome",
    "denoise_path",
    "denoise_series",
    "evaluate_paths",
    "evaluate_report_paths",
    "evaluate_series",
    "model_derivation",
    "pair_by_position",
    "read_series",
    "report_context",
    "report_denoised_outputs",
    "resolve_model",
    "simulate_path",
    "write_evaluation_report",
    "write_series",
]
