"""CTVolume and pair_volumes: same grid pairs, any difference is named in one line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from meddenoise.errors import SeriesError
from meddenoise.volume.image import CTVolume, pair_volumes
from tests.volume.synthetic import ct_volume, phantom_hu


def test_same_grid_pairs() -> None:
    reference = ct_volume(source=Path("reference.mha"))
    denoised = replace(reference, hu=reference.hu * 0.5, source=Path("denoised.mha"))
    pair = pair_volumes(denoised=denoised, reference=reference)
    assert pair.denoised is denoised
    assert pair.spacing_mm == reference.spacing_mm


def test_differences_within_tolerance_pair() -> None:
    reference = ct_volume()
    nudged = replace(
        reference,
        spacing_mm=tuple(v + 5e-5 for v in reference.spacing_mm),  # type: ignore[arg-type]
        origin_mm=tuple(v + 5e-4 for v in reference.origin_mm),  # type: ignore[arg-type]
        direction=tuple(v + 5e-7 for v in reference.direction),  # type: ignore[arg-type]
    )
    pair_volumes(denoised=nudged, reference=reference)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hu": phantom_hu((3, 24, 20))}, r"shape \(3, 24, 20\) vs \(4, 24, 20\)"),
        ({"spacing_mm": (2.5, 0.7, 0.8002)}, r"spacing \(2\.5, 0\.7, 0\.8002\) vs \(2\.5, 0\.7, 0\.8\) mm"),
        ({"origin_mm": (-120.5, 33.25, 1002.127)}, r"origin \(-120\.5, 33\.25, 1002\.13\) vs"),
        (
            {"direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
            r"direction \(1, 0, 0, 0, 1, 0, 0, 0, 1\) vs",
        ),
    ],
)
def test_each_difference_is_refused_by_name(change: dict[str, object], expected: str) -> None:
    reference = ct_volume(source=Path("reference.mha"))
    denoised = replace(reference, source=Path("denoised.nii.gz"), **change)  # type: ignore[arg-type]
    with pytest.raises(
        SeriesError, match=r"^denoised\.nii\.gz and reference\.mha are not on the same grid: " + expected
    ):
        pair_volumes(denoised=denoised, reference=reference)


def test_all_differences_are_named_at_once() -> None:
    reference = ct_volume()
    other = replace(reference, spacing_mm=(3.0, 0.7, 0.8), origin_mm=(0.0, 0.0, 0.0))
    with pytest.raises(SeriesError, match=r"spacing .*; origin ") as caught:
        pair_volumes(denoised=other, reference=reference)
    assert "\n" not in str(caught.value)


def test_volume_refuses_what_is_not_a_3d_float32_volume() -> None:
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="3D float32"):
        CTVolume(np.zeros((2, 3, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), identity)
    with pytest.raises(ValueError, match="spacing must be positive"):
        CTVolume(np.zeros((2, 3, 4), np.float32), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0), identity)
