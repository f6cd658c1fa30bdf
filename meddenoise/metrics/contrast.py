"""Contrast-to-noise ratio (CNR) of low-contrast objects.

``CNR = |mean_signal − mean_background| / SD_background`` with the signal in a mask over the object
and the background in an annulus around it. Over several noise realisations of one phantom,
:func:`cnr_over_realisations` reports both the mean of the per-image CNRs and the ensemble CNR
``|⟨contrast⟩| / ⟨SD_background⟩``, which the absolute value does not bias upwards when the object
is barely visible. :func:`find_inserts` locates inserts in a noise-free ground-truth image.

Numpy and scipy only; this module never imports torch or monai.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from meddenoise.metrics.noise import as_volume

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CNRResult:
    """CNR of one object in one image; ``contrast_hu`` is signed (signal minus background)."""

    cnr: float
    contrast_hu: float
    signal_mean_hu: float
    background_mean_hu: float
    background_sd_hu: float
    n_signal: int
    n_background: int

    @property
    def protocol(self) -> str:
        """How the CNR was measured."""
        return (
            f"|mean(signal) - mean(background)| / SD(background, ddof=1); "
            f"{self.n_signal} signal px, {self.n_background} background px"
        )

    def describe(self) -> str:
        """One line: the CNR, its parts and the protocol."""
        return f"CNR {self.cnr:.3f} (contrast {self.contrast_hu:+.2f} HU; {self.protocol})"


def _check_mask(mask: npt.ArrayLike, shape: tuple[int, ...], name: str) -> Mask:
    array = np.asarray(mask, dtype=bool)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}; the image has shape {shape}")
    if array.sum() < 2:
        raise ValueError(f"{name} covers fewer than 2 pixels")
    return array


def cnr(*, hu: npt.ArrayLike, signal_mask: npt.ArrayLike, background_mask: npt.ArrayLike) -> CNRResult:
    """CNR of the object under ``signal_mask`` against ``background_mask`` in a 2D HU image.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(0.0, 10.0, (64, 64)); img[28:36, 28:36] += 10.0
    >>> sig = annulus_mask(shape=img.shape, center_rc=(31.5, 31.5), inner_px=0, outer_px=3.5)
    >>> bg = annulus_mask(shape=img.shape, center_rc=(31.5, 31.5), inner_px=10, outer_px=20)
    >>> 0.5 < cnr(hu=img, signal_mask=sig, background_mask=bg).cnr < 1.5
    True
    """
    image = np.asarray(hu, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"cnr needs a 2D image; got shape {image.shape}")
    signal = _check_mask(signal_mask, image.shape, "signal_mask")
    background = _check_mask(background_mask, image.shape, "background_mask")
    if (signal & background).any():
        raise ValueError("signal_mask and background_mask overlap")
    s_mean = float(image[signal].mean())
    b_mean = float(image[background].mean())
    b_sd = float(image[background].std(ddof=1))
    if b_sd == 0.0:
        raise ValueError("the background has zero SD: CNR is undefined on noise-free images")
    return CNRResult(
        cnr=abs(s_mean - b_mean) / b_sd,
        contrast_hu=s_mean - b_mean,
        signal_mean_hu=s_mean,
        background_mean_hu=b_mean,
        background_sd_hu=b_sd,
        n_signal=int(signal.sum()),
        n_background=int(background.sum()),
    )


@dataclass(frozen=True)
class CNREnsemble:
    """CNR of one object over noise realisations.

    ``mean_cnr`` ± ``sem_cnr`` is the mean (and standard error) of the per-image CNRs;
    ``ensemble_cnr`` is ``|mean contrast| / mean background SD``.
    """

    per_image: tuple[CNRResult, ...]
    mean_cnr: float
    sem_cnr: float
    ensemble_cnr: float
    mean_contrast_hu: float
    mean_background_sd_hu: float

    def describe(self) -> str:
        """One line: both CNR summaries and the protocol."""
        return (
            f"CNR {self.mean_cnr:.3f} ± {self.sem_cnr:.3f} (mean ± SEM over {len(self.per_image)} "
            f"images), ensemble {self.ensemble_cnr:.3f}; {self.per_image[0].protocol}"
        )


def cnr_over_realisations(
    *, images: npt.ArrayLike, signal_mask: npt.ArrayLike, background_mask: npt.ArrayLike
) -> CNREnsemble:
    """CNR of one object in each image of an (n, rows, cols) stack of realisations, and summaries."""
    stack = as_volume(images)
    results = tuple(
        cnr(hu=image, signal_mask=signal_mask, background_mask=background_mask) for image in stack
    )
    values = np.array([r.cnr for r in results])
    sem = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    contrast = float(np.mean([r.contrast_hu for r in results]))
    sd = float(np.mean([r.background_sd_hu for r in results]))
    return CNREnsemble(results, float(values.mean()), sem, abs(contrast) / sd, contrast, sd)


def annulus_mask(
    *, shape: tuple[int, ...], center_rc: tuple[float, float], inner_px: float, outer_px: float
) -> Mask:
    """Pixels whose centre lies ``inner_px`` to ``outer_px`` from ``center_rc`` (a disc for inner 0)."""
    if not 0 <= inner_px < outer_px:
        raise ValueError(f"need 0 <= inner_px < outer_px; got {inner_px} and {outer_px}")
    rows, cols = np.ogrid[0 : shape[0], 0 : shape[1]]
    distance = np.hypot(rows - center_rc[0], cols - center_rc[1])
    return (distance >= inner_px) & (distance <= outer_px)


@dataclass(frozen=True, eq=False)
class Insert:
    """A low-contrast insert found in a ground-truth image; ``mask`` is its (rows, cols) footprint."""

    mask: Mask
    center_rc: tuple[float, float]
    radius_px: float
    contrast_hu: float


def find_inserts(
    *, truth: npt.ArrayLike, background_hu: float, threshold_hu: float = 0.5, min_pixels: int = 4
) -> tuple[Insert, ...]:
    """Inserts in a noise-free image: connected regions that differ from ``background_hu`` by more
    than ``threshold_hu`` and lie inside the background (not touching air or the border).

    ``contrast_hu`` is the region's mean nominal contrast; ``radius_px`` the radius of a disc of the
    same area. Sorted by contrast magnitude, largest first.
    """
    image = np.asarray(truth, dtype=np.float64)
    background = np.abs(image - background_hu) <= threshold_hu
    candidates = ~background
    labels, count = ndimage.label(candidates)
    # the region that touches the image border is the outside (air, body edge): not an insert
    border_labels = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    found = []
    for label in range(1, count + 1):
        mask = labels == label
        if label in border_labels or mask.sum() < min_pixels:
            continue
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        if not background[ring].all():
            continue
        center = ndimage.center_of_mass(mask)
        found.append(
            Insert(
                mask=mask,
                center_rc=(float(center[0]), float(center[1])),
                radius_px=float(np.sqrt(mask.sum() / np.pi)),
                contrast_hu=float(image[mask].mean() - background_hu),
            )
        )
    logger.debug("found %d inserts against background %g HU", len(found), background_hu)
    return tuple(sorted(found, key=lambda ins: -abs(ins.contrast_hu)))
