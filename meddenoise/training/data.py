"""Turn a recipe's data section into simulated training and validation pair runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddenoise.errors import ConfigError
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings
from meddenoise.simulate.fbp import FilterName, check_filter
from meddenoise.training.catalogue import DataSet, load_sets
from meddenoise.training.config import TrainingRecipe
from meddenoise.training.pairs import PairRun, RunRequest, build_runs, run_starts, series_under
from meddenoise.training.sources import (
    AAPM_PROVENANCE,
    TCIA_PROVENANCE,
    PairedSeries,
    aapm_pairs,
    runs_of,
    tcia_pairs,
)

TRAIN_RUN_LENGTH = 8
VALIDATION_I0 = 1.5e5  # EVALUATION.md's typical full-dose photons per ray
VALIDATION_FILTER: FilterName = "hann"
REALISATION_SEED_STEP = 100_000  # far above any series index * 10 + start, so seeds never collide


@dataclass(frozen=True)
class PreparedData:
    """Pair runs for training and validation, and the provenance of the sets they came from."""

    train_runs: list[PairRun]
    validation_runs: list[PairRun]
    provenance: list[dict[str, str]]
    series_names: dict[str, str]


def _train_requests(recipe: TrainingRecipe, folders: tuple[Path, ...]) -> list[RunRequest]:
    d = recipe.data
    rng = np.random.default_rng(d.seed)
    requests = []
    for info in series_under(folders):
        length = min(TRAIN_RUN_LENGTH, len(info.slices))
        n_runs = max(1, round(d.slices_per_series / length))
        for start in run_starts(n_slices=len(info.slices), runs=n_runs, length=length):
            # Dose uniform in its range and I0 log-uniform: the network meets many noise levels.
            settings = SimulationSettings(
                dose_fraction=float(rng.uniform(*d.dose_range)),
                i0=float(np.exp(rng.uniform(np.log(d.i0_range[0]), np.log(d.i0_range[1])))),
                sigma_e2=d.sigma_e2,
                filter=check_filter(str(rng.choice(d.filters))),
            )
            # Drawn only when asked for, so recipes without it keep their random stream and cache.
            scale = float(rng.choice(d.pixel_scales)) if d.pixel_scales != (1.0,) else 1.0
            seed = int(rng.integers(2**31))
            requests.append(
                RunRequest(
                    info=info, start=start, length=length, settings=settings, seed=seed, pixel_scale=scale
                )
            )
    return requests


def _validation_requests(
    recipe: TrainingRecipe, folders: tuple[Path, ...], *, realisation: int = 0
) -> list[RunRequest]:
    d = recipe.data
    settings = SimulationSettings(
        dose_fraction=d.validation_dose, i0=VALIDATION_I0, sigma_e2=d.sigma_e2, filter=VALIDATION_FILTER
    )
    requests = []
    for index, info in enumerate(series_under(folders)):
        length = min(_validation_length(recipe), len(info.slices))
        for start in run_starts(n_slices=len(info.slices), runs=2, length=length):
            requests.append(
                RunRequest(
                    info=info,
                    start=start,
                    length=length,
                    settings=settings,
                    seed=1000 + index * 10 + start + REALISATION_SEED_STEP * realisation,
                )
            )
    return requests


def _real_pairs(recipe: TrainingRecipe) -> tuple[list[PairedSeries], list[PairedSeries]]:
    """The AAPM and TCIA pairs of a recipe, split into (train, validation) by patient."""
    d = recipe.data
    train: list[PairedSeries] = []
    validation: list[PairedSeries] = []
    sources = []
    if d.aapm_root:
        pairs = aapm_pairs(Path(d.aapm_root), thickness=d.aapm_thickness)
        sources.append(("aapm", d.aapm_root, pairs, d.aapm_validation_patients))
    if d.tcia_root:
        pairs = tcia_pairs(Path(d.tcia_root), full_text=d.tcia_full_dose, low_text=d.tcia_low_dose)
        sources.append(("tcia", d.tcia_root, pairs, d.tcia_validation_patients))
    for key, root, pairs, held_out in sources:
        known = [p.patient for p in pairs]
        missing = [name for name in held_out if name not in known]
        if missing:
            raise ConfigError(
                f"data.{key}_validation_patients names {missing[0]!r}, which is not a patient under "
                f"{root}; patients found: {', '.join(known)}"
            )
        train += [p for p in pairs if p.patient not in held_out]
        validation += [p for p in pairs if p.patient in held_out]
    return train, validation


def _real_provenance(pairs: list[PairedSeries], role: str, recipe: TrainingRecipe) -> list[dict[str, str]]:
    out = []
    for source, root in (
        (AAPM_PROVENANCE, recipe.data.aapm_root),
        (TCIA_PROVENANCE, recipe.data.tcia_root),
    ):
        if root and any(str(p.full_folder).startswith(str(Path(root))) for p in pairs):
            out.append({**source, "role": role})
    return out


def _runs_of_pairs(pairs: list[PairedSeries], *, slices: int, length: int) -> list[PairRun]:
    return [run for pair in pairs for run in runs_of(pair, slices=slices, run_length=length)]


def _validation_length(recipe: TrainingRecipe) -> int:
    return max(recipe.data.validation_slices_per_series // 2, 1)


def prepare_data(recipe: TrainingRecipe, *, progress: ProgressFactory = no_progress) -> PreparedData:
    """Simulate (or load from the cache) every run a recipe asks for, and read its real pairs.

    Raises
    ------
    ConfigError
        When the recipe yields no training or no validation pairs, or names data that is absent.
    SeriesError
        When a real low-/full-dose pair is incomplete or its two series differ in geometry.
    """
    root = Path(recipe.data.shared_root)
    real_train, real_validation = _real_pairs(recipe)
    train_runs: list[PairRun] = []
    provenance: list[dict[str, str]] = []
    if recipe.data.train_sets:
        train_sets = load_sets(shared_root=root, names=recipe.data.train_sets, role="train")
        train_folders = tuple(f for s in train_sets for f in s.folders)
        train_runs = build_runs(
            _train_requests(recipe, train_folders),
            cache_dir=Path(recipe.data.cache_dir),
            device=_simulation_device(recipe),
            progress=progress,
            description="simulate train pairs",
        )
        provenance += [s.provenance() for s in train_sets]
    train_runs += _runs_of_pairs(real_train, slices=recipe.data.slices_per_series, length=TRAIN_RUN_LENGTH)
    provenance += _real_provenance(real_train, "train", recipe)
    validation = prepare_validation(recipe, progress=progress, real=real_validation)
    if not train_runs:
        raise ConfigError("the recipe yields no training pairs: every real patient is a validation patient")
    return PreparedData(
        train_runs=train_runs,
        validation_runs=validation.runs,
        provenance=provenance + validation.provenance,
        series_names=validation.series_names,
    )


def _set_of(path: Path, sets: list[DataSet]) -> str:
    for data_set in sets:
        if any(folder == path or folder in path.parents for folder in data_set.folders):
            return data_set.name
    return path.parent.name


@dataclass(frozen=True)
class ValidationData:
    """The validation pair runs, where they came from, and a readable name per series UID."""

    runs: list[PairRun]
    provenance: list[dict[str, str]]
    series_names: dict[str, str]


def _simulation_device(recipe: TrainingRecipe) -> str:
    return "cuda" if recipe.train.device.startswith("cuda") else "cpu"


def prepare_validation(
    recipe: TrainingRecipe,
    *,
    progress: ProgressFactory = no_progress,
    real: list[PairedSeries] | None = None,
    realisation: int = 0,
) -> ValidationData:
    """The validation runs alone (what ``benchmarks/quality.py`` scores), same protocol as training.

    ``realisation`` > 0 gives the same runs with independent noise (other seeds), for measuring the
    noise texture of a denoiser from two realisations; real low-dose pairs have only one, so they
    are left out then.
    """
    if realisation:
        real = []
    elif real is None:
        real = _real_pairs(recipe)[1]
    sets = load_sets(
        shared_root=Path(recipe.data.shared_root), names=recipe.data.validation_sets, role="validation"
    )
    # One call over all folders: the seeds (and so the cache keys) depend on the series order.
    requests = _validation_requests(
        recipe, tuple(f for s in sets for f in s.folders), realisation=realisation
    )
    names = {r.info.series_uid: _set_of(r.info.slices[0].path, sets) for r in requests}
    runs = build_runs(
        requests,
        cache_dir=Path(recipe.data.cache_dir),
        device=_simulation_device(recipe),
        progress=progress,
        description="simulate validation pairs",
    )
    runs += _runs_of_pairs(
        real, slices=recipe.data.validation_slices_per_series, length=_validation_length(recipe)
    )
    names.update({p.low.series_uid: p.patient for p in real})
    if not runs:
        raise ConfigError(
            "the recipe yields no validation pairs; name data.validation_sets or real validation "
            "patients (data.aapm_validation_patients, data.tcia_validation_patients)"
        )
    provenance = [s.provenance() for s in sets] + _real_provenance(real, "validation", recipe)
    return ValidationData(runs=runs, provenance=provenance, series_names=names)
