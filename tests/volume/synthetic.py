"""Synthetic CT volumes with awkward geometry, for the volume tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meddenoise.volume.image import CTVolume

SPACING_MM = (2.5, 0.7, 0.8)
"""Anisotropic, numpy order (slice, row, column)."""

ORIGIN_MM = (-120.5, 33.25, 1002.125)


def rotation() -> tuple[float, ...]:
    """A proper rotation, 30° about z then 10° about x, row-major (not the identity)."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    about_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return tuple(float(v) for v in (about_z @ about_x).ravel())


def phantom_hu(shape: tuple[int, int, int] = (4, 24, 20), *, seed: int = 0) -> npt.NDArray[np.float32]:
    """Air around a water-like body with a bone rod and noise: plainly HU."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    rows, cols = np.mgrid[: shape[1], : shape[2]]
    body = ((rows - shape[1] / 2) / (shape[1] / 3)) ** 2 + ((cols - shape[2] / 2) / (shape[2] / 3)) ** 2 < 1
    hu[:, body] = 40.0
    hu[:, shape[1] // 2, shape[2] // 2] = 1200.0
    return (hu + rng.normal(0.0, 10.0, shape)).astype(np.float32)


def ct_volume(
    hu: npt.NDArray[np.float32] | None = None, *, pixel_id: str = "int16", source: Path | None = None
) -> CTVolume:
    """A CTVolume with anisotropic spacing, a non-zero origin and a rotated direction."""
    return CTVolume(
        hu=phantom_hu() if hu is None else hu,
        spacing_mm=SPACING_MM,
        origin_mm=ORIGIN_MM,
        direction=rotation(),  # type: ignore[arg-type]
        source=source,
        pixel_id=pixel_id,
    )
