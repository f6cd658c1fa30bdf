"""The one report route: an Evaluation rendered to report.json, report.csv, report.html and a DICOM PDF."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset

from meddenoise.report import figures as figs
from meddenoise.report.bundle import Evaluation, ReportFiles, build_report, write_report_files
from meddenoise.report.dicom_report import write_dicom_report
from meddenoise.report.json_csv import write_text_atomic

DICOM_REPORT_FOLDER = "dicom"


def render_report(
    evaluation: Evaluation, *, out_dir: Path, dicom_source: Dataset | None = None, show_phi: bool = False
) -> ReportFiles:
    """Write ``evaluation`` into ``out_dir``; with ``dicom_source`` (a header of the series the report
    is about) also as an Encapsulated PDF series in ``out_dir/dicom/``."""
    content = build_report(evaluation)
    files = write_report_files(out_dir=out_dir, content=content)
    if dicom_source is not None:
        dicom = write_dicom_report(
            content=content,
            source=dicom_source,
            folder=out_dir / DICOM_REPORT_FOLDER,
            show_phi=show_phi,
            overwrite=True,
        )
        files = replace(files, dicom=dicom)
    return files


def write_comparison_png(evaluation: Evaluation, *, path: Path, slice_index: int | None = None) -> Path:
    """One before/after picture: the middle compared slice (or ``slice_index``), every image side by
    side in the abdomen window and, where there is lung, the lung window. Written atomically."""
    images = evaluation.images
    index = images.output.shape[0] // 2 if slice_index is None else slice_index
    png = figs.slice_panel(
        images={role: hu[index] for role, hu in images.roles().items()},
        title=f"slice {index + 1} of {images.output.shape[0]}",
        windows=("abdomen", "lung"),
    )
    return write_text_atomic(path, png)
