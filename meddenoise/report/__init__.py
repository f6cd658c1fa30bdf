"""Render an Evaluation (measured by the pipeline) to ``report.json``, ``.csv``, ``.html`` and a DICOM PDF.

This package measures nothing; :mod:`meddenoise.metrics` does, and the pipeline collects the
results into an :class:`Evaluation`.

* :mod:`meddenoise.report.render`: the one route, :func:`render_report`;
* :mod:`meddenoise.report.json_csv`: the JSON document and CSV rows, written atomically;
* :mod:`meddenoise.report.figures`: matplotlib figures as PNG (imported lazily);
* :mod:`meddenoise.report.html`: the self-contained HTML page;
* :mod:`meddenoise.report.bundle`: the Evaluation type, the figures and document of a report;
* :mod:`meddenoise.report.dicom_report`: the same report as a DICOM Encapsulated PDF;
* :mod:`meddenoise.report.phi`: hashed UIDs, no patient identity unless asked.
"""

from meddenoise.report.bundle import (
    Evaluation,
    ReportContent,
    ReportFiles,
    ReportImages,
    build_report,
    write_report_files,
)
from meddenoise.report.html import HTML_NAME
from meddenoise.report.json_csv import (
    CSV_COLUMNS,
    CSV_NAME,
    JSON_NAME,
    csv_rows,
    package_versions,
    report_document,
    write_report,
)
from meddenoise.report.phi import hash_uid, shown_uid
from meddenoise.report.render import render_report, write_comparison_png

__all__ = [
    "CSV_COLUMNS",
    "CSV_NAME",
    "HTML_NAME",
    "JSON_NAME",
    "Evaluation",
    "ReportContent",
    "ReportFiles",
    "ReportImages",
    "build_report",
    "csv_rows",
    "hash_uid",
    "package_versions",
    "render_report",
    "report_document",
    "shown_uid",
    "write_comparison_png",
    "write_report",
    "write_report_files",
]
