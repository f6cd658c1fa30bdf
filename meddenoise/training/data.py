"""Turn a recipe's data section into simulated training and validation pair runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.simulate import SimulationSettings
from meddenoise.simulate.fbp import FilterName, check_filter
from meddenoise.training.config import TrainingRecipe
from meddenoise.training.manifest import load_sets
from meddenoise.training.pairs import PairRun, RunRequest, build_runs, run_starts, series_under

TRAIN_RUN_LENGTH = 8
VALIDATION_I0 = 1.5e5  # EVALUATION.md's typical full-dose photons per ray
VALIDATION_FILTER: FilterName = "hann"


@dataclass(frozen=True)
class PreparedData:
    """Pair runs for training and validation, and the provenance of the sets they came from."""

    train_runs: list[PairRun]
    validation_runs: list[PairRun]
    provenance: list[dict[str, str]]


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
            requests.append(
                RunRequest(
                    info=info, start=start, length=length, settings=settings, seed=int(rng.integers(2**31))
                )
            )
    return requests


def _validation_requests(recipe: TrainingRecipe, folders: tuple[Path, ...]) -> list[RunRequest]:
    d = recipe.data
    settings = SimulationSettings(
        dose_fraction=d.validation_dose, i0=VALIDATION_I0, sigma_e2=d.sigma_e2, filter=VALIDATION_FILTER
    )
    requests = []
    for index, info in enumerate(series_under(folders)):
        length = min(max(d.validation_slices_per_series // 2, 1), len(info.slices))
        for start in run_starts(n_slices=len(info.slices), runs=2, length=length):
            requests.append(
                RunRequest(
                    info=info, start=start, length=length, settings=settings, seed=1000 + index * 10 + start
                )
            )
    return requests


def prepare_data(recipe: TrainingRecipe, *, progress: ProgressFactory = no_progress) -> PreparedData:
    """Simulate (or load from the cache) every run a recipe asks for."""
    root = Path(recipe.data.shared_root)
    cache = Path(recipe.data.cache_dir)
    train_sets = load_sets(shared_root=root, names=recipe.data.train_sets, role="train")
    validation_sets = load_sets(shared_root=root, names=recipe.data.validation_sets, role="validation")
    train_folders = tuple(f for s in train_sets for f in s.folders)
    validation_folders = tuple(f for s in validation_sets for f in s.folders)
    device = "cuda" if recipe.train.device.startswith("cuda") else "cpu"
    train_runs = build_runs(
        _train_requests(recipe, train_folders),
        cache_dir=cache,
        device=device,
        progress=progress,
        description="simulate train pairs",
    )
    validation_runs = build_runs(
        _validation_requests(recipe, validation_folders),
        cache_dir=cache,
        device=device,
        progress=progress,
        description="simulate validation pairs",
    )
    provenance = [s.provenance() for s in (*train_sets, *validation_sets)]
    return PreparedData(train_runs=train_runs, validation_runs=validation_runs, provenance=provenance)
