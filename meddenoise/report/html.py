"""``report.html``: one self-contained page (inline CSS, PNGs embedded as base64, no scripts).

It opens offline in any browser and can be mailed or archived as one file. The text comes from the
same document as ``report.json`` (:func:`meddenoise.report.json_csv.report_document`), so the page
and the JSON can never disagree.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HTML_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:1.5em auto;max-width:1180px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}figure{margin:.8em 0}img{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555}.protocol{font-size:.8em;color:#555}code{font-size:.85em}
"""


@dataclass(frozen=True)
class Figure:
    """One embedded PNG with its caption."""

    png: bytes
    caption: str
    alt: str


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _esc(value)


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(figure.alt)}">'
        f"<figcaption>{_esc(figure.caption)}</figcaption></figure>"
    )


def _fidelity_section(document: Mapping[str, object]) -> str:
    series = document.get("series") or {}
    assert isinstance(series, Mapping)
    if not series:
        return "<p>No reference was given: fidelity metrics (PSNR/SSIM/RMSE) need a full-dose reference.</p>"
    rows = []
    baseline = document.get("input_series") or {}
    assert isinstance(baseline, Mapping)
    for key, entry in series.items():
        base = baseline.get(key, {})
        psnr = "inf (identical)" if entry["mean_psnr_db"] is None else _number(entry["mean_psnr_db"])
        rows.append(
            [
                _esc(key),
                psnr,
                _number(entry["mean_ssim"], 4),
                f"{_number(entry['mean_rmse'], 3)} {_esc(entry['rmse_unit'])}",
                _number(base.get("mean_psnr_db")),
                _number(base.get("mean_ssim"), 4),
                f'<span class="protocol">{_esc(entry["protocol_description"])}</span>',
            ]
        )
    header = ["protocol", "PSNR (dB)", "SSIM", "RMSE", "input PSNR (dB)", "input SSIM", "definition"]
    return _table(rows, header) + "<p class='protocol'>Series values are the mean of per-slice values.</p>"


def _physics_section(physics: Mapping[str, object] | None) -> str:
    if not physics:
        return "<p>No uniform soft-tissue region was found: no noise or NPS measurement.</p>"
    images = physics["images"]
    assert isinstance(images, Mapping)
    rows = [
        [
            _esc(role),
            _number(img["noise_sd_hu"]),
            _number(img["mean_hu_in_rois"], 1),
            _number(img["nps_peak_frequency_per_mm"], 3),
            _number(img["nps_mean_frequency_per_mm"], 3),
            _number(img["mtf50_per_mm"], 3),
        ]
        for role, img in images.items()
    ]
    table = _table(
        rows,
        ["image", "noise SD (HU)", "mean HU in ROIs", "NPS peak (mm⁻¹)", "NPS mean (mm⁻¹)", "MTF50 (mm⁻¹)"],
    )
    summary = _table(
        [
            ["noise reduction vs input", f"{_number(physics['noise_reduction_percent'], 1)} %"],
            ["NPS peak shift vs input", f"{_number(physics['nps_peak_shift_percent'], 1)} %"],
            ["HU bias, denoised − input", f"{_number(physics['hu_bias_output_vs_input_hu'])} HU"],
            ["HU bias, denoised − reference", f"{_number(physics['hu_bias_output_vs_reference_hu'])} HU"],
        ],
        ["measure", "value"],
    )
    protocols = physics["protocols"]
    assert isinstance(protocols, Mapping)
    listing = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in protocols.items())
    return table + summary + f"<ul class='protocol'>{listing}</ul>"


def _context_section(document: Mapping[str, object]) -> str:
    context = document.get("context") or {}
    assert isinstance(context, Mapping)
    rows = [[_esc(k), f"<code>{_esc(v)}</code>"] for k, v in context.items() if k != "model_card"]
    card = context.get("model_card")
    if isinstance(card, Mapping):
        rows.append(
            ["model", _esc(f"{card.get('name')} v{card.get('version')} ({card.get('architecture')})")]
        )
    versions = document.get("versions") or {}
    assert isinstance(versions, Mapping)
    rows.append(["versions", _esc(", ".join(f"{k} {v}" for k, v in versions.items()))])
    return _table(rows, ["item", "value"])


def render_html(
    *, document: Mapping[str, object], figures: Mapping[str, Sequence[Figure]], title: str
) -> str:
    """The whole page as a string: summary tables from ``document``, then the figure sections.

    ``figures`` maps a section heading to its figures (in order).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='protocol'>meddenoise {_esc(document.get('meddenoise_version'))}, created "
        f"{_esc(document.get('created'))}. UIDs are shown as hashes unless the report was made "
        "with --show-phi.</p>",
        "<h2>Fidelity against the reference</h2>",
        _fidelity_section(document),
        "<h2>Physics: noise, NPS, HU bias, sharpness</h2>",
        _physics_section(document.get("physics")),  # type: ignore[arg-type]
    ]
    for heading, items in figures.items():
        parts.append(f"<h2>{_esc(heading)}</h2>")
        parts.extend(_figure_html(f) for f in items)
    parts += ["<h2>Inputs</h2>", _context_section(document), "</body></html>"]
    return "\n".join(parts) + "\n"
