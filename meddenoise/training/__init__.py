"""Training: simulated AAPM-style pairs, patches, losses and the loop (only the CLI imports this)."""

from meddenoise.training.config import TrainingRecipe, load_recipe
from meddenoise.training.loop import TrainingResult
from meddenoise.training.loop import train as train_recipe

__all__ = ["TrainingRecipe", "TrainingResult", "load_recipe", "train_recipe"]
