"""Distillation: a larger trained network (``train.teacher``) whose outputs the student also learns.

The student's loss becomes ``(1 - w) * loss(student, full dose) + w * loss(student, teacher)``
with ``w = train.teacher_weight``. The teacher sees the same low-dose patch as the student; when it
uses fewer context slices, it gets the central ones, and a noise-level map only if it takes one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from meddenoise.errors import CheckpointError, ConfigError, MissingExtraError
from meddenoise.models import LoadedModel, load_model
from meddenoise.models.onnx_format import OnnxNetwork
from meddenoise.training.config import TrainingRecipe


@dataclass(frozen=True)
class Teacher:
    """A frozen network and the input channels of the student's batch that it reads."""

    network: torch.nn.Module
    channels: tuple[int, ...]
    weight: float

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's denoised patches for the student's input batch (N, C, H, W)."""
        return self.network(inputs[:, list(self.channels)]).float()


def load_teacher(recipe: TrainingRecipe, device: torch.device) -> Teacher | None:
    """``train.teacher`` loaded and checked against the student; None when the recipe has none.

    Raises
    ------
    ConfigError
        The teacher does not exist, is not a torch checkpoint, needs more context slices than the
        student gets, a noise map the student does not get, or another HU range.
    """
    t, m = recipe.train, recipe.model
    if not t.teacher:
        return None
    where = f"{recipe.source}: " if recipe.source else ""
    try:
        loaded = load_model(t.teacher, device=device)
    except (CheckpointError, MissingExtraError) as err:
        raise ConfigError(f"{where}train.teacher = {t.teacher!r}: {err}") from err
    problem = _mismatch(loaded, recipe)
    if problem:
        raise ConfigError(f"{where}train.teacher = {t.teacher!r}: {problem}")
    student_context = m.context_slices
    extra = (student_context - loaded.card.context_slices) // 2
    channels = tuple(range(extra, extra + loaded.card.context_slices))
    if loaded.card.noise_conditioned:
        channels += (student_context,)  # the noise map follows the slices
    network = loaded.network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return Teacher(network=network, channels=channels, weight=t.teacher_weight)


def _mismatch(loaded: LoadedModel, recipe: TrainingRecipe) -> str:
    """Why the teacher cannot read the student's batches; empty when it can."""
    card, m = loaded.card, recipe.model
    if isinstance(loaded.network, OnnxNetwork):
        return "a teacher must be a torch checkpoint (.pt), not an ONNX graph"
    if card.context_slices > m.context_slices:
        return (
            f"it reads {card.context_slices} context slices, more than the student's "
            f"model.context_slices = {m.context_slices}"
        )
    if card.noise_conditioned and not m.kwargs.get("noise_channel", False):
        return "it needs a noise-level map, which the student does not get (model.kwargs.noise_channel)"
    theirs = card.network_range
    lower, upper, scale = theirs.lower_hu, theirs.upper_hu, theirs.scale_hu
    if (lower, upper, scale) != (m.lower_hu, m.upper_hu, m.scale_hu):
        return (
            f"it works in [{lower}, {upper}] HU / {scale}, the student in "
            f"[{m.lower_hu}, {m.upper_hu}] HU / {m.scale_hu}"
        )
    return ""
