"""Streaming: a series denoised chunk by chunk equals the whole-volume path, and fails atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from meddenoise.dicom import find_series
from meddenoise.dicom.derive import derived_identity
from meddenoise.models import LoadedModel, load_model
from meddenoise.pipeline import DenoiseStep, InferenceSettings, OutputPolicy, read_series, run_series
from meddenoise.pipeline.stream import stream_denoise
from tests.conftest import save_tiny_model
from tests.dicom.synthetic import make_series

CPU = InferenceSettings(device="cpu", threads=1, roi=(64, 64))


@pytest.fixture(scope="module")
def context_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny 2.5D model (3 slices): the halo between chunks matters for it."""
    torch.set_num_threads(1)
    return load_model(save_tiny_model(tmp_path_factory.mktemp("m") / "tiny3.pt", context_slices=3))


@pytest.mark.parametrize("chunk_slices", [1, 2, 3, 7, 50])
def test_streamed_output_equals_the_whole_volume_path(
    tmp_path: Path, context_model: LoadedModel, chunk_slices: int
) -> None:
    make_series(tmp_path / "in", n_slices=7, shuffle=True, seed=3)
    (info,) = find_series(tmp_path / "in").series
    step = DenoiseStep(context_model, CPU)
    whole = run_series(info, step=step, out_dir=tmp_path / "whole", policy=OutputPolicy(report=True))
    assert whole.ok and whole.series is not None  # a report keeps the whole volume in memory
    identity = derived_identity(source=info, derivation=step.derivation)
    folder = stream_denoise(
        info, step=step, out_dir=tmp_path / "streamed", identity=identity, chunk_slices=chunk_slices
    )
    assert whole.output_folder is not None
    expected, streamed = read_series(whole.output_folder), read_series(folder)
    assert streamed.info.series_uid == identity.series_uid
    assert [s.position_mm for s in streamed.info.slices] == [s.position_mm for s in expected.info.slices]
    assert float(np.max(np.abs(streamed.hu - expected.hu))) <= 1.0


def test_the_runner_streams_when_nothing_needs_the_whole_volume(
    tmp_path: Path, context_model: LoadedModel
) -> None:
    make_series(tmp_path / "in", n_slices=4)
    (info,) = find_series(tmp_path / "in").series
    result = run_series(
        info, step=DenoiseStep(context_model, CPU), out_dir=tmp_path / "out", policy=OutputPolicy()
    )
    assert result.ok and result.series is None and set(result.seconds) == {"stream"}
    assert result.instances == 4 and len(list(result.output_folder.iterdir())) == 4  # type: ignore[union-attr]
    assert result.output_series_uid == find_series(result.output_folder).series[0].series_uid  # type: ignore[arg-type]
    whole = run_series(
        info,
        step=DenoiseStep(context_model, CPU),
        out_dir=tmp_path / "whole",
        policy=OutputPolicy(report=True),
    )
    # Both paths report the same noise figure: the median estimate of the same sampled slices.
    assert result.input_noise_hu is not None and result.input_noise_hu == whole.input_noise_hu


class _FailsOnThirdChunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("the network failed")
        return x[:, :1]


def test_a_failure_mid_stream_leaves_no_series_behind(tmp_path: Path, context_model: LoadedModel) -> None:
    make_series(tmp_path / "in", n_slices=6)
    (info,) = find_series(tmp_path / "in").series
    failing = LoadedModel(network=_FailsOnThirdChunk(), card=context_model.card)
    step = DenoiseStep(failing, InferenceSettings(device="cpu", threads=1, roi=(128, 128), chunk_slices=1))
    identity = derived_identity(source=info, derivation=step.derivation)
    with pytest.raises(RuntimeError, match="the network failed"):
        stream_denoise(info, step=step, out_dir=tmp_path / "out", identity=identity, chunk_slices=2)
    assert list((tmp_path / "out").iterdir()) == []  # neither the series nor a .tmp-* folder
