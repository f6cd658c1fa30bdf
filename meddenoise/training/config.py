"""Training recipes: TOML files in ``configs/``, validated on load.

Every key is declared here with its type; the project's one TOML loader (:mod:`meddenoise.config`)
refuses an unknown key or a wrong type, and the checks here a value out of range, each as a
ConfigError that names the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from meddenoise.config import build_config, read_toml
from meddenoise.device import DEVICE_PATTERN
from meddenoise.errors import ConfigError

LossName = Literal["l1", "mse", "ssim", "l1+ssim", "mse+ssim"]
OptimizerName = Literal["adamw", "adam"]
AapmThickness = Literal["1mm", "3mm"]


@dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from and how they are simulated."""

    shared_root: str = "../shared/data"
    train_sets: tuple[str, ...] = ()
    validation_sets: tuple[str, ...] = ()
    slices_per_series: int = 24
    validation_slices_per_series: int = 6
    dose_range: tuple[float, float] = (0.1, 0.5)
    i0_range: tuple[float, float] = (5e4, 3e5)
    sigma_e2: float = 10.0
    filters: tuple[str, ...] = ("hann",)
    # Each train run is re-simulated on a grid whose pixels are one of these multiples of the
    # series' own (drawn per run; below 1 = finer), so the network meets more pixel sizes' noise.
    pixel_scales: tuple[float, ...] = (1.0,)
    validation_dose: float = 0.25
    cache_dir: str = "cache/pairs"
    seed: int = 0
    # Real pairs (see meddenoise/training/sources.py); "" = not used.
    aapm_root: str = ""
    aapm_thickness: AapmThickness = "3mm"
    aapm_validation_patients: tuple[str, ...] = ()
    tcia_root: str = ""
    tcia_full_dose: str = "full dose"
    tcia_low_dose: str = "low dose"
    tcia_validation_patients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """Which network, with which arguments and input range."""

    name: str = "unet-pu-v1"
    version: str = "1"
    architecture: str = "unet_pu"
    context_slices: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)
    lower_hu: float = -1024.0
    upper_hu: float = 3071.0
    scale_hu: float = 1000.0
    description: str = ""
    init_checkpoint: str = ""  # fine-tune from this checkpoint path or shipped model name
    noise_level_cap_hu: float = 0.0  # the card's cap on the estimated noise level; 0 = none


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe."""

    patch_size: int = 96
    batch_size: int = 16
    iterations: int = 2000
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    grad_clip: float = 1.0
    loss: LossName = "l1"
    ssim_weight: float = 0.2  # weight of SSIM in the l1+ssim and mse+ssim mixes
    optimizer: OptimizerName = "adamw"
    early_stopping_patience: int = 0  # stop after this many validations without improvement; 0 = off
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed (e.g. "encoders.0")
    amp: bool = True  # mixed precision (autocast + GradScaler), used only on CUDA
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    time_limit_minutes: float = 120.0
    validate_every: int = 250
    body_threshold_hu: float = -500.0
    # Share of patches whose neighbour slices are replaced by the centre slice (a lone slice).
    context_dropout: float = 0.0
    # Distillation: a trained checkpoint (name or path) whose outputs the student also learns,
    # weighted by teacher_weight against the full dose (see meddenoise/training/teacher.py).
    teacher: str = ""
    teacher_weight: float = 0.5


@dataclass(frozen=True)
class OutputConfig:
    """Where the run writes its checkpoint, card, log and copied config."""

    dir: str = "runs/default"


@dataclass(frozen=True)
class TrainingRecipe:
    """A whole training config file."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    output: OutputConfig
    source: Path | None = None


def load_recipe(path: str | Path) -> TrainingRecipe:
    """Read and validate a training config (TOML).

    Examples
    --------
    >>> recipe = load_recipe("configs/train_default.toml")  # doctest: +SKIP
    >>> recipe.model.architecture  # doctest: +SKIP
    'unet_pu'
    """
    path = Path(path)
    raw = read_toml(path, what="the training config")
    try:
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "output": OutputConfig}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"unknown section [{unknown[0]}]; valid sections: {', '.join(sections)}")
        built = {name: build_config(cls, raw.get(name, {}), name) for name, cls in sections.items()}
        recipe = TrainingRecipe(**built, source=path)
        _check_ranges(recipe)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return recipe


def _check_ranges(recipe: TrainingRecipe) -> None:
    data, train = recipe.data, recipe.train
    lo, hi = data.dose_range
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.dose_range must satisfy 0 < low <= high <= 1, got {data.dose_range}")
    if not 0 < data.i0_range[0] <= data.i0_range[1]:
        raise ConfigError(f"data.i0_range must be positive and ordered, got {data.i0_range}")
    if not data.pixel_scales or not all(0.4 <= scale <= 2.5 for scale in data.pixel_scales):
        raise ConfigError(f"data.pixel_scales must be factors between 0.4 and 2.5, got {data.pixel_scales}")
    if recipe.model.context_slices < 1 or recipe.model.context_slices % 2 == 0:
        raise ConfigError(f"model.context_slices must be odd and >= 1, got {recipe.model.context_slices}")
    if train.patch_size < 16 or train.batch_size < 1 or train.iterations < 1:
        raise ConfigError(
            "train.patch_size >= 16, train.batch_size >= 1 and train.iterations >= 1 are required"
        )
    if not (data.train_sets or data.aapm_root or data.tcia_root):
        raise ConfigError(
            "data.train_sets is empty; name at least one 'train' set from the shared data manifest, "
            "or a real dataset with data.aapm_root or data.tcia_root"
        )
    _check_train(train)
    _check_sources(data)
    _check_network(recipe)


def _check_train(train: TrainConfig) -> None:
    positive = {
        "learning_rate": train.learning_rate,
        "grad_clip": train.grad_clip,
        "validate_every": train.validate_every,
        "time_limit_minutes": train.time_limit_minutes,
        "threads": train.threads,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"train.{key} must be positive, got {value}")
    non_negative = {
        "weight_decay": train.weight_decay,
        "warmup_iterations": train.warmup_iterations,
        "early_stopping_patience": train.early_stopping_patience,
        "ssim_weight": train.ssim_weight,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"train.{key} must be >= 0, got {value}")
    if not 0.0 <= train.context_dropout <= 1.0:
        raise ConfigError(f"train.context_dropout must lie in [0, 1], got {train.context_dropout}")
    if not 0.0 <= train.teacher_weight <= 1.0:
        raise ConfigError(f"train.teacher_weight must lie in [0, 1], got {train.teacher_weight}")
    if not DEVICE_PATTERN.match(train.device):
        raise ConfigError(f"train.device = {train.device!r}; valid values: auto, cpu, cuda, cuda:N")


def _check_sources(data: DataConfig) -> None:
    for key, root, patients in (
        ("aapm", data.aapm_root, data.aapm_validation_patients),
        ("tcia", data.tcia_root, data.tcia_validation_patients),
    ):
        if patients and not root:
            raise ConfigError(f"data.{key}_validation_patients is set but data.{key}_root is not")
    if data.tcia_root and not (data.tcia_full_dose.strip() and data.tcia_low_dose.strip()):
        raise ConfigError("data.tcia_full_dose and data.tcia_low_dose must be non-empty texts")


def _check_network(recipe: TrainingRecipe) -> None:
    """Build the network once: bad architecture kwargs and unknown freeze prefixes fail on load."""
    from meddenoise.models import build_network

    m = recipe.model
    if m.noise_level_cap_hu < 0 or (m.noise_level_cap_hu > 0 and not m.kwargs.get("noise_channel", False)):
        raise ConfigError(
            f"model.noise_level_cap_hu = {m.noise_level_cap_hu} needs a positive value and "
            "model.kwargs.noise_channel = true (0 means no cap)"
        )
    try:
        network = build_network(m.architecture, in_channels=m.context_slices, **m.kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.architecture/model.kwargs: {err}") from err
    names = [name for name, _ in network.named_parameters()]
    for prefix in recipe.train.freeze:
        if not any(frozen(name, (prefix,)) for name in names):
            groups = sorted({name.rsplit(".", 1)[0] for name in names})
            raise ConfigError(
                f"train.freeze entry {prefix!r} matches no parameter of {m.architecture}; "
                f"parameter prefixes: {', '.join(groups)}"
            )
    if recipe.train.freeze and all(frozen(name, recipe.train.freeze) for name in names):
        raise ConfigError("train.freeze freezes every parameter; leave some layers to train")


def frozen(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether parameter ``name`` falls under one of the ``train.freeze`` prefixes."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)
