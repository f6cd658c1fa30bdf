"""Real low-/full-dose pairs: the AAPM/Mayo 2016 layout and TCIA LDCT-and-Projection-data.

AAPM/Mayo 2016 Grand Challenge layout (``data.aapm_root``)::

    <root>/<patient>/full_3mm/*.IMA      full dose
    <root>/<patient>/quarter_3mm/*.IMA   quarter dose (``full_1mm``/``quarter_1mm`` for 1 mm slices)

``<root>`` may also be one patient folder. TCIA LDCT-and-Projection-data (``data.tcia_root``), as
the NBIA downloader writes it: one folder per patient (``C002``, ``L004``, ``N005``, ...) holding,
at any depth, a full-dose and a low-dose image series. The two are told apart by their
SeriesDescription, which must contain ``data.tcia_full_dose`` (default ``"full dose"``) and
``data.tcia_low_dose`` (default ``"low dose"``), case-insensitively. Its low dose is 10 % of full
dose for chest (``C``) patients and 25 % for abdomen (``L``) and head (``N``) patients.

Full- and low-dose slices are paired by their position along the slice normal. Every slice must
exist at both doses and both series must share one grid (rows, columns, pixel spacing,
orientation, field of view); anything else is an error that names the folder and the position.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from meddenoise.dicom import SeriesInfo, find_series, read_series
from meddenoise.errors import ConfigError, SeriesError
from meddenoise.tolerances import POSITION_TOLERANCE_MM
from meddenoise.training.pairs import PairRun, run_starts

logger = logging.getLogger(__name__)

AapmThickness = Literal["1mm", "3mm"]
AIR_HU = -1024.0
AAPM_DOSE_FRACTION = 0.25
AAPM_PROVENANCE = {
    "collection": "AAPM/Mayo Clinic 2016 Low Dose CT Grand Challenge (user-supplied)",
    "licence": "AAPM Low Dose CT Grand Challenge data use agreement",
    "citation": "McCollough C.H. et al., Med Phys 44(10):e339-e352, 2017, doi:10.1002/mp.12345",
}
TCIA_PROVENANCE = {
    "collection": "TCIA LDCT-and-Projection-data (user-supplied)",
    "licence": "TCIA data usage policy for LDCT-and-Projection-data",
    "citation": "Moen T.R. et al., Med Phys 48(2):902-911, 2021, doi:10.1002/mp.14594",
}


@dataclass(frozen=True)
class PairedSeries:
    """A full-dose and a low-dose series of one patient whose slices pair up index by index."""

    patient: str
    full: SeriesInfo
    low: SeriesInfo
    dose_fraction: float
    full_folder: Path
    low_folder: Path


def _listing(folder: Path, limit: int = 6) -> str:
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    if not entries:
        return "an empty folder"
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(names) + more


def _check_root(root: Path, key: str) -> None:
    if not root.is_dir():
        raise ConfigError(f"data.{key} = {str(root)!r} is not a folder; point it at the dataset")


def one_series(folder: Path) -> SeriesInfo:
    """The single readable CT series under ``folder`` (SeriesError otherwise)."""
    if not folder.is_dir():
        raise SeriesError(f"{folder} is not a folder")
    found = find_series(folder).series
    if len(found) != 1:
        listed = ", ".join(f"{s.description or s.series_uid} ({len(s.slices)} slices)" for s in found)
        raise SeriesError(
            f"{folder}: expected one CT series, found {len(found)}{': ' + listed if listed else ''}"
        )
    info = found[0]
    if info.fatal_problems:
        raise SeriesError(f"{folder}: {'; '.join(info.fatal_problems)}")
    return info


def check_same_grid(*, full: SeriesInfo, low: SeriesInfo, full_folder: Path, low_folder: Path) -> None:
    """Raise SeriesError unless both series share rows, columns, pixel spacing and orientation."""
    checks = [
        ("rows x columns", full.shape[1:], low.shape[1:], full.shape[1:] == low.shape[1:]),
        (
            "pixel spacing (mm)",
            full.spacing_mm[1:],
            low.spacing_mm[1:],
            bool(np.allclose(full.spacing_mm[1:], low.spacing_mm[1:], atol=1e-3)),
        ),
        (
            "orientation",
            full.orientation,
            low.orientation,
            bool(np.allclose(full.orientation, low.orientation, atol=1e-4)),
        ),
    ]
    for what, a, b, same in checks:
        if not same:
            raise SeriesError(
                f"{low_folder} and {full_folder} differ in {what}: {b} vs {a}; "
                "low- and full-dose series must be reconstructed on the same grid"
            )


def _unmatched(offsets: np.ndarray, others: np.ndarray) -> list[int]:
    if not len(others):
        return list(range(len(offsets)))
    distance = np.abs(offsets[:, None] - others[None, :]).min(axis=1)
    return [int(i) for i in np.flatnonzero(distance > POSITION_TOLERANCE_MM)]


def check_pairs(*, full: SeriesInfo, low: SeriesInfo, full_folder: Path, low_folder: Path) -> None:
    """Raise SeriesError unless every slice of each series has a partner at the same position."""
    check_same_grid(full=full, low=low, full_folder=full_folder, low_folder=low_folder)
    full_at = np.array([s.normal_offset_mm for s in full.slices])
    low_at = np.array([s.normal_offset_mm for s in low.slices])
    for here, there, at, other_at, info in (
        (full_folder, low_folder, full_at, low_at, full),
        (low_folder, full_folder, low_at, full_at, low),
    ):
        lonely = _unmatched(at, other_at)
        if lonely:
            first = info.slices[lonely[0]]
            more = f" (and {len(lonely) - 1} more)" if len(lonely) > 1 else ""
            raise SeriesError(
                f"{here} has a slice at {first.normal_offset_mm:.2f} mm along the slice normal "
                f"({first.path.name}) with no partner in {there}{more}; every slice must exist at both "
                "doses: remove it or add the missing one"
            )
    for a, b in zip(full.slices, low.slices, strict=True):
        shift = float(np.max(np.abs(np.subtract(a.position_mm, b.position_mm))))
        if shift > POSITION_TOLERANCE_MM:
            raise SeriesError(
                f"{low_folder} and {full_folder} differ in field of view: slice {b.path.name} starts "
                f"{shift:.2f} mm away from {a.path.name}; reconstruct both on the same grid"
            )


def _paired(patient: str, full_folder: Path, low_folder: Path, dose: float) -> PairedSeries:
    full, low = one_series(full_folder), one_series(low_folder)
    check_pairs(full=full, low=low, full_folder=full_folder, low_folder=low_folder)
    return PairedSeries(
        patient=patient,
        full=full,
        low=low,
        dose_fraction=dose,
        full_folder=full_folder,
        low_folder=low_folder,
    )


def aapm_patients(root: Path, *, thickness: AapmThickness) -> dict[str, tuple[Path, Path]]:
    """Patient name → (full-dose folder, quarter-dose folder) under an AAPM/Mayo 2016 root.

    Raises
    ------
    ConfigError
        When ``root`` is not a folder in that layout (the message says what was expected and found).
    """
    _check_root(root, "aapm_root")
    full_name, low_name = f"full_{thickness}", f"quarter_{thickness}"
    if (root / full_name).is_dir() or (root / low_name).is_dir():
        candidates = [root]
    else:
        candidates = [
            p for p in sorted(root.iterdir()) if (p / full_name).is_dir() or (p / low_name).is_dir()
        ]
    if not candidates:
        raise ConfigError(
            f"{root} is not in the AAPM/Mayo 2016 layout: expected <patient>/{full_name} and "
            f"<patient>/{low_name} folders of DICOM (e.g. L067/{full_name}/*.IMA), found {_listing(root)}"
        )
    patients = {}
    for folder in candidates:
        for name in (full_name, low_name):
            if not (folder / name).is_dir():
                raise ConfigError(
                    f"{folder} has no {name} folder (AAPM/Mayo 2016 layout needs both {full_name} and "
                    f"{low_name}); found {_listing(folder)}"
                )
        patients[folder.name] = (folder / full_name, folder / low_name)
    return patients


def aapm_pairs(
    root: Path, *, thickness: AapmThickness, patients: tuple[str, ...] | None = None
) -> list[PairedSeries]:
    """The checked full-/quarter-dose pairs of the named patients (all when ``patients`` is None)."""
    found = aapm_patients(root, thickness=thickness)
    names = _chosen(found, patients, root, "aapm_validation_patients")
    return [_paired(name, *found[name], AAPM_DOSE_FRACTION) for name in names]


def _chosen(found: Mapping[str, object], wanted: tuple[str, ...] | None, root: Path, key: str) -> list[str]:
    if wanted is None:
        return list(found)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ConfigError(
            f"data.{key} names {missing[0]!r}, which is not a patient under {root}; "
            f"patients found: {', '.join(found)}"
        )
    return list(wanted)


def tcia_dose_fraction(patient: str) -> float:
    """LDCT-and-Projection-data's low dose: 10 % for chest (``C…``) patients, else 25 %."""
    return 0.10 if patient.upper().startswith("C") else 0.25


def _tcia_patient_folders(root: Path) -> list[Path]:
    folders = [p for p in sorted(root.iterdir()) if p.is_dir()]
    if not folders:
        raise ConfigError(
            f"{root} is not in the TCIA LDCT-and-Projection-data layout: expected one folder per "
            f"patient (e.g. L004/) holding a full- and a low-dose series, found {_listing(root)}"
        )
    return folders


def _classify(
    patient: Path, series: tuple[SeriesInfo, ...], full_text: str, low_text: str
) -> tuple[SeriesInfo, SeriesInfo]:
    full = [s for s in series if full_text.lower() in s.description.lower()]
    low = [s for s in series if low_text.lower() in s.description.lower()]
    if len(full) != 1 or len(low) != 1:
        found = ", ".join(repr(s.description) for s in series) or "no CT series"
        raise ConfigError(
            f"{patient}: expected one series whose SeriesDescription contains {full_text!r} and one "
            f"containing {low_text!r} (TCIA LDCT-and-Projection-data layout; set data.tcia_full_dose "
            f"and data.tcia_low_dose to match), found {found}"
        )
    return full[0], low[0]


def tcia_pairs(
    root: Path, *, full_text: str, low_text: str, patients: tuple[str, ...] | None = None
) -> list[PairedSeries]:
    """The checked full-/low-dose pairs of the named TCIA patients (all when ``patients`` is None)."""
    _check_root(root, "tcia_root")
    found = {p.name: p for p in _tcia_patient_folders(root)}
    pairs = []
    for name in _chosen(found, patients, root, "tcia_validation_patients"):
        folder = found[name]
        series = find_series(folder).series
        full, low = _classify(folder, series, full_text, low_text)
        full_folder, low_folder = _series_folder(full), _series_folder(low)
        if full.fatal_problems or low.fatal_problems:
            bad = full if full.fatal_problems else low
            raise SeriesError(f"{_series_folder(bad)}: {'; '.join(bad.fatal_problems)}")
        check_pairs(full=full, low=low, full_folder=full_folder, low_folder=low_folder)
        pairs.append(
            PairedSeries(
                patient=name,
                full=full,
                low=low,
                dose_fraction=tcia_dose_fraction(name),
                full_folder=full_folder,
                low_folder=low_folder,
            )
        )
    return pairs


def _series_folder(info: SeriesInfo) -> Path:
    parents = {s.path.parent for s in info.slices}
    return parents.pop() if len(parents) == 1 else info.slices[0].path.parent


def _subset(info: SeriesInfo, start: int, length: int) -> SeriesInfo:
    slices = info.slices[start : start + length]
    return dataclasses.replace(info, slices=slices, shape=(len(slices), *info.shape[1:]))


def runs_of(pair: PairedSeries, *, slices: int, run_length: int) -> Iterator[PairRun]:
    """About ``slices`` paired slices of ``pair`` as runs of ``run_length`` consecutive slices.

    Only the chosen slices are decoded. Out-of-field padding becomes air at both doses.
    """
    n = len(pair.full.slices)
    length = min(run_length, n)
    for start in run_starts(n_slices=n, runs=max(1, round(slices / length)), length=length):
        full = read_series(_subset(pair.full, start, length))
        low = read_series(_subset(pair.low, start, length))
        if full.hu.shape != low.hu.shape:  # a slice failed to decode at one dose only
            raise SeriesError(
                f"{pair.low_folder}: slices {start}-{start + length - 1} decode to {low.hu.shape} "
                f"but {pair.full_folder} to {full.hu.shape}"
            )
        outside = np.zeros(full.hu.shape, dtype=bool)
        for mask in (full.padding_mask, low.padding_mask):
            if mask is not None:
                outside |= mask
        full_hu, low_hu = np.where(outside, AIR_HU, full.hu), np.where(outside, AIR_HU, low.hu)
        yield PairRun(
            full_hu=np.clip(np.rint(full_hu), -32768, 32767).astype(np.int16),
            low_hu=np.clip(np.rint(low_hu), -32768, 32767).astype(np.int16),
            pixel_mm=(pair.full.spacing_mm[1], pair.full.spacing_mm[2]),
            dose_fraction=pair.dose_fraction,
            series_uid=pair.low.series_uid,
        )
