"""The validation pairs: a second realisation has the same slices and independent noise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from meddenoise.training import load_recipe
from meddenoise.training.data import prepare_validation
from tests.conftest import REPO_ROOT, require_shared


def test_a_second_realisation_repeats_the_slices_with_independent_noise(tmp_path: Path) -> None:
    shared = require_shared("manifest.json").parent
    recipe = load_recipe(REPO_ROOT / "configs" / "train_default.toml")
    data = dataclasses.replace(
        recipe.data,
        shared_root=str(shared),
        validation_sets=("pancreatic-ct-cbct-seg-001",),
        validation_slices_per_series=2,
        cache_dir=str(tmp_path / "cache"),
    )
    recipe = dataclasses.replace(recipe, data=data)
    first, second = (prepare_validation(recipe, realisation=r).runs for r in (0, 1))
    assert len(first) == len(second) == 2
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.full_hu, b.full_hu)
        noise_a = (a.low_hu.astype(np.float64) - a.full_hu)[:, 128:384, 128:384].ravel()
        noise_b = (b.low_hu.astype(np.float64) - b.full_hu)[:, 128:384, 128:384].ravel()
        assert abs(float(np.corrcoef(noise_a, noise_b)[0, 1])) < 0.05  # independent draws
        assert 0.8 < noise_a.std() / noise_b.std() < 1.25  # of the same noise level
    # Realisation 0 is what training validates on: its cache entries are not disturbed.
    again = prepare_validation(recipe).runs
    np.testing.assert_array_equal(again[0].low_hu, first[0].low_hu)
