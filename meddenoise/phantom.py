"""Digital torso phantoms in HU, so the demo and tests run without any patient data.

:func:`torso_phantom` is piecewise constant (exact materials, for tests); :func:`anatomical_phantom`
adds organ texture, vessels and soft edges, so what a denoiser gains on it resembles real anatomy.

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


TEXTURE_SD_HU = 12.0  # lumpy organ texture (real liver/muscle show SDs of a few to 15 HU over mm)
TEXTURE_MM = 2.0  # correlation length of the texture
VESSELS_PER_LUNG = 60
EDGE_BLUR_PX = 0.6  # the partial-volume softness of real edges


def anatomical_phantom(
    *, size: int = 256, slices: int = 8, pixel_mm: float = 1.5, seed: int = 0
) -> npt.NDArray[np.float32]:
    """:func:`torso_phantom` made to look like anatomy: lumpy organ texture, vessels in the lungs
    and liver that run through neighbouring slices, and edges softened by partial volume.

    A denoiser's gain on piecewise-constant shapes (flat organs with perfectly sharp edges) is not
    what it gains on patients; this is the phantom the demo scans.

    Examples
    --------
    >>> vol = anatomical_phantom(size=64, slices=2)
    >>> vol.shape, bool(vol.std() > 0)
    ((2, 64, 64), True)
    """
    from scipy import ndimage

    base = torso_phantom(size=size, slices=slices, pixel_mm=pixel_mm, seed=seed).astype(np.float64)
    rng = np.random.default_rng(seed + 1)
    soft = (base > -200.0) & (base < 300.0)
    texture_px = TEXTURE_MM / pixel_mm
    field = ndimage.gaussian_filter(rng.normal(size=base.shape), sigma=(0.7, texture_px, texture_px))
    field /= max(float(field.std()), 1e-9)
    out = base + np.where(soft, TEXTURE_SD_HU * field, 0.0)
    out = _add_vessels(out, base, pixel_mm=pixel_mm, rng=rng)
    out = ndimage.gaussian_filter(out, sigma=(0.0, EDGE_BLUR_PX, EDGE_BLUR_PX))
    return out.astype(np.float32)


def _add_vessels(
    out: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    *,
    pixel_mm: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Small round vessels (lung: -50 HU in -850 HU; liver: +70 HU over liver) drifting along z."""
    slices, size, _ = base.shape
    centre = (size - 1) / 2.0
    mm = (np.arange(size, dtype=np.float64) - centre) * pixel_mm
    yy, xx = np.meshgrid(mm, mm, indexing="ij")
    # (material the vessels run in, vessel HU, count): lung vessels in air-filled lung, contrast
    # filled portal vessels in the liver.
    targets = ((_MATERIAL_HU["lung"], -50.0, 2 * VESSELS_PER_LUNG), (_MATERIAL_HU["liver"], 130.0, 25))
    for material, value, count in targets:
        where = np.argwhere(base[slices // 2] == material)
        if not len(where):
            continue
        picks = where[rng.integers(len(where), size=count)]
        for row, col in picks:
            cy, cx = (row - centre) * pixel_mm, (col - centre) * pixel_mm
            radius = rng.uniform(0.8, 3.0)
            drift = rng.normal(0.0, 1.5, size=2)
            for z in range(slices):
                shift = (z - slices // 2) * drift
                disc = _ellipse(yy, xx, cy=cy + shift[0], cx=cx + shift[1], ry=radius, rx=radius)
                out[z][disc & (base[z] == material)] = value
    return out
