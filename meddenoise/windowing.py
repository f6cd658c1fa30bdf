"""HU ranges: the network's input range, and the named display/metric windows.

The two are different types on purpose (ARCHITECTURE.md rule 3). A ``NetworkRange`` belongs to a
checkpoint and is wide, so it never clips anatomy away. A ``DisplayWindow`` (abdomen, lung, ...)
is used only to compute metrics and draw figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
BELOW_RANGE_MARGIN_HU = 500.0  # air noise below the range edge stays well inside this even at 10 % dose

NOISE_MAP_SCALE_HU = 100.0  # a noise-level map holds SD / this: 0.05-1 for 5-100 HU, like the image units


def noise_map_unit(sd_hu: FloatArray | float) -> npt.NDArray[np.float32]:
    """Noise SD in HU → the value a noise-conditioned network's noise-level channel holds.

    Examples
    --------
    >>> float(noise_map_unit(25.0))
    0.25
    """
    return (np.asarray(sd_hu, dtype=np.float32) / np.float32(NOISE_MAP_SCALE_HU)).astype(np.float32)


WindowName = Literal["abdomen", "lung", "bone", "brain", "full", "chest-ldct", "abdomen-ldct", "head-ldct"]


@dataclass(frozen=True)
class NetworkRange:
    """How HU become network units: ``unit = (clip(hu, lower_hu, upper_hu) - offset_hu) / scale_hu``.

    Examples
    --------
    >>> r = NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, offset_hu=0.0, scale_hu=1000.0)
    >>> float(r.to_unit(np.array([1000.0]))[0])
    1.0
    """

    lower_hu: float = -1024.0
    upper_hu: float = 3071.0
    offset_hu: float = 0.0
    scale_hu: float = 1000.0

    def __post_init__(self) -> None:
        if not self.lower_hu < self.upper_hu:
            raise ValueError(f"NetworkRange needs lower_hu < upper_hu, got {self.lower_hu}..{self.upper_hu}")
        if self.scale_hu <= 0:
            raise ValueError(f"NetworkRange needs scale_hu > 0, got {self.scale_hu}")

    def to_unit(self, hu: FloatArray) -> npt.NDArray[np.float32]:
        """HU → network units (clipped to the range)."""
        clipped = np.clip(hu, self.lower_hu, self.upper_hu)
        return ((clipped - self.offset_hu) / self.scale_hu).astype(np.float32)

    def to_hu(self, unit: FloatArray) -> npt.NDArray[np.float32]:
        """Network units → HU (the exact inverse of ``to_unit`` inside the range)."""
        return (np.asarray(unit, dtype=np.float32) * self.scale_hu + self.offset_hu).astype(np.float32)

    def passes_through(self, hu: FloatArray) -> npt.NDArray[np.bool_]:
        """Where a denoiser keeps the input HU: above the range (metal), or far below it (padding).

        Air sits at about -1000 HU, so at low dose a third of its pixels fall below a -1024 HU
        lower edge by noise alone; they are air, not padding, and are denoised. Only values more
        than :data:`BELOW_RANGE_MARGIN_HU` below the edge (-2048, -3024 padding) are kept.
        """
        return (hu < self.lower_hu - BELOW_RANGE_MARGIN_HU) | (hu > self.upper_hu)


@dataclass(frozen=True)
class DisplayWindow:
    """A named display/metric window given by centre and width in HU.

    ``unit`` maps the window to [0, 1] (used by the LDCT-Bench "anatomy" protocols);
    ``clip_hu`` keeps HU and clips (used by the abdomen and full protocols).
    """

    name: str
    center_hu: float
    width_hu: float

    @property
    def lower_hu(self) -> float:
        return self.center_hu - self.width_hu / 2.0

    @property
    def upper_hu(self) -> float:
        return self.center_hu + self.width_hu / 2.0

    def clip_hu(self, hu: FloatArray) -> npt.NDArray[np.float64]:
        """Clip HU to the window (values stay in HU)."""
        return np.clip(np.asarray(hu, dtype=np.float64), self.lower_hu, self.upper_hu)

    def to_unit(self, hu: FloatArray) -> npt.NDArray[np.float64]:
        """Map the window to [0, 1], clipping outside it."""
        return (self.clip_hu(hu) - self.lower_hu) / self.width_hu


WINDOWS: dict[str, DisplayWindow] = {
    # EVALUATION.md "abdomen" protocol: clip to [-160, 240] HU, data_range 400.
    "abdomen": DisplayWindow("abdomen", center_hu=40.0, width_hu=400.0),
    "lung": DisplayWindow("lung", center_hu=-600.0, width_hu=1500.0),
    "bone": DisplayWindow("bone", center_hu=400.0, width_hu=1800.0),
    "brain": DisplayWindow("brain", center_hu=40.0, width_hu=80.0),
    # EVALUATION.md "full" protocol: clip to [-1024, 3072] HU, data_range 4096.
    "full": DisplayWindow("full", center_hu=1024.0, width_hu=4096.0),
    # LDCT-Bench anatomy windows (mapped to [0, 1], data_range 1).
    "chest-ldct": DisplayWindow("chest-ldct", center_hu=-600.0, width_hu=1500.0),
    "abdomen-ldct": DisplayWindow("abdomen-ldct", center_hu=50.0, width_hu=400.0),
    "head-ldct": DisplayWindow("head-ldct", center_hu=40.0, width_hu=80.0),
}


def window_by_name(name: str) -> DisplayWindow:
    """Look up a named display window, naming the valid ones when ``name`` is unknown."""
    try:
        return WINDOWS[name]
    except KeyError:
        valid = ", ".join(get_args(WindowName))
        raise ValueError(f"unknown window {name!r}; valid windows: {valid}") from None
