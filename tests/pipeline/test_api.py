"""The Python engine API: Denoiser and AsyncDenoiser on arrays, series and paths."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from meddenoise.models import LoadedModel, ModelCard
from meddenoise.pipeline import CTSeries, read_series
from meddenoise.pipeline.api import AsyncDenoiser, Denoiser
from tests.dicom.synthetic import make_series


class Recording(nn.Module):
    """The identity, remembering the threads and batch sizes it ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        self.batches.append(int(x.shape[0]))
        return x


def identity_model() -> tuple[LoadedModel, Recording]:
    network = Recording()
    return LoadedModel(network, ModelCard(name="id", version="1", architecture="none")), network


def test_denoiser_returns_the_kind_it_was_given(tmp_path: Path, tiny_model: Path) -> None:
    make_series(tmp_path / "s", n_slices=3)
    denoiser = Denoiser(model=tiny_model, device="cpu", tile=64)
    assert denoiser.card.name == "tiny"
    from_path = denoiser.denoise(tmp_path / "s")
    series = read_series(tmp_path / "s")
    from_series = denoiser.denoise(series)
    assert isinstance(from_path, CTSeries) and isinstance(from_series, CTSeries)
    np.testing.assert_allclose(from_path.hu, from_series.hu)
    array = denoiser.denoise(series.hu)
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_allclose(array, from_series.hu)
    np.testing.assert_allclose(denoiser.denoise(series.hu[1]), array[1], atol=1e-3)
    assert not any((tmp_path / "s").rglob("*denoised*"))
    with pytest.raises(TypeError, match="CTSeries"):
        denoiser.denoise([1, 2])  # type: ignore[call-overload]


def test_denoiser_writes_through_the_series_runner(tmp_path: Path, tiny_model: Path) -> None:
    make_series(tmp_path / "s", n_slices=2)
    summary = Denoiser(model=tiny_model, device="cpu").write(
        tmp_path / "s", out_dir=tmp_path / "out", report=True
    )
    assert summary.exit_code == 0 and summary.results[0].report is not None


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="strength"):
        AsyncDenoiser(model=identity_model()[0], device="cpu", strength=2.0)


def test_async_calls_share_one_worker_and_are_stacked() -> None:
    model, network = identity_model()
    denoiser = AsyncDenoiser(model=model, device="cpu", tile=16, batch_size=64)
    volumes = [np.full((2, 16, 16), float(k), dtype=np.float32) for k in range(6)]

    async def run() -> list[np.ndarray]:
        loop_thread = threading.current_thread().name
        results = await asyncio.gather(*(denoiser.denoise(v) for v in volumes))
        assert loop_thread not in network.threads
        return list(results)

    results = asyncio.run(run())
    for volume, out in zip(volumes, results, strict=True):
        np.testing.assert_allclose(out, volume, atol=1e-3)
    assert network.threads == {"meddenoise-cpu"}
    assert max(network.batches) > 2  # slices of different calls shared a forward pass


def test_async_errors_reach_the_caller() -> None:
    denoiser = AsyncDenoiser(model=identity_model()[0], device="cpu")

    async def run() -> None:
        await denoiser.denoise(np.zeros((2, 2, 2, 2)))

    with pytest.raises(ValueError, match="slices, rows, cols"):
        asyncio.run(run())
