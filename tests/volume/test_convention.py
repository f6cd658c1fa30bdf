"""The HU convention check: HU passes, stored values and normalised values are refused with advice."""

from __future__ import annotations

import numpy as np
import pytest

from meddenoise.errors import SeriesError
from meddenoise.volume.convention import (
    HUConvention,
    check_hu_convention,
    hu_convention_problem,
    stored_to_hu,
)
from tests.volume.synthetic import phantom_hu


def test_hu_with_air_passes() -> None:
    assert hu_convention_problem(phantom_hu()) is None


def test_hu_cropped_inside_the_body_passes() -> None:
    """No air at all (a liver crop), but hardly anything denser than 500 HU: still HU."""
    rng = np.random.default_rng(1)
    crop = rng.normal(60.0, 20.0, (8, 32, 32)).astype(np.float32)
    crop[:, :4, :] = 700.0  # a rib
    assert hu_convention_problem(crop) is None


def test_padding_far_below_air_still_passes() -> None:
    hu = phantom_hu()
    hu[:, :3, :3] = -3024.0
    assert hu_convention_problem(hu) is None


@pytest.mark.parametrize("offset", [1024.0, 1000.0])
def test_stored_values_are_refused(offset: float) -> None:
    problem = hu_convention_problem(phantom_hu() + offset)
    assert problem is not None
    assert problem.startswith("looks like raw stored values 0..4095, not HU")
    assert "--hu-offset -1024" in problem


def test_stored_values_pass_once_the_offset_is_declared() -> None:
    stored = np.rint(phantom_hu() + 1024.0).astype(np.float32)
    assert hu_convention_problem(stored_to_hu(stored, hu_offset=-1024.0)) is None


@pytest.mark.parametrize(("low", "span"), [(0.0, "0..1"), (-1.0, "-1..1")])
def test_normalised_values_are_refused(low: float, span: str) -> None:
    unit = np.linspace(low, 1.0, 1000, dtype=np.float32).reshape(10, 10, 10)
    problem = hu_convention_problem(unit)
    assert problem is not None
    assert f"looks normalised to {span}, not HU; declare --hu-scale and --hu-offset" in problem


def test_non_finite_values_are_refused() -> None:
    hu = phantom_hu()
    hu[0, 0, 0] = np.nan
    with pytest.raises(SeriesError, match=r"^ct\.nii: contains NaN or infinite values"):
        check_hu_convention(hu, name="ct.nii")


def test_stored_to_hu_applies_scale_then_offset() -> None:
    values = np.array([0.0, 0.5, 1.0], np.float32)
    np.testing.assert_array_equal(
        stored_to_hu(values, hu_scale=4096.0, hu_offset=-1024.0), np.array([-1024.0, 1024.0, 3072.0])
    )
    with pytest.raises(ValueError, match="hu_scale must be finite and non-zero"):
        stored_to_hu(values, hu_scale=0.0)


def test_a_declared_convention_reads_the_phantom_values_as_hu() -> None:
    convention = HUConvention(offset=-1000.0)
    stored = np.array([0.0, 1000.0, 1014.0], np.float32)
    hu = stored_to_hu(stored, hu_offset=convention.offset, hu_scale=convention.scale)
    np.testing.assert_array_equal(hu, [-1000.0, 0.0, 14.0])
