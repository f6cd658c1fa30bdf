"""Sliding-window inference with networks whose output is exactly predictable."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch import nn

from meddenoise.errors import DeviceError
from meddenoise.inference import InferenceSettings, denoise_volume, resolve_device
from meddenoise.models import LoadedModel, ModelCard
from meddenoise.models.unet_pu import UNetPU
from meddenoise.windowing import NetworkRange

RANGE = NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, offset_hu=0.0, scale_hu=1000.0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


class Scale(nn.Module):
    """Multiplies the (single) input channel by ``factor``: identity for 1, "2×input" for 2."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class Channel(nn.Module):
    """Returns input channel ``index`` of a 2.5D input: shows which neighbour sits where."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index : self.index + 1]


class Refuses(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the network must not run")


class RecordsThreads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return x


def _model(network: nn.Module, context_slices: int = 1) -> LoadedModel:
    card = ModelCard(
        name="test", version="0", architecture="test", network_range=RANGE, context_slices=context_slices
    )
    return LoadedModel(network=network, card=card)


def _volume(slices: int = 2, rows: int = 150, cols: int = 170) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(0)
    return rng.uniform(-1000.0, 2000.0, size=(slices, rows, cols)).astype(np.float32)


def _settings(**changes: object) -> InferenceSettings:
    values: dict[str, object] = {"roi": (64, 64), "overlap": 0.25, "device": "cpu", "batch_size": 4}
    values.update(changes)
    return InferenceSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [1.0, 2.0])
@pytest.mark.parametrize(
    "changes",
    [
        {},  # 64² windows on 150×170 slices: several windows, sizes not multiples of the roi
        {"roi": (512, 512)},  # roi larger than the image
        {"roi": (32, 200)},  # larger in one dimension only
        {"batch_size": 64},  # more windows per batch than there are
        {"overlap": 0.0, "batch_size": 1},
    ],
)
def test_stitching_is_exact_for_pointwise_networks(factor: float, changes: dict[str, object]) -> None:
    volume = _volume()
    out = denoise_volume(volume, model=_model(Scale(factor)), settings=_settings(**changes))
    assert out.dtype == np.float32
    assert out.shape == volume.shape
    np.testing.assert_allclose(out, factor * volume, rtol=1e-6, atol=1e-4)


def test_roi_larger_than_image_equals_one_full_forward_pass() -> None:
    # No padding reaches a convolutional network: a large roi gives exactly the whole-image result.
    network = UNetPU(channels=(4, 8)).eval()
    volume = _volume(slices=2, rows=37, cols=45)
    out = denoise_volume(volume, model=_model(network), settings=_settings(roi=(256, 256)))
    with torch.inference_mode():
        direct = network(torch.from_numpy(RANGE.to_unit(volume))[:, None])[:, 0].numpy()
    np.testing.assert_allclose(out, RANGE.to_hu(direct), rtol=1e-5, atol=1e-3)


def test_chunking_does_not_change_the_result() -> None:
    volume = _volume(slices=7, rows=40, cols=50)
    network = UNetPU(in_channels=3, channels=(4, 8)).eval()
    model = _model(network, context_slices=3)
    seen: list[int] = []
    small = denoise_volume(volume, model=model, settings=_settings(chunk_slices=3), progress=seen.append)
    large = denoise_volume(volume, model=model, settings=_settings(chunk_slices=16))
    assert seen == [3, 3, 1]
    np.testing.assert_allclose(small, large, rtol=1e-6, atol=1e-3)
    channel = _model(Channel(0), context_slices=3)
    np.testing.assert_array_equal(
        denoise_volume(volume, model=channel, settings=_settings(chunk_slices=3)),
        denoise_volume(volume, model=channel, settings=_settings(chunk_slices=16)),
    )


@pytest.mark.parametrize("context_slices", [3, 5])
@pytest.mark.parametrize("chunk_slices", [2, 16])
def test_context_channels_hold_neighbours_with_edge_replication(
    context_slices: int, chunk_slices: int
) -> None:
    volume = _volume(slices=6, rows=20, cols=30)
    halo = context_slices // 2
    for index in range(context_slices):
        model = _model(Channel(index), context_slices=context_slices)
        out = denoise_volume(volume, model=model, settings=_settings(chunk_slices=chunk_slices))
        source = np.clip(np.arange(6) + index - halo, 0, 5)
        np.testing.assert_allclose(out, volume[source], rtol=1e-6, atol=1e-4)


def test_single_slice_series() -> None:
    volume = _volume(slices=1, rows=33, cols=31)
    for index in range(3):
        out = denoise_volume(volume, model=_model(Channel(index), 3), settings=_settings())
        np.testing.assert_allclose(out, volume, rtol=1e-6, atol=1e-4)


def test_strength_zero_returns_the_input_bit_exactly_without_running_the_network() -> None:
    volume = _volume(slices=3, rows=20, cols=20)
    seen: list[int] = []
    out = denoise_volume(
        volume, model=_model(Refuses()), settings=_settings(strength=0.0), progress=seen.append
    )
    np.testing.assert_array_equal(out, volume)
    assert out is not volume
    assert seen == [3]


def _noise_map_model(cap_hu: float | None) -> LoadedModel:
    """A noise-conditioned model whose output is its noise-level channel (1000 HU per 100 HU told)."""
    card = ModelCard(
        name="test",
        version="0",
        architecture="test",
        architecture_kwargs={"noise_channel": True},
        network_range=RANGE,
        noise_level_cap_hu=cap_hu,
    )
    return LoadedModel(network=Channel(1), card=card)


@pytest.mark.parametrize(
    ("cap", "told", "expected"), [(None, None, 1000.0), (60.0, None, 600.0), (60.0, 90.0, 900.0)]
)
def test_the_cards_noise_cap_limits_estimated_levels_but_not_given_ones(
    cap: float | None, told: float | None, expected: float
) -> None:
    noisy = (40.0 + np.random.default_rng(1).normal(0.0, 100.0, size=(1, 128, 128))).astype(np.float32)
    out = denoise_volume(noisy, model=_noise_map_model(cap), settings=_settings(noise_level_hu=told))
    assert np.ptp(out) < 1e-3 * expected  # one level per slice
    assert out.mean() == pytest.approx(expected, rel=0.15 if cap is None and told is None else 1e-5)


def test_strength_half_gives_the_midpoint() -> None:
    volume = _volume(slices=2, rows=30, cols=40)
    out = denoise_volume(volume, model=_model(Scale(2.0)), settings=_settings(strength=0.5))
    np.testing.assert_allclose(out, 1.5 * volume, rtol=1e-6, atol=1e-3)


def test_padding_and_metal_keep_their_input_value_but_noisy_air_is_denoised() -> None:
    volume = _volume(slices=2, rows=30, cols=40)
    volume[0, :5, :5] = -2000.0  # padding-like value far below the network range
    volume[1, -3:, -3:] = 4000.0  # metal above it
    volume[1, :4, :4] = -1100.0  # air pushed just below the range by noise
    out = denoise_volume(volume, model=_model(Scale(2.0)), settings=_settings())
    outside = RANGE.passes_through(volume)
    assert outside.sum() == 34
    # The network saw the air clipped to -1024 HU; its (doubled) answer is used, not the input.
    np.testing.assert_allclose(out[1, :4, :4], 2.0 * RANGE.lower_hu, rtol=1e-6)
    np.testing.assert_array_equal(out[outside], volume[outside])
    seen = np.clip(volume, RANGE.lower_hu, RANGE.upper_hu)
    np.testing.assert_allclose(out[~outside], 2.0 * seen[~outside], rtol=1e-6, atol=1e-3)


def test_threads_are_honoured_and_restored() -> None:
    torch.set_num_threads(1)
    network = RecordsThreads()
    denoise_volume(_volume(1, 20, 20), model=_model(network), settings=_settings(threads=2))
    assert network.seen and set(network.seen) == {2}
    assert torch.get_num_threads() == 1


def test_bad_volumes_are_refused() -> None:
    model = _model(Scale(1.0))
    with pytest.raises(ValueError, match="slices, rows, cols"):
        denoise_volume(np.zeros((20, 20), np.float32), model=model, settings=_settings())
    with pytest.raises(ValueError, match="NaN"):
        denoise_volume(np.full((1, 4, 4), np.nan, np.float32), model=model, settings=_settings())


def test_a_network_with_the_wrong_output_is_refused() -> None:
    with pytest.raises(ValueError, match=r"returned \(1, 3, 20, 20\)"):
        denoise_volume(_volume(1, 20, 20), model=_model(nn.Identity(), 3), settings=_settings())


@pytest.mark.parametrize(
    "bad",
    [
        {"roi": (0, 64)},
        {"roi": (64,)},
        {"overlap": 1.0},
        {"batch_size": 0},
        {"device": "gpu"},
        {"threads": 0},
        {"strength": 1.5},
        {"strength": -0.1},
        {"chunk_slices": 0},
    ],
)
def test_settings_are_validated(bad: dict[str, object]) -> None:
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        _settings(**bad)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_gpu_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="--device cuda requested but no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError):
        denoise_volume(_volume(1, 8, 8), model=_model(Scale(1.0)), settings=_settings(device="cuda:0"))


class RecordsBatches(nn.Module):
    """Identity that records how many windows each forward pass gets."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return x


class NeedsMultiple(Scale):
    """A network that declares it needs tiles of a multiple of 16."""

    tile_multiple = 16


@pytest.mark.skipif(torch.cuda.is_available(), reason="the automatic batch differs on CUDA")
@pytest.mark.parametrize(
    ("roi", "rows", "batches"),
    [
        ((64, 64), 150, [12]),  # 12 windows of 64² (overlap 0.25): all fit in one 512² slice's worth
        ((256, 256), 300, [4]),  # four 256² windows make one 512² slice's worth
        ((512, 512), 512, [1, 1]),  # a whole slice per pass: more buys no speed on CPU, only memory
    ],
)
def test_batch_size_none_means_one_slice_of_windows_a_pass_on_cpu(
    roi: tuple[int, int], rows: int, batches: list[int]
) -> None:
    network = RecordsBatches()
    volume = _volume(slices=1, rows=rows, cols=rows + 20)
    settings = _settings(batch_size=None, roi=roi)
    out = denoise_volume(volume, model=_model(network), settings=settings)
    np.testing.assert_allclose(out, volume, rtol=1e-6, atol=1e-4)
    assert InferenceSettings().batch_size is None
    assert network.batches == batches


def test_a_tile_the_network_cannot_take_is_refused_in_one_line() -> None:
    volume = _volume(slices=1, rows=150, cols=170)
    model = _model(NeedsMultiple(1.0))
    np.testing.assert_allclose(
        denoise_volume(volume, model=model, settings=_settings(roi=(64, 32))), volume, rtol=1e-6, atol=1e-4
    )
    with pytest.raises(ValueError, match=r"^tile 60x64 \(window 60x64 .*\) must be a multiple of 16"):
        denoise_volume(volume, model=model, settings=_settings(roi=(60, 64)))
    small = _volume(slices=1, rows=40, cols=40)  # a tile larger than the image shrinks to it: 40x40
    with pytest.raises(ValueError, match=r"window 40x40 on this image"):
        denoise_volume(small, model=model, settings=_settings(roi=(64, 64)))


@pytest.mark.parametrize("roi", [(0, 64), (-8, 64), (64, 0), (64.0, 64)])
def test_tile_must_be_positive_integers(roi: tuple[object, object]) -> None:
    with pytest.raises(ValueError, match="roi must be two positive integers"):
        _settings(roi=roi)
