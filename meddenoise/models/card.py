"""ModelCard: what a checkpoint is, how it expects its input, what it was trained on and how it scored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meddenoise import __version__
from meddenoise.windowing import BELOW_RANGE_MARGIN_HU, NetworkRange

__all__ = ["MetricRecord", "ModelCard", "TrainingData", "card_markdown"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# How far (relative) a series' pixel size may lie outside the training pixel sizes before a warning.
# benchmarks/pixel_size.py measures the shipped model inside and beyond its range.
PIXEL_TOLERANCE = 0.15


def _today() -> str:
    return dt.date.today().isoformat()


def _checked_keys(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Reject unknown and missing keys of ``data`` for the dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}; valid keys: {', '.join(fields)}")
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{what} lacks required keys {missing}")
    return dict(data)


@dataclass(frozen=True)
class TrainingData:
    """One data collection a model was trained or validated on."""

    collection: str
    licence: str
    citation: str
    role: str = "training"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingData:
        """Build from a plain mapping, rejecting unknown keys."""
        return cls(**_checked_keys(cls, data, "training_data entry"))


@dataclass(frozen=True)
class MetricRecord:
    """One score, with the protocol (window, data_range) and data it was measured under."""

    name: str
    value: float
    protocol: str
    dataset: str
    dose: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricRecord:
        """Build from a plain mapping, rejecting unknown keys."""
        return cls(**_checked_keys(cls, data, "metrics entry"))


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild, run and cite a checkpoint; JSON-serialisable.

    ``architecture_kwargs`` never holds ``in_channels``: that is ``context_slices`` (1 for 2D,
    an odd k for 2.5D). ``weights_sha256`` is filled in by ``save_checkpoint``.

    Examples
    --------
    >>> card = ModelCard(name="demo", version="1", architecture="unet_pu")
    >>> ModelCard.from_dict(card.to_dict()) == card
    True
    """

    name: str
    version: str
    architecture: str
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    network_range: NetworkRange = field(default_factory=NetworkRange)
    context_slices: int = 1
    training_data: tuple[TrainingData, ...] = ()
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[MetricRecord, ...] = ()
    weights_sha256: str = ""
    description: str = ""
    created: str = field(default_factory=_today)
    meddenoise_version: str = __version__
    pixel_mm_range: tuple[float, float] | None = None  # in-plane pixel sizes of the training pairs
    # The largest estimated noise level (HU) fed to a noise-conditioned network: noisier slices are
    # denoised as if they had this much, which keeps low-contrast detectability (d′) at extreme noise.
    noise_level_cap_hu: float | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"model name {self.name!r} must match {_NAME.pattern} (it names a file)")
        if not self.version or not self.architecture:
            raise ValueError(f"model {self.name!r} needs a non-empty version and architecture")
        if (
            not isinstance(self.context_slices, int)
            or self.context_slices < 1
            or self.context_slices % 2 == 0
        ):
            raise ValueError(f"context_slices must be a positive odd integer, got {self.context_slices!r}")
        if "in_channels" in self.architecture_kwargs:
            raise ValueError("architecture_kwargs must not set in_channels; it is context_slices")
        if self.weights_sha256 and not _SHA256.match(self.weights_sha256):
            raise ValueError(f"weights_sha256 must be 64 lowercase hex digits, got {self.weights_sha256!r}")
        try:
            dt.date.fromisoformat(self.created)
        except (TypeError, ValueError) as err:
            raise ValueError(f"created must be an ISO date (YYYY-MM-DD), got {self.created!r}") from err
        if self.pixel_mm_range is not None:
            pixels = tuple(float(v) for v in self.pixel_mm_range)
            if len(pixels) != 2 or not 0.0 < pixels[0] <= pixels[1]:
                raise ValueError(f"pixel_mm_range must be [low, high] mm, got {self.pixel_mm_range!r}")
            object.__setattr__(self, "pixel_mm_range", pixels)
        if self.noise_level_cap_hu is not None:
            cap = float(self.noise_level_cap_hu)
            if not (cap > 0.0 and math.isfinite(cap)) or not self.noise_conditioned:
                raise ValueError(
                    f"noise_level_cap_hu must be a positive number of HU on a noise-conditioned model, "
                    f"got {self.noise_level_cap_hu!r}"
                )
            object.__setattr__(self, "noise_level_cap_hu", cap)
        object.__setattr__(self, "training_data", tuple(self.training_data))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        try:
            json.dumps([self.architecture_kwargs, self.training_config], allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"architecture_kwargs and training_config must be plain JSON: {err}") from err

    @property
    def noise_conditioned(self) -> bool:
        """Whether the network takes a noise-level map as its last input channel."""
        return bool(self.architecture_kwargs.get("noise_channel", False))

    def pixel_size_warning(self, pixel_mm: float) -> str | None:
        """One line when ``pixel_mm`` lies outside the training pixel sizes (beyond
        :data:`PIXEL_TOLERANCE`), else None; always None for a card that does not record them.

        Examples
        --------
        >>> card = ModelCard(name="demo", version="1", architecture="unet_pu", pixel_mm_range=(0.6, 1.0))
        >>> card.pixel_size_warning(0.7) is None
        True
        >>> print(card.pixel_size_warning(1.5).split(";")[0])
        pixel size 1.5 mm is outside the 0.6-1 mm that model demo was trained on
        """
        if self.pixel_mm_range is None:
            return None
        low, high = self.pixel_mm_range
        if low * (1.0 - PIXEL_TOLERANCE) <= pixel_mm <= high * (1.0 + PIXEL_TOLERANCE):
            return None
        return (
            f"pixel size {pixel_mm:.3g} mm is outside the {low:.3g}-{high:.3g} mm that model {self.name} "
            "was trained on; compare its output with the input"
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (lists, not tuples)."""
        data = dataclasses.asdict(self)
        data["training_data"] = [dataclasses.asdict(t) for t in self.training_data]
        data["metrics"] = [dataclasses.asdict(m) for m in self.metrics]
        return json.loads(json.dumps(data))  # deep copy, tuples → lists

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Build a card from ``to_dict`` output, rejecting unknown or missing keys (ValueError)."""
        values = _checked_keys(cls, data, "model card")
        if "network_range" in values:
            values["network_range"] = NetworkRange(
                **_checked_keys(NetworkRange, values["network_range"], "network_range")
            )
        if "training_data" in values:
            values["training_data"] = tuple(TrainingData.from_dict(t) for t in values["training_data"])
        if "metrics" in values:
            values["metrics"] = tuple(MetricRecord.from_dict(m) for m in values["metrics"])
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"model card has a value of the wrong type: {err}") from err

    def to_json(self) -> str:
        """Human-readable JSON (indented, sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse ``to_json`` output (ValueError on malformed JSON or keys)."""
        return cls.from_dict(json.loads(text))


def card_markdown(card: ModelCard) -> str:
    """The model card as a short Markdown document (what ships beside the weights).

    Examples
    --------
    >>> print(card_markdown(ModelCard(name="demo", version="1", architecture="unet_pu")).splitlines()[0])
    # Model card: demo v1
    """
    r = card.network_range
    dims = "2D" if card.context_slices == 1 else f"2.5D, {card.context_slices} adjacent slices as channels"
    lines = [
        f"# Model card: {card.name} v{card.version}",
        "",
        card.description or "(no description)",
        "",
        "## Architecture",
        f"- `{card.architecture}` with arguments `{json.dumps(card.architecture_kwargs, sort_keys=True)}`",
        f"- input: {dims}"
        + ("; plus a noise-level map (the input's noise SD in HU / 100)" if card.noise_conditioned else ""),
        f"- input range and normalisation: HU clipped to [{r.lower_hu:g}, {r.upper_hu:g}], "
        f"unit = (HU - {r.offset_hu:g}) / {r.scale_hu:g}; HU above the range, or more than "
        f"{BELOW_RANGE_MARGIN_HU:g} below it (padding), pass through unchanged",
        *_pixel_line(card),
        *_cap_line(card),
        "",
        "## Training data (and licences)",
        *[f"- {t.collection} ({t.role}): {t.licence}. {t.citation}" for t in card.training_data],
        "",
        "## Metrics (each with its protocol)",
        "| metric | value | protocol | data | dose |",
        "|---|---|---|---|---|",
        *[f"| {m.name} | {m.value:g} | {m.protocol} | {m.dataset} | {m.dose} |" for m in card.metrics],
        "",
        "## Training config",
        "```json",
        json.dumps(card.training_config, indent=2, sort_keys=True),
        "```",
        "",
        f"weights sha256 (canonical state_dict): `{card.weights_sha256}`  ",
        f"created {card.created} with meddenoise {card.meddenoise_version}",
        "",
    ]
    return "\n".join(lines)


def _cap_line(card: ModelCard) -> list[str]:
    if card.noise_level_cap_hu is None:
        return []
    return [
        f"- noise map capped at {card.noise_level_cap_hu:g} HU: a slice estimated noisier is denoised as if "
        "it had that much, to keep low-contrast detectability; an explicit --noise-level is not capped"
    ]


def _pixel_line(card: ModelCard) -> list[str]:
    if card.pixel_mm_range is None:
        return []
    low, high = card.pixel_mm_range
    return [f"- trained on in-plane pixels of {low:.3g}-{high:.3g} mm; other sizes get a warning"]
