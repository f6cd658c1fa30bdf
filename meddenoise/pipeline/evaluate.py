"""Score a series against a reference and/or its low-dose input, slices paired by position, and report.

With a reference, the report holds PSNR/SSIM/RMSE under each protocol; with or without one, it
holds the physics metrics (noise, NPS, HU bias, MTF) and the figures of ``report.html``. UIDs are
hashed and patient identity left out unless ``show_phi`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from meddenoise.dicom import CTSeries, SeriesInfo, find_series
from meddenoise.errors import SeriesError
from meddenoise.metrics import SeriesScores, score_volume
from meddenoise.models import LoadedModel
from meddenoise.pipeline.load import load_info, read_series
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import ReportFiles, ReportImages, build_report, shown_uid, write_report_files
from meddenoise.report.dicom_report import write_dicom_report

logger = logging.getLogger(__name__)

DEFAULT_PROTOCOLS: tuple[str, ...] = ("abdomen", "full")
DICOM_REPORT_FOLDER = "dicom-report"


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
    model: LoadedModel | None = None,
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
    if model is not None:
        context["model_card"] = model.card.to_dict()
    context.update(extra or {})
    return context


def write_evaluation_report(
    *,
    denoised: CTSeries,
    out_dir: str | Path,
    reference: CTSeries | None = None,
    input_series: CTSeries | None = None,
    model: LoadedModel | None = None,
    options: ReportOptions = ReportOptions(),
    dicom_folder: Path | None = None,
    extra: dict[str, object] | None = None,
) -> ReportFiles:
    """Write report.json, report.csv and report.html (and, with ``dicom_folder``, an Encapsulated PDF).

    ``reference`` (full dose) gives PSNR/SSIM/RMSE; ``input_series`` (low dose) gives the noise
    reduction and HU bias against the input. At least one is needed. ``options.dicom_report`` is
    ignored here: ``dicom_folder`` says where the PDF goes.
    """
    if reference is None and input_series is None:
        raise ValueError("a report needs a reference or the low-dose input to compare the output with")
    out, ref, low = align_for_report(denoised=denoised, reference=reference, input_series=input_series)
    protocols = options.protocols
    scores = evaluate_series(denoised=out, reference=ref, protocols=protocols) if ref is not None else {}
    baseline = evaluate_series(denoised=low, reference=ref, protocols=protocols) if ref and low else None
    images = ReportImages(
        output=out.hu,
        input=None if low is None else low.hu,
        reference=None if ref is None else ref.hu,
        positions_mm=tuple(s.normal_offset_mm for s in out.info.slices),
        pixel_mm=(out.info.spacing_mm[1], out.info.spacing_mm[2]),
    )
    context = report_context(
        denoised=out, reference=ref, model=model, extra=extra, input_series=low, show_phi=options.show_phi
    )
    content = build_report(
        images=images,
        scores=scores,
        context=context,
        input_scores=baseline,
        figure_slices=options.figure_slices,
    )
    files = write_report_files(out_dir=Path(out_dir), content=content)
    if dicom_folder is not None:
        header = out.info.slices[0].header
        dicom = write_dicom_report(
            content=content, source=header, folder=dicom_folder, show_phi=options.show_phi, overwrite=True
        )
        files = replace(files, dicom=dicom)
    return files


def evaluate_report_paths(
    *,
    denoised_path: str | Path,
    out_dir: str | Path,
    reference_path: str | Path | None = None,
    input_path: str | Path | None = None,
    series_uid: str | None = None,
    options: ReportOptions = ReportOptions(),
    progress: ProgressFactory = no_progress,
) -> ReportFiles:
    """Read the series at the paths and write the full report into ``out_dir``.

    See :func:`write_evaluation_report`. With ``options.dicom_report`` the Encapsulated PDF goes to
    ``out_dir/dicom-report/``. Paths are recorded only with ``options.show_phi`` (folder names
    often carry patient names).

    Examples
    --------
    >>> files = evaluate_report_paths(  # doctest: +SKIP
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
    return write_evaluation_report(
        denoised=denoised,
        out_dir=out_dir,
        reference=reference,
        input_series=low,
        options=options,
        dicom_folder=Path(out_dir) / DICOM_REPORT_FOLDER if options.dicom_report else None,
        extra=extra,
    )


def evaluate_paths(
    *,
    denoised_path: str | Path,
    reference_path: str | Path,
    out_dir: str | Path,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    series_uid: str | None = None,
    progress: ProgressFactory = no_progress,
    input_path: str | Path | None = None,
    show_phi: bool = False,
) -> tuple[Path, Path]:
    """Score a denoised series against a reference series; write report.json, report.csv, report.html."""
    files = evaluate_report_paths(
        denoised_path=denoised_path,
        reference_path=reference_path,
        input_path=input_path,
        out_dir=out_dir,
        series_uid=series_uid,
        options=ReportOptions(protocols=tuple(protocols), show_phi=show_phi),
        progress=progress,
    )
    return files.json, files.csv


def report_denoised_outputs(
    *,
    outputs: Sequence[tuple[Path, str]],
    input_path: str | Path,
    reference_path: str | Path | None = None,
    model: LoadedModel | None = None,
    options: ReportOptions = ReportOptions(),
    progress: ProgressFactory = no_progress,
) -> list[ReportFiles]:
    """The reports of ``denoise --report``, one per (derived series folder, source SeriesInstanceUID).

    Each compares the derived series with its low-dose source (and the reference, when given) and
    goes to ``<output_folder>.report/``; the Encapsulated PDF (``dicom_report``) goes to
    ``<output_folder>-report/``, next to the series. The input tree is scanned, and the reference
    read, once for all of them.
    """
    sources = {info.series_uid: info for info in find_series(Path(input_path)).series}
    reference = read_series(reference_path, progress=progress) if reference_path is not None else None
    written = []
    for output_folder, source_series_uid in outputs:
        written.append(
            write_evaluation_report(
                denoised=read_series(output_folder, progress=progress),
                out_dir=output_folder.with_name(output_folder.name + ".report"),
                reference=reference,
                input_series=load_info(sources[source_series_uid], progress),
                model=model,
                options=options,
                dicom_folder=output_folder.with_name(output_folder.name + "-report")
                if options.dicom_report
                else None,
                extra={"output_folder": output_folder.name},
            )
        )
    return written
