"""The three architectures and the registry: sizes, shape preservation, residual paths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from meddenoise.models import ARCHITECTURES, build_network
from meddenoise.models.dncnn import DnCNN
from meddenoise.models.redcnn import RedCNN
from meddenoise.models.unet_pu import UNetPU


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _zero_(net: nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()


def test_redcnn_has_the_published_parameter_count() -> None:
    # 5×5 convs/deconvs with 96 channels and separate weights per layer (Chen et al. 2017).
    assert _params(RedCNN()) == 1_848_865


@pytest.mark.parametrize(("in_channels", "shape"), [(1, (1, 37, 45)), (3, (2, 21, 22))])
def test_redcnn_preserves_odd_shapes(in_channels: int, shape: tuple[int, int, int]) -> None:
    net = RedCNN(in_channels=in_channels, channels=8).eval()
    with torch.inference_mode():
        out = net(torch.randn(shape[0], in_channels, *shape[1:]))
    assert out.shape == (shape[0], 1, *shape[1:])


def test_redcnn_input_shortcut_uses_the_centre_slice() -> None:
    net = RedCNN(in_channels=3, channels=4, final_relu=False).eval()
    _zero_(net)  # every conv path gives zero, leaving only the input → output shortcut
    x = torch.randn(2, 3, 25, 30)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), x[:, 1:2])
        net.final_relu = True
        torch.testing.assert_close(net(x), x[:, 1:2].clamp(min=0))


def test_dncnn_has_the_published_size_and_predicts_noise() -> None:
    assert _params(DnCNN()) == 556_097
    net = DnCNN(in_channels=3, channels=8, depth=4).eval()
    x = torch.randn(2, 3, 13, 17)
    with torch.inference_mode():
        assert net(x).shape == (2, 1, 13, 17)
        _zero_(net)
        torch.testing.assert_close(net(x), x[:, 1:2])


@pytest.mark.parametrize(
    ("in_channels", "shape"), [(1, (1, 37, 45)), (3, (2, 37, 45)), (1, (1, 5, 3)), (3, (1, 64, 48))]
)
def test_unet_pu_preserves_any_shape(in_channels: int, shape: tuple[int, int, int]) -> None:
    net = UNetPU(in_channels=in_channels, channels=(4, 8, 16)).eval()
    with torch.inference_mode():
        out = net(torch.randn(shape[0], in_channels, *shape[1:]))
    assert out.shape == (shape[0], 1, *shape[1:])


def test_unet_pu_is_residual_and_batch_independent() -> None:
    net = UNetPU(in_channels=3, channels=(4, 8)).eval()
    x = torch.randn(3, 3, 37, 45)
    with torch.inference_mode():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
        _zero_(net.head)
        torch.testing.assert_close(net(x), x[:, 1:2])


def test_unet_pu_default_is_much_smaller_in_compute_than_redcnn() -> None:
    # Wall-clock speed is a benchmark (≈0.1 s vs ≈6-11 s per 512² slice on 2 threads); here we check
    # the structural reason: the default network has a quarter of RED-CNN's parameters and runs on
    # pixel-unshuffled (quarter-size) feature maps.
    net = UNetPU()
    assert net.factor == 8
    assert _params(net) < _params(RedCNN()) / 3


def test_registry_builds_every_architecture_with_context_slices() -> None:
    assert set(ARCHITECTURES) == {"dncnn", "redcnn", "unet_pu"}
    small: dict[str, dict[str, Any]] = {
        "dncnn": {"channels": 4, "depth": 3},
        "redcnn": {"channels": 4},
        "unet_pu": {"channels": [4, 8]},
    }
    for name, kwargs in small.items():
        net = build_network(name, in_channels=3, **kwargs).eval()
        with torch.inference_mode():
            assert net(torch.zeros(1, 3, 24, 26)).shape == (1, 1, 24, 26)


def test_unknown_architecture_names_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown architecture 'unet-pu'.*dncnn, redcnn, unet_pu.*'unet_pu'"
    ):
        build_network("unet-pu")


@pytest.mark.parametrize("bad", [{"in_channels": 0}, {"channels": 0}])
def test_architectures_reject_nonsense_sizes(bad: dict[str, Any]) -> None:
    for constructor in (RedCNN, DnCNN):
        with pytest.raises(ValueError):
            constructor(**bad)
    with pytest.raises(ValueError):
        UNetPU(**({"channels": [0, 4]} if "channels" in bad else bad))
