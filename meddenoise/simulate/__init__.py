"""Projection-domain low-dose CT simulation (physics only: no DICOM, no networks).

``simulate_low_dose`` turns a full-dose HU volume into a lower-dose one: forward projection in a
fan-beam geometry (``FanBeamGeometry``, ``forward_project``), noise in the projection domain
(Yu 2012 "extra noise" or Zeng 2015 pre-log), and FBP of the noise alone (``fbp``).
"""

from meddenoise.simulate.fbp import FILTER_NAMES, FilterName, fbp
from meddenoise.simulate.geometry import SIEMENS_DEFINITION, FanBeamGeometry
from meddenoise.simulate.lowdose import (
    MU_WATER_PER_MM,
    SimulationSettings,
    hu_to_mu,
    simulate_from_settings,
    simulate_low_dose,
)
from meddenoise.simulate.noise import NOISE_MODES, NoiseMode
from meddenoise.simulate.projector import forward_project

__all__ = [
    "FILTER_NAMES",
    "MU_WATER_PER_MM",
    "NOISE_MODES",
    "SIEMENS_DEFINITION",
    "FanBeamGeometry",
    "FilterName",
    "NoiseMode",
    "SimulationSettings",
    "fbp",
    "forward_project",
    "hu_to_mu",
    "simulate_from_settings",
    "simulate_low_dose",
]
