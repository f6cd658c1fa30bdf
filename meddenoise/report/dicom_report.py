"""The report as a DICOM Encapsulated PDF in the derived series' study, so it travels with the images.

The PDF is drawn with matplotlib's PDF backend (no extra dependency): a first page of numbers, then
one page per figure. The DICOM object (SOP class 1.2.840.10008.5.1.4.1.1.104.1) copies the patient
and study modules of the series it reports on, so a PACS files it in the same study, in a new
series. Patient identity appears inside the PDF only when the report was made with ``show_phi``.
"""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from collections.abc import Mapping
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from meddenoise import __version__
from meddenoise.dicom import write_series_files
from meddenoise.report.bundle import ReportContent

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
REPORT_SERIES_NUMBER_OFFSET = 5000
A4_INCHES = (8.27, 11.69)


def _summary_lines(document: Mapping[str, object]) -> list[str]:
    lines = [f"meddenoise {document.get('meddenoise_version')}, created {document.get('created')}", ""]
    series = document.get("series") or {}
    assert isinstance(series, Mapping)
    for key, entry in series.items():
        psnr = entry["mean_psnr_db"]
        psnr_text = "inf" if psnr is None else f"{psnr:.2f} dB"
        lines.append(
            f"{key}: PSNR {psnr_text}, SSIM {entry['mean_ssim']:.4f}, "
            f"RMSE {entry['mean_rmse']:.3g} {entry['rmse_unit']}"
        )
        lines.append(f"    {entry['protocol_description']}")
    physics = document.get("physics")
    if isinstance(physics, Mapping):
        lines.append("")
        for role, image in physics["images"].items():
            lines.append(
                f"{role}: noise SD {image['noise_sd_hu']:.2f} HU, "
                f"NPS peak {image['nps_peak_frequency_per_mm']:.3f} /mm, "
                f"mean {image['nps_mean_frequency_per_mm']:.3f} /mm"
            )
        for key in (
            "noise_reduction_percent",
            "nps_peak_shift_percent",
            "hu_bias_output_vs_input_hu",
            "hu_bias_output_vs_reference_hu",
        ):
            value = physics.get(key)
            lines.append(f"{key}: {'-' if value is None else f'{value:.2f}'}")
        for key, text in physics["protocols"].items():
            lines.append(f"[{key}] {text}")
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, 110, subsequent_indent="      ") or [""])
    return wrapped


def report_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes: a page of numbers and protocols, then one page per figure."""
    import matplotlib.image as mpimg
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": content.title, "Creator": f"meddenoise {__version__}"}) as pdf:
        page = Figure(figsize=A4_INCHES)
        page.text(0.05, 0.96, content.title, fontsize=14, weight="bold", va="top")
        page.text(
            0.05,
            0.92,
            "\n".join(_summary_lines(content.document)),
            fontsize=6.5,
            va="top",
            family="monospace",
        )
        pdf.savefig(page)
        for section, figures in content.figures.items():
            for figure in figures:
                page = Figure(figsize=A4_INCHES)
                ax = page.add_axes((0.03, 0.05, 0.94, 0.85))
                ax.imshow(mpimg.imread(io.BytesIO(figure.png), format="png"))
                ax.set_axis_off()
                page.text(0.05, 0.95, f"{section}: {figure.caption}", fontsize=10, va="top")
                pdf.savefig(page)
    return buffer.getvalue()


def encapsulated_pdf_dataset(*, pdf: bytes, source: Dataset, title: str, show_phi: bool) -> Dataset:
    """An Encapsulated PDF dataset in ``source``'s study (patient and study modules copied), new series."""
    now = dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    for keyword in PATIENT_STUDY_KEYWORDS:
        ds.setdefault(keyword, source.get(keyword, "") or "")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + REPORT_SERIES_NUMBER_OFFSET
    ds.SeriesDescription = "meddenoise report"
    ds.Manufacturer = "meddenoise"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES" if show_phi else "NO"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = DicomSequence()
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def write_dicom_report(
    *, content: ReportContent, source: Dataset, folder: Path, show_phi: bool = False, overwrite: bool = False
) -> Path:
    """Write the report as a one-instance Encapsulated PDF series into ``folder`` (atomically).

    ``source`` is a header of the series the report is about (its patient and study modules are
    copied). Returns the path of the DICOM file.
    """
    dataset = encapsulated_pdf_dataset(
        pdf=report_pdf(content), source=source, title=content.title, show_phi=show_phi
    )
    written = write_series_files(datasets=[dataset], count=1, final=folder, overwrite=overwrite)
    return next(written.glob("*.dcm"))
