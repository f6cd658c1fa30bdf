"""Score a series against a reference, slices paired by position, and write the report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meddenoise.dicom import CTSeries, SeriesInfo
from meddenoise.errors import SeriesError
from meddenoise.metrics import SeriesScores, score_volume
from meddenoise.models import LoadedModel
from meddenoise.pipeline.load import read_series
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import write_report

logger = logging.getLogger(__name__)

DEFAULT_PROTOCOLS: tuple[str, ...] = ("abdomen", "full")


def pair_by_position(
    *, denoised: SeriesInfo, reference: SeriesInfo, tolerance_mm: float = 0.05
) -> list[tuple[int, int]]:
    """Index pairs (denoised, reference) of slices at the same position along the normal."""
    if denoised.shape[1:] != reference.shape[1:]:
        raise SeriesError(
            f"series {denoised.series_uid} is {denoised.shape[1:]} per slice but reference "
            f"{reference.series_uid} is {reference.shape[1:]}; they cannot be compared"
        )
    if not np.allclose(denoised.orientation, reference.orientation, atol=1e-3):
        raise SeriesError(
            f"series {denoised.series_uid} and reference {reference.series_uid} differ in orientation"
        )
    ref_positions = np.array([s.normal_offset_mm for s in reference.slices])
    pairs = []
    for i, ref in enumerate(denoised.slices):
        j = int(np.argmin(np.abs(ref_positions - ref.normal_offset_mm)))
        if abs(ref_positions[j] - ref.normal_offset_mm) <= tolerance_mm:
            pairs.append((i, j))
    if not pairs:
        raise SeriesError(
            f"series {denoised.series_uid} and reference {reference.series_uid} share no slice positions"
        )
    return pairs


def evaluate_series(
    *, denoised: CTSeries, reference: CTSeries, protocols: Sequence[str] = DEFAULT_PROTOCOLS
) -> dict[str, SeriesScores]:
    """PSNR/SSIM/RMSE of ``denoised`` against ``reference`` under each protocol, slices paired by position."""
    pairs = pair_by_position(denoised=denoised.info, reference=reference.info)
    if len(pairs) < len(denoised.info.slices):
        logger.warning(
            "%d of %d slices have no reference slice at the same position and are not scored",
            len(denoised.info.slices) - len(pairs),
            len(denoised.info.slices),
        )
    d_idx, r_idx = (list(t) for t in zip(*pairs, strict=True))
    positions = [denoised.info.slices[i].normal_offset_mm for i in d_idx]
    return score_volume(
        denoised=denoised.hu[d_idx],
        reference=reference.hu[r_idx],
        protocols=protocols,
        positions_mm=positions,
    )


def report_context(
    *,
    denoised: CTSeries,
    reference: CTSeries,
    model: LoadedModel | None = None,
    extra: dict[str, object] | None = None,
) -> dict[str, object]:
    """What a report says about its inputs: series UIDs, slice counts and the model card."""
    context: dict[str, object] = {
        "denoised_series_uid": denoised.info.series_uid,
        "reference_series_uid": reference.info.series_uid,
        "study_uid": denoised.info.study_uid,
        "n_slices": len(denoised.info.slices),
    }
    if model is not None:
        context["model_card"] = model.card.to_dict()
    context.update(extra or {})
    return context


def evaluate_paths(
    *,
    denoised_path: str | Path,
    reference_path: str | Path,
    out_dir: str | Path,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    series_uid: str | None = None,
    progress: ProgressFactory = no_progress,
) -> tuple[Path, Path]:
    """Score a denoised series against a reference series and write report.json and report.csv."""
    denoised = read_series(denoised_path, series_uid=series_uid, progress=progress)
    reference = read_series(reference_path, progress=progress)
    scores = evaluate_series(denoised=denoised, reference=reference, protocols=protocols)
    context = report_context(
        denoised=denoised,
        reference=reference,
        extra={"denoised_path": str(denoised_path), "reference_path": str(reference_path)},
    )
    return write_report(out_dir=Path(out_dir), scores=scores, context=context)
