"""Build small real-data fixtures in the AAPM/Mayo 2016 and TCIA LDCT-and-Projection-data layouts.

The full-dose slices are the real files of ``fixtures/dcmqi-ct-3slice`` (3 slices, 512², GE). The
"low-dose" partner is a derived series made by the project's own projection-domain simulation
(coarse fan-beam geometry, so it takes well under a second) and DICOM writer.
"""

from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import generate_uid

from meddenoise.dicom import Derivation, find_series, read_series, write_derived_series
from meddenoise.simulate import SimulationSettings, simulate_from_settings
from meddenoise.simulate.geometry import FanBeamGeometry
from tests.conftest import require_shared

SOURCE = "fixtures/dcmqi-ct-3slice/01-series"
FAST = SimulationSettings(
    dose_fraction=0.25, geometry=FanBeamGeometry(n_views=192, n_detectors=368), view_binning=2
)


def copy_full(folder: Path, *, prefix: str) -> Path:
    """Copy the real full-dose slices into ``folder`` as ``<prefix>.<n>.IMA``."""
    folder.mkdir(parents=True)
    for index, path in enumerate(sorted(require_shared(SOURCE).iterdir())):
        shutil.copyfile(path, folder / f"{prefix}.{index + 1:04d}.IMA")
    return folder


def write_low(full_folder: Path, low_folder: Path, *, stage: Path, seed: int = 0) -> Path:
    """Simulate a low-dose partner of ``full_folder`` and put its files in ``low_folder`` (.IMA)."""
    info = find_series(full_folder).series[0]
    series = read_series(info)
    low = simulate_from_settings(
        series.hu, pixel_mm=info.spacing_mm[1:], settings=FAST, seed=seed, padding_mask=series.padding_mask
    )
    derivation = Derivation(
        description="test fixture: simulated quarter dose",
        series_description_suffix="quarter",
        folder_suffix=f"quarter{seed}",
    )
    written = write_derived_series(
        source=info, hu=low, out_dir=stage, derivation=derivation, padding_mask=series.padding_mask
    )
    low_folder.mkdir(parents=True)
    for index, path in enumerate(sorted(written.iterdir())):
        shutil.move(path, low_folder / f"{low_folder.name}.{index + 1:04d}.IMA")
    written.rmdir()
    return low_folder


def build_aapm(root: Path, *, patients: tuple[str, ...] = ("L067", "L096")) -> Path:
    """``root/<patient>/full_3mm`` and ``quarter_3mm`` for each patient (one simulation, copied)."""
    first = root / patients[0]
    full = copy_full(first / "full_3mm", prefix=f"{patients[0]}_FD_3_1.CT")
    write_low(full, first / "quarter_3mm", stage=root.parent / f"stage-{root.name}")
    for patient in patients[1:]:
        shutil.copytree(first, root / patient)
        for dose in ("full_3mm", "quarter_3mm"):  # each patient's series gets its own UID
            set_tags(root / patient / dose, SeriesInstanceUID=generate_uid())
    return root


def set_tags(folder: Path, **tags: Any) -> None:
    """Rewrite every file in ``folder`` with the given header values."""
    for path in folder.iterdir():
        ds = dcmread(path)
        for keyword, value in tags.items():
            setattr(ds, keyword, value)
        ds.save_as(path)


def build_tcia(root: Path, *, aapm: Path, patients: tuple[str, ...] = ("L004", "C002")) -> Path:
    """``root/<patient>/<study>/1.000000-Full Dose Images-1234/`` and ``2.000000-Low Dose Images-5678/``.

    The series are those of the AAPM fixture ``aapm`` (first patient), relabelled.
    """
    source = sorted(p for p in aapm.iterdir() if p.is_dir())[0]
    for patient in patients:
        study = root / patient / "08-23-2018-NA-NA-12345"
        full, low = study / "1.000000-Full Dose Images-1234", study / "2.000000-Low Dose Images-5678"
        shutil.copytree(source / "full_3mm", full)
        shutil.copytree(source / "quarter_3mm", low)
        set_tags(full, SeriesDescription="Full Dose Images", SeriesInstanceUID=generate_uid())
        set_tags(low, SeriesDescription="Low Dose Images", SeriesInstanceUID=generate_uid())
    return root


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_recipe(path: Path, *, out_dir: Path, aapm_root: Path, **sections: dict[str, Any]) -> Path:
    """A tiny recipe on an AAPM fixture: UNetPU(8, 16), patch 32, a few iterations, one thread."""
    data = {
        "aapm_root": str(aapm_root),
        "aapm_validation_patients": ["L096"],
        "slices_per_series": 3,
        "validation_slices_per_series": 2,
        "cache_dir": str(path.parent / "cache"),
        **sections.get("data", {}),
    }
    model = {"name": "tiny", "architecture": "unet_pu", "context_slices": 1, **sections.get("model", {})}
    kwargs = {"channels": [8, 16], "unshuffle": 2, **sections.get("kwargs", {})}
    train = {
        "patch_size": 32,
        "batch_size": 2,
        "iterations": 4,
        "validate_every": 2,
        "warmup_iterations": 1,
        "threads": 1,
        "device": "cpu",
        **sections.get("train", {}),
    }
    tables = {
        "data": data,
        "model": model,
        "model.kwargs": kwargs,
        "train": train,
        "output": {"dir": str(out_dir)},
    }
    text = "\n".join(
        f"[{name}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in table.items())
        for name, table in tables.items()
    )
    path.write_text(textwrap.dedent(text))
    return path


def log_rows(run: Path) -> list[dict[str, str]]:
    """The rows of a training run's ``log.csv``."""
    with (run / "log.csv").open() as handle:
        return list(csv.DictReader(handle))
