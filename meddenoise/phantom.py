"""A digital torso phantom in HU, so the demo and tests run without any patient data.

The materials use textbook CT numbers (air -1000, lung -850, fat -100, water 0, muscle 40,
liver 60, contrast-filled vessels 180, bone 700, cortical bone 1200). Low-contrast lesions
(+10 to +20 HU in liver) give the denoiser something to keep.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MATERIAL_HU = {
    "air": -1000.0,
    "lung": -850.0,
    "fat": -100.0,
    "muscle": 40.0,
    "liver": 60.0,
    "vessel": 180.0,
    "bone": 700.0,
    "cortex": 1200.0,
}


def _ellipse(
    yy: npt.NDArray[np.float64], xx: npt.NDArray[np.float64], *, cy: float, cx: float, ry: float, rx: float
) -> npt.NDArray[np.bool_]:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def torso_phantom(
    *, size: int = 256, slices: int = 8, pixel_mm: float = 1.5, seed: int = 0
) -> npt.NDArray[np.float32]:
    """A noise-free torso phantom shaped (slices, size, size) in HU.

    Anatomy changes slowly along z (organs grow and shrink), so 2.5D context is realistic.
    ``pixel_mm`` scales the anatomy so the body is about 330 × 240 mm whatever ``size`` is.

    Examples
    --------
    >>> vol = torso_phantom(size=64, slices=2)
    >>> vol.shape, float(vol.min())
    ((2, 64, 64), -1000.0)
    """
    if size < 32 or slices < 1:
        raise ValueError(f"torso_phantom needs size >= 32 and slices >= 1, got size={size}, slices={slices}")
    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    mm = np.arange(size, dtype=np.float64) - centre
    yy, xx = np.meshgrid(mm * pixel_mm, mm * pixel_mm, indexing="ij")
    lesions = [
        (rng.uniform(-40, 10), rng.uniform(-95, -45), rng.uniform(4, 9), rng.uniform(10, 20))
        for _ in range(3)
    ]
    volume = np.empty((slices, size, size), dtype=np.float32)
    for z in range(slices):
        t = z / max(slices - 1, 1)  # 0 at the top slice, 1 at the bottom
        img = np.full((size, size), _MATERIAL_HU["air"])
        img[_ellipse(yy, xx, cy=0, cx=0, ry=120, rx=165)] = _MATERIAL_HU["fat"]
        img[_ellipse(yy, xx, cy=0, cx=0, ry=108, rx=152)] = _MATERIAL_HU["muscle"]
        lung_r = 55 * (1 - t) + 15
        for side in (-1, 1):
            img[_ellipse(yy, xx, cy=-15, cx=side * 70, ry=lung_r * 1.1, rx=lung_r * 0.8)] = _MATERIAL_HU[
                "lung"
            ]
        liver_r = 30 + 35 * t
        img[_ellipse(yy, xx, cy=-5, cx=-70, ry=liver_r, rx=liver_r * 1.1)] = _MATERIAL_HU["liver"]
        for cy, cx, r, contrast in lesions:
            img[_ellipse(yy, xx, cy=cy, cx=cx, ry=r, rx=r) & (img == _MATERIAL_HU["liver"])] += contrast
        img[_ellipse(yy, xx, cy=20, cx=15, ry=11, rx=11)] = _MATERIAL_HU["vessel"]  # aorta
        img[_ellipse(yy, xx, cy=15, cx=-20, ry=9, rx=12)] = _MATERIAL_HU["vessel"]  # vena cava
        img[_ellipse(yy, xx, cy=70, cx=0, ry=22, rx=20)] = _MATERIAL_HU["cortex"]  # vertebral body
        img[_ellipse(yy, xx, cy=70, cx=0, ry=17, rx=15)] = _MATERIAL_HU["bone"]
        img[_ellipse(yy, xx, cy=45, cx=0, ry=9, rx=8)] = _MATERIAL_HU["fat"]  # spinal canal
        for side in (-1, 1):  # ribs
            img[_ellipse(yy, xx, cy=40, cx=side * 130, ry=6, rx=6)] = _MATERIAL_HU["cortex"]
            img[_ellipse(yy, xx, cy=-70, cx=side * 110, ry=6, rx=6)] = _MATERIAL_HU["cortex"]
        volume[z] = img
    return volume
