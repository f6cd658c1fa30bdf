"""Scores, physics metrics and figures to files: ``report.json``, ``report.csv``, ``report.html``, DICOM PDF.

* :mod:`meddenoise.report.json_csv`: the JSON document and CSV rows, written atomically;
* :mod:`meddenoise.report.physics`: noise, NPS, HU bias and MTF of input/output/reference;
* :mod:`meddenoise.report.figures`: matplotlib figures as PNG (imported lazily);
* :mod:`meddenoise.report.html`: the self-contained HTML page;
* :mod:`meddenoise.report.bundle`: build a whole report from aligned images and write it;
* :mod:`meddenoise.report.dicom_report`: the same report as a DICOM Encapsulated PDF;
* :mod:`meddenoise.report.phi`: hashed UIDs, no patient identity unless asked.
"""

from meddenoise.report.bundle import (
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
from meddenoise.report.physics import ImagePhysics, PhysicsSummary, physics_summary

__all__ = [
    "CSV_COLUMNS",
    "CSV_NAME",
    "HTML_NAME",
    "JSON_NAME",
    "ImagePhysics",
    "PhysicsSummary",
    "ReportContent",
    "ReportFiles",
    "ReportImages",
    "build_report",
    "csv_rows",
    "hash_uid",
    "package_versions",
    "physics_summary",
    "report_document",
    "shown_uid",
    "write_report",
    "write_report_files",
]
