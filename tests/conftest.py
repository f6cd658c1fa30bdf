"""Shared test fixtures: where ../shared/data is, and the skip-or-fail rule for it."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def save_tiny_model(path: Path, *, context_slices: int = 1, seed: int = 0, **kwargs: object) -> Path:
    """An untrained UNetPU(channels=(8, 16), **kwargs) checkpoint: fast, and checked like any other."""
    import torch

    from meddenoise.models import ModelCard, network_from_card, save_checkpoint

    torch.manual_seed(seed)
    card = ModelCard(
        name="tiny",
        version="0.1",
        architecture="unet_pu",
        architecture_kwargs={"channels": [8, 16], **kwargs},
        context_slices=context_slices,
    )
    save_checkpoint(network=network_from_card(card), card=card, path=path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny 2D checkpoint shared by every test that needs a model but not a good one."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def run_denoise(
    *,
    input_path: Path,
    out_dir: Path,
    model: object = None,
    settings: object = None,
    series_uids: list[str] | tuple[str, ...] = (),
    reference_path: Path | None = None,
    overwrite: bool = False,
    also_save: tuple[str, ...] = (),
    progress: object = None,
    allow_gaps: bool = False,
) -> tuple[Any, ...]:
    """``denoise_path`` with the request spelled as keyword arguments; returns every series' result."""
    from meddenoise.pipeline import InferenceSettings, OutputPolicy, RunRequest, denoise_path
    from meddenoise.progress import no_progress

    request = RunRequest(
        model=model,  # type: ignore[arg-type]
        settings=settings if isinstance(settings, InferenceSettings) else InferenceSettings(),
        output=OutputPolicy(overwrite=overwrite, also_save=also_save, allow_gaps=allow_gaps),  # type: ignore[arg-type]
        series_uids=tuple(series_uids),
        reference=reference_path,
    )
    summary = denoise_path(
        input_path=input_path, out_dir=out_dir, request=request, progress=progress or no_progress
    )  # type: ignore[arg-type]
    return summary.results


@pytest.fixture
def collect_dropped_association_sockets() -> Iterator[None]:
    """Close, inside the test, sockets that pynetdicom leaves to the garbage collector.

    An association whose peer was killed mid-transfer (the crash and kill tests do this on
    purpose) keeps its socket until it is collected. Collected later, its ResourceWarning would
    surface in an unrelated test (warnings are errors), so collect here and ignore only that warning.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
