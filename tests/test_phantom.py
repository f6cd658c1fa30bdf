"""torso_phantom: shape, materials in HU, and sizes that scale with the pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from meddenoise.phantom import torso_phantom

MATERIALS = {-1000.0, -850.0, -100.0, 40.0, 60.0, 180.0, 700.0, 1200.0}


def test_shape_dtype_and_materials() -> None:
    volume = torso_phantom(size=96, slices=4, pixel_mm=4.0, seed=1)
    assert volume.shape == (4, 96, 96) and volume.dtype == np.float32
    values = set(np.unique(volume).tolist())
    assert values >= MATERIALS  # every textbook material appears
    lesions = values - MATERIALS
    assert lesions and all(70.0 <= v <= 80.0 for v in lesions)  # liver + 10..20 HU
    assert volume[:, 0, 0].tolist() == [-1000.0] * 4  # air in the corners


def test_anatomy_changes_along_z_and_keeps_its_size_in_mm() -> None:
    volume = torso_phantom(size=64, slices=5, pixel_mm=6.0)
    lung = (volume == -850.0).sum(axis=(1, 2))
    assert lung[0] > lung[-1] > 0  # lungs shrink towards the bottom
    fine = torso_phantom(size=128, slices=1, pixel_mm=3.0)
    body_fraction = [(v[0] > -1000).mean() for v in (volume, fine)]
    assert body_fraction[0] == pytest.approx(body_fraction[1], rel=0.05)


def test_same_seed_same_phantom_and_bad_sizes_are_refused() -> None:
    np.testing.assert_array_equal(
        torso_phantom(size=32, slices=1, seed=3), torso_phantom(size=32, slices=1, seed=3)
    )
    with pytest.raises(ValueError, match="size >= 32"):
        torso_phantom(size=16)
    with pytest.raises(ValueError, match="slices >= 1"):
        torso_phantom(slices=0)
