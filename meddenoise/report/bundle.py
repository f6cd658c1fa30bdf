"""A whole report from an :class:`Evaluation`: figures and document, written as JSON, CSV and HTML.

The pipeline measures everything once into an :class:`Evaluation` (aligned images, scores,
physics, context); :func:`build_report` draws its figures and assembles the document
(:class:`ReportContent`), and :func:`write_report_files` writes ``report.json``, ``report.csv``
and ``report.html``. The DICOM Encapsulated PDF (:mod:`meddenoise.report.dicom_report`) renders
the same content; :func:`meddenoise.report.render.render_report` does all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meddenoise.metrics import PhysicsSummary, SeriesScores
from meddenoise.report import figures as figs
from meddenoise.report.html import HTML_NAME, Figure, render_html
from meddenoise.report.json_csv import (
    CSV_NAME,
    JSON_NAME,
    csv_rows,
    csv_text,
    json_text,
    report_document,
    write_text_atomic,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ReportImages:
    """HU volumes of one report, aligned slice by slice (same shape), and their geometry.

    ``input`` is the low-dose series, ``output`` the denoised one, ``reference`` the full dose;
    ``input`` or ``reference`` may be missing, not both.
    """

    output: npt.NDArray[np.floating]
    input: npt.NDArray[np.floating] | None = None
    reference: npt.NDArray[np.floating] | None = None
    positions_mm: tuple[float, ...] = ()
    pixel_mm: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if self.input is None and self.reference is None:
            raise ValueError("a report needs the input or the reference next to the output")
        shapes = {a.shape for a in (self.output, self.input, self.reference) if a is not None}
        if len(shapes) != 1 or self.output.ndim != 3:
            raise ValueError(
                f"report images must be aligned (slices, rows, cols) volumes; got {sorted(shapes)}"
            )
        if self.positions_mm and len(self.positions_mm) != self.output.shape[0]:
            raise ValueError("positions_mm needs one position per slice")

    def roles(self) -> dict[str, npt.NDArray[np.floating]]:
        """The present images keyed by role, in display order."""
        present = {"input": self.input, "output": self.output, "reference": self.reference}
        return {role: hu for role, hu in present.items() if hu is not None}

    def positions(self) -> list[float]:
        """Slice positions in mm (slice indices when unknown)."""
        return (
            list(self.positions_mm) if self.positions_mm else [float(i) for i in range(self.output.shape[0])]
        )


@dataclass(frozen=True, eq=False)
class ReportContent:
    """What every rendering of a report shows: the JSON document and the figures by section."""

    document: dict[str, object]
    figures: dict[str, list[Figure]]
    title: str
    physics: PhysicsSummary | None = None
    scores: Mapping[str, SeriesScores] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportFiles:
    """The files a report was written to."""

    json: Path
    csv: Path
    html: Path | None
    dicom: Path | None = None


def _slice_figures(images: ReportImages, slices: Sequence[int]) -> list[Figure]:
    out = []
    positions = images.positions()
    for index in slices:
        panel = figs.slice_panel(
            images={role: hu[index] for role, hu in images.roles().items()},
            title=f"slice {index + 1} of {images.output.shape[0]} (position {positions[index]:.1f} mm)",
        )
        shown = ", ".join(figs.LABELS[role] for role in images.roles())
        caption = f"Slice {index + 1} at {positions[index]:.1f} mm, left to right: {shown}, difference"
        out.append(Figure(panel, caption, f"slice {index + 1} side by side: {shown}"))
    return out


def _figures(
    images: ReportImages,
    slices: Sequence[int],
    physics: PhysicsSummary | None,
    scores: Mapping[str, SeriesScores],
    input_scores: Mapping[str, SeriesScores] | None,
) -> dict[str, list[Figure]]:
    out: dict[str, list[Figure]] = {"Images": _slice_figures(images, slices)}
    if scores:
        png = figs.fidelity_plot(scores=scores, baseline=input_scores)
        out["Fidelity per slice"] = [
            Figure(png, "PSNR and SSIM per slice (dashed: the low-dose input)", "PSNR and SSIM per slice")
        ]
    if physics is not None:
        out["Noise"] = [
            Figure(
                figs.nps_plot(physics=physics), "Radial NPS in the uniform ROIs (dotted: peaks)", "radial NPS"
            ),
            Figure(
                figs.noise_plot(physics=physics, positions_mm=images.positions()),
                "Noise SD per slice",
                "noise per slice",
            ),
        ]
    return out


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything measured about one output series, once; the renderers only draw it.

    ``images`` are the aligned input (low dose), output (denoised) and reference (full dose);
    ``scores`` compare output with reference and ``input_scores`` input with reference, per
    protocol; ``physics`` (noise, NPS, HU bias, MTF in the same ROIs) is None where no uniform
    region exists; ``context`` says what was compared and how it was made (hashed UIDs, model card).
    """

    images: ReportImages
    scores: Mapping[str, SeriesScores]
    physics: PhysicsSummary | None
    context: Mapping[str, object]
    input_scores: Mapping[str, SeriesScores] | None = None
    figure_slices: tuple[int, ...] = ()
    title: str = "meddenoise report"

    def __post_init__(self) -> None:
        n = self.images.output.shape[0]
        slices = tuple(self.figure_slices) or tuple(figs.evenly_spaced(n))
        if any(not 0 <= i < n for i in slices):
            raise ValueError(f"figure slices {list(slices)} lie outside the {n} compared slices")
        object.__setattr__(self, "figure_slices", slices)


def build_report(evaluation: Evaluation) -> ReportContent:
    """Draw the figures and assemble the document of a report (measures nothing)."""
    images, physics = evaluation.images, evaluation.physics
    slices = list(evaluation.figure_slices)
    document = report_document(
        scores=evaluation.scores,
        context={**evaluation.context, "figure_slices": slices, "positions_mm": images.positions()},
        physics=physics.as_dict() if physics is not None else {},
        input_scores=evaluation.input_scores,
    )
    if physics is None:
        document["physics"] = None
    return ReportContent(
        document=document,
        figures=_figures(images, slices, physics, evaluation.scores, evaluation.input_scores),
        title=evaluation.title,
        physics=physics,
        scores=dict(evaluation.scores),
    )


def write_report_files(*, out_dir: Path, content: ReportContent, html: bool = True) -> ReportFiles:
    """Write ``report.json``, ``report.csv`` and (with ``html``) ``report.html`` into ``out_dir``."""
    document = content.document
    physics = document.get("physics")
    context = document["context"]
    assert isinstance(context, Mapping)
    rows = csv_rows(
        scores=content.scores,
        physics=physics if isinstance(physics, Mapping) else None,
        positions_mm=context.get("positions_mm"),
    )
    json_path = write_text_atomic(out_dir / JSON_NAME, json_text(document))
    csv_path = write_text_atomic(out_dir / CSV_NAME, csv_text(rows))
    html_path = None
    if html:
        page = render_html(document=document, figures=content.figures, title=content.title)
        html_path = write_text_atomic(out_dir / HTML_NAME, page)
    logger.info("wrote the report to %s", out_dir)
    return ReportFiles(json=json_path, csv=csv_path, html=html_path)
