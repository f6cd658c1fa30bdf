"""Networks (one architecture per file), their registry, model cards and the checkpoint format."""

from meddenoise.models.card import MetricRecord, ModelCard, TrainingData, card_markdown
from meddenoise.models.checkpoint import (
    CHECKPOINT_FORMAT,
    DEFAULT_MODEL_NAME,
    LoadedModel,
    load_model,
    network_from_card,
    save_checkpoint,
    shipped_models,
    weights_sha256,
)
from meddenoise.models.registry import ARCHITECTURES, build_network

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "DEFAULT_MODEL_NAME",
    "LoadedModel",
    "MetricRecord",
    "ModelCard",
    "TrainingData",
    "build_network",
    "card_markdown",
    "load_model",
    "network_from_card",
    "save_checkpoint",
    "shipped_models",
    "weights_sha256",
]
