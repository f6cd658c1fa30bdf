"""Fan-beam scanner geometry shared by the projector and the FBP.

The model is a 2D, full-turn, third-generation fan beam with an **equiangular** (curved, arc)
detector, as on Siemens and most other clinical scanners. Coordinates are in millimetres in the
image plane, with ``x`` along the image columns and ``y`` along the image rows (both growing with
the index) and the origin at the image centre (the isocentre). View ``k`` puts the source at
angle ``beta_k = start + k * 2*pi / n_views`` on the circle of radius ``source_to_isocentre_mm``;
detector channel ``j`` sees the ray at fan angle ``gamma_j = (j - centre) * fan_spacing_rad``,
measured counter-clockwise from the central ray, where ``centre = (n_detectors - 1)/2 +
detector_offset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class FanBeamGeometry:
    """A circular fan-beam geometry with an equiangular detector.

    Parameters
    ----------
    source_to_isocentre_mm
        Distance from the focal spot to the rotation axis (SOD).
    source_to_detector_mm
        Distance from the focal spot to the detector arc (SDD); it only sets the physical detector
        pitch (:attr:`detector_spacing_mm`), since the detector is equiangular.
    n_detectors
        Number of detector channels in one row.
    n_views
        Number of views over one full turn (360 degrees).
    fov_mm
        Diameter of the scan field of view; the fan is just wide enough to cover it.
    detector_offset
        Shift of the detector centre, in channels (a quarter offset is 0.25).
    start_angle_rad
        Source angle of the first view.

    Examples
    --------
    >>> g = FanBeamGeometry()
    >>> round(g.detector_spacing_mm, 3), g.n_views
    (1.279, 1152)
    """

    source_to_isocentre_mm: float = 595.0
    source_to_detector_mm: float = 1085.6
    n_detectors: int = 736
    n_views: int = 1152
    fov_mm: float = 500.0
    detector_offset: float = 0.0
    start_angle_rad: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.fov_mm < 2 * self.source_to_isocentre_mm:
            raise ValueError(
                f"fov_mm={self.fov_mm} must be in (0, 2*source_to_isocentre_mm="
                f"{2 * self.source_to_isocentre_mm})"
            )
        if self.source_to_detector_mm <= self.source_to_isocentre_mm:
            raise ValueError(
                f"source_to_detector_mm={self.source_to_detector_mm} must exceed "
                f"source_to_isocentre_mm={self.source_to_isocentre_mm}"
            )
        if self.n_detectors < 2 or self.n_views < 2:
            raise ValueError(
                f"need at least 2 detectors and 2 views, got n_detectors={self.n_detectors}, "
                f"n_views={self.n_views}"
            )

    @property
    def fan_spacing_rad(self) -> float:
        """Angle between neighbouring detector channels (radians)."""
        half_fan = math.asin(0.5 * self.fov_mm / self.source_to_isocentre_mm)
        return 2.0 * half_fan / self.n_detectors

    @property
    def detector_spacing_mm(self) -> float:
        """Physical channel pitch on the detector arc."""
        return self.source_to_detector_mm * self.fan_spacing_rad

    @property
    def detector_centre(self) -> float:
        """Fractional channel index of the central ray."""
        return 0.5 * (self.n_detectors - 1) + self.detector_offset

    def fan_angles(self, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Fan angle of every channel, shape ``[n_detectors]`` (radians, float32)."""
        index = torch.arange(self.n_detectors, dtype=torch.float64, device=device)
        return ((index - self.detector_centre) * self.fan_spacing_rad).float()

    def view_angles(self, *, device: torch.device | str = "cpu") -> torch.Tensor:
        """Source angle of every view, shape ``[n_views]`` (radians, float32)."""
        index = torch.arange(self.n_views, dtype=torch.float64, device=device)
        return (self.start_angle_rad + index * (2.0 * math.pi / self.n_views)).float()

    def with_views(self, n_views: int) -> FanBeamGeometry:
        """The same scanner sampled with another number of views per turn."""
        return replace(self, n_views=n_views)


SIEMENS_DEFINITION = FanBeamGeometry()
"""Default geometry, close to a Siemens SOMATOM Definition (736 channels, 1152 views per turn)."""
