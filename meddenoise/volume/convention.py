"""The intensity convention of a volume file: HU is assumed, and a volume that is not HU is refused.

Researchers' volumes carry no RescaleSlope/Intercept. A file may hold HU (most NIfTI from
dcm2niix, nnU-Net, TotalSegmentator), raw stored values (HU + 1024, or HU + 1000 as in the FDA LCD
phantom), or values normalised to 0..1. The user declares the mapping, and this module applies it,
``hu = value × hu_scale + hu_offset``, in one place, then checks that the result looks like HU.

What "looks like HU" means (robust statistics on at most about a million voxels):

- *normalised*: every value lies within -1..1 (no CT in HU does: air is -1000);
- *raw stored values*: nothing near air (the 1st percentile is above RAW_LOW_PERCENTILE_MIN_HU),
  the 99.9th percentile is at most 4095 (12-bit stored range), and at least RAW_DENSE_FRACTION of
  the voxels are ≥ 500, i.e. soft tissue stored near 1000 (HU volumes cropped inside the body
  have no air, but then hardly any voxels are denser than 500 HU).

A volume with non-finite values is refused as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meddenoise.errors import SeriesError

RAW_LOW_PERCENTILE_MIN_HU = -300.0
"""A 1st percentile above this means no air, lung or fat: a hint at values with no offset applied."""

RAW_MAX_STORED = 4095.0
"""The 12-bit range of stored CT values."""

RAW_DENSE_FRACTION = 0.25
"""Fraction of voxels ≥ 500 that, with no air, marks stored values (tissue near 1000)."""


@dataclass(frozen=True)
class HUConvention:
    """A volume file's declared intensity convention: ``hu = value × scale + offset``.

    The default is HU as stored. The CLI flags are ``--hu-offset`` and ``--hu-scale``.
    """

    offset: float = 0.0
    scale: float = 1.0


HU_AS_STORED = HUConvention()
"""The default convention: the file holds HU."""


_SAMPLE_SIZE = 1_000_000
_ADVICE_RAW = (
    "declare --hu-offset -1024 (or -1000; and --hu-scale if the slope is not 1), hu = value × scale + offset"
)
_ADVICE_UNIT = "declare --hu-scale and --hu-offset so that hu = value × scale + offset"


def stored_to_hu(
    values: npt.NDArray[np.float32], *, hu_offset: float = 0.0, hu_scale: float = 1.0
) -> npt.NDArray[np.float32]:
    """Apply the declared convention, ``hu = values × hu_scale + hu_offset``, in float32.

    Raises
    ------
    ValueError
        When ``hu_scale`` is zero or either number is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> stored_to_hu(np.array([0.0, 1024.0], np.float32), hu_offset=-1024.0)
    array([-1024.,     0.], dtype=float32)
    """
    if not (np.isfinite(hu_scale) and np.isfinite(hu_offset)) or hu_scale == 0:
        raise ValueError(f"hu_scale must be finite and non-zero, hu_offset finite: {hu_scale}, {hu_offset}")
    if hu_scale == 1.0 and hu_offset == 0.0:
        return values
    result = values.astype(np.float64) * hu_scale + hu_offset
    return result.astype(np.float32)


MAX_CT_HU = 32767
"""No CT stores HU beyond 16-bit signed values (-32768..32767); anything larger was misread or
mis-scaled."""


NON_FINITE_PROBLEM = "contains NaN or infinite values; a CT volume in HU has none"


def hu_convention_problem(hu: npt.NDArray[np.floating]) -> str | None:
    """Why ``hu`` does not look like Hounsfield units (with advice), or None when it does."""
    if not np.all(np.isfinite(hu)):
        return NON_FINITE_PROBLEM
    low, high = float(np.min(hu)), float(np.max(hu))
    if high > MAX_CT_HU or low < -MAX_CT_HU - 1:
        return f"values span {low:.3g}..{high:.3g}, beyond any CT HU (|HU| <= {MAX_CT_HU}); {_ADVICE_UNIT}"
    if low >= -1.0 and high <= 1.0:
        span = "0..1" if low > -0.1 else "-1..1"
        return f"values lie within {low:.3g}..{high:.3g}: looks normalised to {span}, not HU; {_ADVICE_UNIT}"
    flat = hu.reshape(-1)
    sample = flat[:: max(1, flat.size // _SAMPLE_SIZE)]
    p1, median, p999 = (float(v) for v in np.percentile(sample, [1.0, 50.0, 99.9]))
    dense = float(np.mean(sample >= 500.0))
    if p1 > RAW_LOW_PERCENTILE_MIN_HU and p999 <= RAW_MAX_STORED and dense >= RAW_DENSE_FRACTION:
        return (
            f"looks like raw stored values 0..4095, not HU (1st percentile {p1:.0f}, median {median:.0f}, "
            f"99.9th percentile {p999:.0f}; nothing near air at -1000 HU); {_ADVICE_RAW}"
        )
    return None


def check_hu_convention(hu: npt.NDArray[np.floating], *, name: str) -> None:
    """Refuse a volume that does not look like HU.

    Raises
    ------
    SeriesError
        One line: ``name``, what the values look like, and how to declare offset and scale.

    Examples
    --------
    >>> import numpy as np
    >>> check_hu_convention(np.array([-1000.0, 0.0, 40.0], np.float32), name="ct.nii.gz")
    """
    problem = hu_convention_problem(hu)
    if problem is not None:
        raise SeriesError(f"{name}: {problem}")
