"""PatchSampler: shapes, 2.5D context, and augmentations that keep input and target aligned."""

from __future__ import annotations

import numpy as np
import pytest

from meddenoise.training.pairs import PairRun
from meddenoise.training.patches import PatchSampler
from meddenoise.windowing import NetworkRange

UNIT = NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, scale_hu=1000.0)
STEP_HU = 100  # slice z holds base + 100 z, so neighbours differ by a known constant


def _run(*, depth: int, size: int, seed: int = 0, low_equals_full: bool = True) -> PairRun:
    rng = np.random.default_rng(seed)
    base = rng.integers(-900, 900, size=(size, size))
    full = np.stack([base + STEP_HU * z for z in range(depth)]).astype(np.int16)
    low = full.copy() if low_equals_full else (full + 7).astype(np.int16)
    return PairRun(full_hu=full, low_hu=low, pixel_mm=(1.0, 1.0), dose_fraction=0.25, series_uid="1.2.3")


def _sampler(runs: list[PairRun], *, patch: int, context: int, seed: int = 0) -> PatchSampler:
    return PatchSampler(
        runs, patch_size=patch, context=context, network_range=UNIT, body_threshold_hu=-500.0, seed=seed
    )


@pytest.mark.parametrize("context", [1, 3, 5])
def test_shapes_and_units(context: int) -> None:
    batch = _sampler([_run(depth=4, size=48)], patch=32, context=context).batch(6)
    assert batch.inputs.shape == (6, context, 32, 32) and batch.targets.shape == (6, 1, 32, 32)
    assert batch.inputs.dtype == batch.targets.dtype == np.float32
    assert batch.inputs.flags.c_contiguous and batch.targets.flags.c_contiguous
    assert np.abs(batch.targets).max() <= 3.071  # network units, not HU


def test_augmentation_keeps_input_and_target_aligned_and_neighbours_in_register() -> None:
    batch = _sampler([_run(depth=5, size=64)], patch=32, context=3, seed=1).batch(64)
    step = STEP_HU / UNIT.scale_hu
    for inputs, target in zip(batch.inputs, batch.targets, strict=True):
        np.testing.assert_array_equal(inputs[1], target[0])  # the centre channel is the target slice
        for neighbour in (inputs[0], inputs[2]):
            difference = neighbour - inputs[1]
            # A constant offset over the patch: the neighbour was flipped/rotated exactly like the centre.
            np.testing.assert_allclose(difference, difference.flat[0], atol=1e-5)
            assert min(abs(difference.flat[0] - k * step) for k in (-1, 0, 1)) < 1e-5


def test_augmentation_draws_all_eight_flips_and_rotations_of_the_slice() -> None:
    run = _run(depth=1, size=32)
    sampler = _sampler([run], patch=32, context=1, seed=2)  # the patch is the whole slice
    slice_unit = UNIT.to_unit(run.full_hu[0].astype(np.float32))
    dihedral = [np.rot90(slice_unit, k) for k in range(4)] + [
        np.rot90(slice_unit, k)[:, ::-1] for k in range(4)
    ]
    seen = set()
    for target in sampler.batch(80).targets:
        matches = [i for i, d in enumerate(dihedral) if np.array_equal(target[0], d)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_the_input_is_the_low_dose_and_the_target_the_full_dose() -> None:
    run = _run(depth=2, size=40, low_equals_full=False)
    batch = _sampler([run], patch=32, context=1, seed=3).batch(8)
    np.testing.assert_allclose(batch.inputs - batch.targets, 7 / UNIT.scale_hu, atol=1e-6)


def test_runs_smaller_than_the_patch_are_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the patch size 64"):
        _sampler([_run(depth=2, size=48)], patch=64, context=1)
    with pytest.raises(ValueError, match="at least one pair run"):
        _sampler([], patch=32, context=1)
