"""Which series a batch job denoises: site rules kept in a TOML file.

Example ``rules.toml`` (every key optional; unknown keys are refused)::

    modality = ["CT"]
    description = "(?i)abdomen|chest"      # regex searched in SeriesDescription
    kernel = "(?i)standard|b30f"           # regex searched in ConvolutionKernel
    min_slices = 10
    orientation = "axial"                  # or "any"
    exclude_description = "(?i)scout|localizer|dose"
    exclude_kernel = "(?i)bone"
    exclude_series = ["1.2.840.1.2.3"]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meddenoise.config import build_config, read_toml
from meddenoise.dicom import SeriesInfo
from meddenoise.errors import ConfigError

Orientation = Literal["axial", "any"]
AXIAL_TOLERANCE_DEG = 10.0
"""A series is axial when its slice normal is within this angle of the patient's z axis."""


@dataclass(frozen=True)
class SelectionRules:
    """Series selection rules; the defaults take every axial CT series."""

    modality: tuple[str, ...] = ("CT",)
    description: str | None = None
    kernel: str | None = None
    min_slices: int = 1
    orientation: Orientation = "axial"
    exclude_description: str | None = None
    exclude_kernel: str | None = None
    exclude_series: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("description", "kernel", "exclude_description", "exclude_kernel"):
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ConfigError(f"rules: {name} = {pattern!r} is not a valid regex ({err})") from err
        if self.orientation not in ("axial", "any"):
            raise ConfigError(f"rules: orientation {self.orientation!r} is not one of 'axial', 'any'")
        if self.min_slices < 1:
            raise ConfigError(f"rules: min_slices must be >= 1, not {self.min_slices}")


def load_rules(path: str | Path) -> SelectionRules:
    """Read and validate a rules file (TOML); unknown keys and bad values raise ConfigError.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "rules.toml"
    >>> _ = file.write_text('min_slices = 3\\nexclude_description = "(?i)scout"\\n')
    >>> load_rules(file).min_slices
    3
    """
    return build_config(SelectionRules, read_toml(path, what="rules"))


def exclusion_reason(info: SeriesInfo, rules: SelectionRules) -> str | None:
    """Why ``info`` is not selected by ``rules``, or None when it is."""
    checks = (
        (
            info.modality not in rules.modality,
            f"modality {info.modality or '-'} not in {list(rules.modality)}",
        ),
        (info.series_uid in rules.exclude_series, "series excluded by UID"),
        (_misses(rules.description, info.description), "description does not match"),
        (_misses(rules.kernel, info.kernel), "kernel does not match"),
        (_hits(rules.exclude_description, info.description), "description excluded"),
        (_hits(rules.exclude_kernel, info.kernel), "kernel excluded"),
        (info.shape[0] < rules.min_slices, f"{info.shape[0]} slices < min_slices {rules.min_slices}"),
        (rules.orientation == "axial" and not is_axial(info), "not axial"),
    )
    return next((reason for failed, reason in checks if failed), None)


def is_axial(info: SeriesInfo) -> bool:
    """True when the slice normal lies within AXIAL_TOLERANCE_DEG of the patient z axis."""
    normal_z = abs(float(info.direction[2, 2]))
    return normal_z >= math.cos(math.radians(AXIAL_TOLERANCE_DEG))


def _misses(pattern: str | None, text: str) -> bool:
    return pattern is not None and re.search(pattern, text or "") is None


def _hits(pattern: str | None, text: str) -> bool:
    return pattern is not None and re.search(pattern, text or "") is not None
