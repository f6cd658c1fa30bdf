"""The resumable training state, ``last.pt``: weights, optimiser, schedule, RNGs and the best so far.

Written at every validation with ``torch.save`` of plain dicts, tensors and numbers only, so it
loads with ``torch.load(weights_only=True)``. ``meddenoise train --resume`` continues from it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from meddenoise.errors import CheckpointError, ConfigError
from meddenoise.training.config import TrainingRecipe

STATE_FORMAT = "meddenoise-training-state/1"
STATE_FILE = "last.pt"


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where its last validation left it."""

    iteration: int
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    sampler_rng: dict[str, Any]
    torch_rng: torch.Tensor
    best_iteration: int = -1
    best_scores: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_validations: int = 0
    seconds: float = 0.0
    scaler: dict[str, Any] = field(default_factory=dict)
    identity: str = ""


def run_identity(recipe: TrainingRecipe) -> str:
    """What must not change between a run and its resumption: the network and what is trained."""
    t = recipe.train
    return json.dumps(
        {"model": asdict(recipe.model), "freeze": list(t.freeze), "optimizer": t.optimizer},
        sort_keys=True,
        default=list,
    )


def save_state(state: TrainingState, out_dir: Path) -> Path:
    """Write ``out_dir/last.pt`` atomically."""
    path = out_dir / STATE_FILE
    payload = {"format": STATE_FORMAT, **asdict(state)}
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".last.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_state(out_dir: Path, *, recipe: TrainingRecipe) -> TrainingState:
    """Read ``out_dir/last.pt`` for ``--resume``, checking it belongs to this recipe.

    Raises
    ------
    ConfigError
        No state to resume, or the recipe's network/freeze/optimiser differ from the run's.
    CheckpointError
        The file is not a training state.
    """
    path = out_dir / STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"--resume: {path} does not exist; start the run without --resume, or set output.dir "
            "to the folder of the run to continue"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a meddenoise training state: {err}") from err
    if not isinstance(payload, dict) or payload.pop("format", None) != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a meddenoise training state (format {STATE_FORMAT!r})")
    try:
        state = TrainingState(**payload)
    except TypeError as err:
        raise CheckpointError(f"{path} is not a meddenoise training state: {err}") from err
    if state.identity != run_identity(recipe):
        raise ConfigError(
            f"--resume: {path} was trained with a different [model] section, train.freeze or "
            "train.optimizer; restore them, or start a new run in another output.dir"
        )
    return state
