"""Shared test fixtures: where ../shared/data is, and the skip-or-fail rule for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDDENOISE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str = "") -> Path:
    """Return ``../shared/data/<relative>``; skip when absent, but fail when CI=true."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"needs {path} (the project's shared real-CT data), which is absent"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    """The root of ../shared/data (see require_shared)."""
    return require_shared()


def save_tiny_model(path: Path, *, context_slices: int = 1) -> Path:
    """An untrained UNetPU(channels=(8, 16)) checkpoint: fast, and checked like any other."""
    import torch

    from meddenoise.models import ModelCard, network_from_card, save_checkpoint

    torch.manual_seed(0)
    card = ModelCard(
        name="tiny",
        version="0.1",
        architecture="unet_pu",
        architecture_kwargs={"channels": [8, 16]},
        context_slices=context_slices,
    )
    save_checkpoint(network=network_from_card(card), card=card, path=path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny 2D checkpoint shared by every test that needs a model but not a good one."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")
