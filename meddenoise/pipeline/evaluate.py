"""Evaluate an output series once: scores, physics, aligned images and context in one Evaluation.

With a reference (full dose) the evaluation holds PSNR/SSIM/RMSE under each protocol, for the
output and for the low-dose input; with or without one, it holds the physics (noise, NPS, HU
bias, MTF) measured in the same ROIs of every image. :mod:`meddenoise.report` renders it. Slices
are paired by position along the normal. UIDs are hashed and patient identity left out unless
``show_phi`` is set.

Two entry points: :func:`evaluate` on series in memory (what the runner calls right after
writing, with nothing read back), and :func:`evaluate_paths` on folders (``meddenoise evaluate``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meddenoise.dicom import CTSeries, SeriesInfo
from meddenoise.errors import SeriesError
from meddenoise.metrics import SeriesScores, physics_summary, score_volume
from meddenoise.models import ModelCard
from meddenoise.pipeline.load import read_series
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import Evaluation, ReportFiles, ReportImages, render_report, shown_uid
from meddenoise.tolerances import POSITION_TOLERANCE_MM

logger = logging.getLogger(__name__)

DEFAULT_PROTOCOLS: tuple[str, ...] = ("abdomen", "full")


@dataclass(frozen=True)
class ReportOptions:
    """How a report is made: metric protocols, PHI, figure slices and the DICOM copy.

    ``figure_slices`` index the slices the compared series share (None: 3 evenly spaced ones).
    ``show_phi`` writes UIDs as they are and the patient's name and ID; by default UIDs are hashed
    and no patient identity is written. ``dicom_report`` also writes an Encapsulated PDF.
    """

    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    show_phi: bool = False
    figure_slices: tuple[int, ...] | None = None
    dicom_report: bool = False


def pair_by_position(
    *, denoised: SeriesInfo, reference: SeriesInfo, tolerance_mm: float = POSITION_TOLERANCE_MM
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


def score_series(
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


def align_for_report(
    *, denoised: CTSeries, reference: CTSeries | None = None, input_series: CTSeries | None = None
) -> tuple[CTSeries, CTSeries | None, CTSeries | None]:
    """The three series cut to the slice positions they all share, in the denoised series' order."""
    keep = set(range(len(denoised.info.slices)))
    maps: list[dict[int, int]] = []
    for other in (reference, input_series):
        mapping = (
            {} if other is None else dict(pair_by_position(denoised=denoised.info, reference=other.info))
        )
        maps.append(mapping)
        if other is not None:
            keep &= set(mapping)
    if not keep:
        raise SeriesError(
            f"series {denoised.info.series_uid} shares no slice position with all compared series"
        )
    order = sorted(keep)
    ref_map, in_map = maps
    return (
        _subset(denoised, order),
        None if reference is None else _subset(reference, [ref_map[i] for i in order]),
        None if input_series is None else _subset(input_series, [in_map[i] for i in order]),
    )


def _subset(series: CTSeries, indices: list[int]) -> CTSeries:
    if indices == list(range(len(series.info.slices))):
        return series
    slices = tuple(series.info.slices[i] for i in indices)
    info = replace(series.info, slices=slices, shape=(len(slices), *series.info.shape[1:]))
    mask = None if series.padding_mask is None else series.padding_mask[indices]
    return CTSeries(info=info, hu=series.hu[indices], padding_mask=mask)


def report_context(
    *,
    denoised: CTSeries,
    reference: CTSeries | None = None,
    card: ModelCard | None = None,
    extra: dict[str, object] | None = None,
    input_series: CTSeries | None = None,
    show_phi: bool = False,
) -> dict[str, object]:
    """What a report says about its inputs: hashed series UIDs, slice counts, derivation and model card.

    With ``show_phi`` the UIDs are written as they are, with the patient's name and ID.
    """
    header = denoised.info.slices[0].header
    context: dict[str, object] = {
        "uids_hashed": not show_phi,
        "denoised_series_uid": shown_uid(denoised.info.series_uid, show_phi=show_phi),
        "study_uid": shown_uid(denoised.info.study_uid, show_phi=show_phi),
        "n_slices": len(denoised.info.slices),
        "pixel_spacing_mm": list(denoised.info.spacing_mm[1:]),
        "slice_spacing_mm": denoised.info.spacing_mm[0],
        "kernel": denoised.info.kernel,
        "derivation_description": str(header.get("DerivationDescription", "")),
    }
    for key, other in (("reference_series_uid", reference), ("input_series_uid", input_series)):
        if other is not None:
            context[key] = shown_uid(other.info.series_uid, show_phi=show_phi)
    if show_phi:
        context["patient_name"] = str(header.get("PatientName", ""))
        context["patient_id"] = str(header.get("PatientID", ""))
    if card is not None:
        context["model_card"] = card.to_dict()
    context.update(extra or {})
    return context


def evaluate(
    *,
    denoised: CTSeries,
    reference: CTSeries | None = None,
    input_series: CTSeries | None = None,
    card: ModelCard | None = None,
    options: ReportOptions = ReportOptions(),
    extra: dict[str, object] | None = None,
) -> Evaluation:
    """Measure ``denoised`` once against the ``reference`` (full dose) and/or its ``input_series``.

    The three are cut to the slice positions they share. ``reference`` gives PSNR/SSIM/RMSE of the
    output (and of the input); ``input_series`` gives the noise reduction and HU bias against the
    input. At least one is needed.

    Examples
    --------
    >>> evaluation = evaluate(denoised=out, input_series=low, reference=full)  # doctest: +SKIP
    >>> evaluation.scores["abdomen"].mean_psnr  # doctest: +SKIP
    """
    if reference is None and input_series is None:
        raise ValueError("an evaluation needs a reference or the low-dose input to compare the output with")
    out, ref, low = align_for_report(denoised=denoised, reference=reference, input_series=input_series)
    protocols = options.protocols
    scores = score_series(denoised=out, reference=ref, protocols=protocols) if ref is not None else {}
    baseline = score_series(denoised=low, reference=ref, protocols=protocols) if ref and low else None
    pixel_mm = (out.info.spacing_mm[1], out.info.spacing_mm[2])
    images = ReportImages(
        output=out.hu,
        input=None if low is None else low.hu,
        reference=None if ref is None else ref.hu,
        positions_mm=tuple(s.normal_offset_mm for s in out.info.slices),
        pixel_mm=pixel_mm,
    )
    physics = physics_summary(
        input_hu=images.input, output_hu=images.output, reference_hu=images.reference, pixel_mm=pixel_mm
    )
    context = report_context(
        denoised=out, reference=ref, card=card, extra=extra, input_series=low, show_phi=options.show_phi
    )
    return Evaluation(
        images=images,
        scores=scores,
        physics=physics,
        context=context,
        input_scores=baseline,
        figure_slices=options.figure_slices or (),
    )


def write_evaluation(
    evaluation: Evaluation, *, out_dir: Path, options: ReportOptions, source: CTSeries
) -> ReportFiles:
    """Render ``evaluation`` into ``out_dir`` (with the DICOM PDF when ``options.dicom_report``)."""
    header = source.info.slices[0].header if options.dicom_report else None
    return render_report(evaluation, out_dir=out_dir, dicom_source=header, show_phi=options.show_phi)


def evaluate_paths(
    *,
    denoised_path: str | Path,
    out_dir: str | Path,
    reference_path: str | Path | None = None,
    input_path: str | Path | None = None,
    series_uid: str | None = None,
    options: ReportOptions = ReportOptions(),
    progress: ProgressFactory = no_progress,
) -> tuple[Evaluation, ReportFiles]:
    """Read the series at the paths, evaluate and write the report into ``out_dir``.

    With ``options.dicom_report`` the Encapsulated PDF goes to ``out_dir/dicom/``. Paths are
    recorded only with ``options.show_phi`` (folder names often carry patient names).

    Examples
    --------
    >>> evaluation, files = evaluate_paths(  # doctest: +SKIP
    ...     denoised_path="out/denoised", reference_path="full-dose", input_path="low-dose", out_dir="report"
    ... )
    """
    denoised = read_series(denoised_path, series_uid=series_uid, progress=progress)
    reference = read_series(reference_path, progress=progress) if reference_path is not None else None
    low = read_series(input_path, progress=progress) if input_path is not None else None
    paths = {"denoised_path": denoised_path, "reference_path": reference_path, "input_path": input_path}
    extra: dict[str, object] = {}
    if options.show_phi:
        extra = {k: str(v) for k, v in paths.items() if v is not None}
    evaluation = evaluate(
        denoised=denoised, reference=reference, input_series=low, options=options, extra=extra
    )
    return evaluation, write_evaluation(evaluation, out_dir=Path(out_dir), options=options, source=denoised)
