"""Tests for meddenoise.metrics on real CT: scikit-image and MONAI agreement, protocols, series."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import examples
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from meddenoise.metrics import (
    PROTOCOLS,
    MetricProtocol,
    ProtocolName,
    psnr,
    rmse,
    score_volume,
    ssim,
)
from tests.conftest import require_shared

Array = npt.NDArray[np.float64]
# (lower HU, upper HU, maps to [0, 1]) per protocol, written out here independently of windowing.py.
EXPECTED = {
    "abdomen": (-160.0, 240.0, False, 400.0),
    "full": (-1024.0, 3072.0, False, 4096.0),
    "chest-ldct": (-1350.0, 150.0, True, 1.0),
    "abdomen-ldct": (-150.0, 250.0, True, 1.0),
    "head-ldct": (0.0, 80.0, True, 1.0),
}


def _hu(ds: pydicom.Dataset) -> Array:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.fixture(scope="module")
def ct_hu() -> Array:
    """pydicom's real 128×128 CT slice, in HU."""
    return _hu(examples.ct)


@pytest.fixture(scope="module")
def noisy_pair(ct_hu: Array) -> tuple[Array, Array]:
    """(denoised-like, reference): the real slice plus 20 HU white noise, and the slice."""
    rng = np.random.default_rng(1234)
    return ct_hu + rng.normal(0.0, 20.0, ct_hu.shape), ct_hu


def _by_hand(hu: Array, protocol_id: str) -> Array:
    lower, upper, to_unit, _ = EXPECTED[protocol_id]
    clipped = np.clip(hu, lower, upper)
    return (clipped - lower) / (upper - lower) if to_unit else clipped


@pytest.mark.parametrize("protocol_id", list(EXPECTED))
def test_metrics_match_scikit_image(noisy_pair: tuple[Array, Array], protocol_id: str) -> None:
    den, ref = noisy_pair
    protocol = PROTOCOLS[protocol_id]
    d, r = _by_hand(den, protocol_id), _by_hand(ref, protocol_id)
    data_range = EXPECTED[protocol_id][3]
    assert protocol.data_range == data_range
    assert psnr(denoised=den, reference=ref, protocol=protocol) == pytest.approx(
        peak_signal_noise_ratio(r, d, data_range=data_range), rel=1e-12
    )
    assert ssim(denoised=den, reference=ref, protocol=protocol) == pytest.approx(
        structural_similarity(r, d, data_range=data_range, win_size=7, use_sample_covariance=False), abs=1e-12
    )
    assert rmse(denoised=den, reference=ref, protocol=protocol) == pytest.approx(
        math.sqrt(mean_squared_error(r, d)), rel=1e-12
    )


def test_rmse_units(noisy_pair: tuple[Array, Array]) -> None:
    den, ref = noisy_pair
    # The slice lies inside [-1024, 3072] HU, so the full protocol sees the 20 HU noise unclipped.
    assert rmse(denoised=den, reference=ref, protocol=PROTOCOLS["full"]) == pytest.approx(20.0, abs=0.5)
    assert PROTOCOLS["full"].rmse_unit == "HU"
    assert PROTOCOLS["chest-ldct"].rmse_unit == "unit"
    unit_rmse = rmse(denoised=den, reference=ref, protocol=PROTOCOLS["chest-ldct"])
    assert 0.0 < unit_rmse < 20.0 / 1500.0 + 1e-3


def _push_outside(hu: Array, lower: float, upper: float) -> Array:
    return np.where(hu < lower, hu - 700.0, np.where(hu > upper, hu + 700.0, hu))


@pytest.mark.parametrize("protocol_id", ["abdomen", "abdomen-ldct", "head-ldct"])
def test_values_outside_window_do_not_change_result(
    noisy_pair: tuple[Array, Array], protocol_id: str
) -> None:
    den, ref = noisy_pair
    protocol = PROTOCOLS[protocol_id]
    lower, upper = protocol.window.lower_hu, protocol.window.upper_hu
    den2, ref2 = _push_outside(den, lower, upper), _push_outside(ref, lower, upper)
    assert not np.array_equal(den2, den)
    for metric in (psnr, ssim, rmse):
        assert metric(denoised=den2, reference=ref2, protocol=protocol) == metric(
            denoised=den, reference=ref, protocol=protocol
        )
    # The same change is visible to the wide protocol, so the check above can fail.
    full = PROTOCOLS["full"]
    assert psnr(denoised=den2, reference=ref2, protocol=full) != psnr(
        denoised=den, reference=ref, protocol=full
    )


def test_abdomen_and_full_psnr_differ_by_data_range(noisy_pair: tuple[Array, Array]) -> None:
    den, ref = noisy_pair
    # Keep every value inside both windows: the MSE is then the same and only data_range differs.
    den_in, ref_in = np.clip(den, -150.0, 230.0), np.clip(ref, -150.0, 230.0)
    abdomen, full = PROTOCOLS["abdomen"], PROTOCOLS["full"]
    gap = psnr(denoised=den_in, reference=ref_in, protocol=full) - psnr(
        denoised=den_in, reference=ref_in, protocol=abdomen
    )
    assert gap == pytest.approx(20.0 * math.log10(4096.0 / 400.0), abs=1e-9)
    assert rmse(denoised=den_in, reference=ref_in, protocol=full) == pytest.approx(
        rmse(denoised=den_in, reference=ref_in, protocol=abdomen)
    )
    # A unit protocol over the same HU span gives the same PSNR as its HU twin (MSE/400² vs data_range 1).
    assert psnr(denoised=den_in, reference=ref_in, protocol=PROTOCOLS["abdomen-ldct"]) == pytest.approx(
        psnr(denoised=den_in, reference=ref_in, protocol=abdomen), abs=1e-9
    )


@pytest.mark.parametrize("protocol_id", list(EXPECTED))
def test_identical_images(ct_hu: Array, protocol_id: str) -> None:
    protocol = PROTOCOLS[protocol_id]
    assert psnr(denoised=ct_hu, reference=ct_hu.copy(), protocol=protocol) == math.inf
    assert ssim(denoised=ct_hu, reference=ct_hu.copy(), protocol=protocol) == pytest.approx(1.0, abs=1e-12)
    assert rmse(denoised=ct_hu, reference=ct_hu.copy(), protocol=protocol) == 0.0


@pytest.mark.parametrize("metric", [psnr, ssim, rmse])
def test_shape_mismatch_names_both_shapes(ct_hu: Array, metric: object) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match=r"\(128, 128\).*\(128, 127\)"):
        metric(denoised=ct_hu, reference=ct_hu[:, :127], protocol=PROTOCOLS["abdomen"])


def test_non_finite_input_is_rejected(ct_hu: Array) -> None:
    bad = ct_hu.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="denoised contains NaN"):
        psnr(denoised=bad, reference=ct_hu, protocol=PROTOCOLS["full"])


def test_ssim_needs_2d(ct_hu: Array) -> None:
    volume = np.stack([ct_hu, ct_hu])
    with pytest.raises(ValueError, match="2D slice"):
        ssim(denoised=volume, reference=volume, protocol=PROTOCOLS["full"])


def test_protocol_registry_and_descriptions() -> None:
    assert tuple(PROTOCOLS) == get_args(ProtocolName)
    for key, protocol in PROTOCOLS.items():
        lower, upper, to_unit, data_range = EXPECTED[key]
        assert protocol.id == key
        assert (protocol.window.lower_hu, protocol.window.upper_hu) == (lower, upper)
        assert protocol.mode == ("unit" if to_unit else "clip_hu")
        assert protocol.data_range == data_range
        assert "uniform 7x7" in protocol.describe_full()
    assert PROTOCOLS["abdomen"].describe() == "abdomen: HU clipped to [-160, 240], data_range=400 HU"
    assert PROTOCOLS["full"].describe() == "full: HU clipped to [-1024, 3072], data_range=4096 HU"
    assert PROTOCOLS["chest-ldct"].describe() == (
        "chest-ldct: window C-600/W1500 ([-1350, 150] HU) mapped to [0, 1], data_range=1"
    )


def test_protocol_by_name_suggests() -> None:
    from meddenoise.metrics import protocol_by_name

    assert protocol_by_name("head-ldct") is PROTOCOLS["head-ldct"]
    with pytest.raises(ValueError, match=r"unknown metric protocol 'abdomem'.*full.*did you mean 'abdomen'"):
        protocol_by_name("abdomem")
    with pytest.raises(ValueError, match="valid protocols: abdomen, full"):
        protocol_by_name("lung")


def test_protocol_validates() -> None:
    with pytest.raises(ValueError, match="data_range > 0"):
        MetricProtocol("x", PROTOCOLS["full"].window, "clip_hu", 0.0)
    with pytest.raises(ValueError, match="unknown protocol mode 'hu'"):
        MetricProtocol("x", PROTOCOLS["full"].window, "hu", 1.0)  # type: ignore[arg-type]


# --- MONAI agreement (EVALUATION.md: scikit-image and MONAI SSIM agree within 1e-3) -------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _monai_ssim(den: Array, ref: Array, *, data_range: float, kernel_type: str, win_size: int) -> float:
    import torch
    from monai.metrics import SSIMMetric

    metric = SSIMMetric(spatial_dims=2, data_range=data_range, kernel_type=kernel_type, win_size=win_size)
    value = metric(torch.from_numpy(den)[None, None], torch.from_numpy(ref)[None, None])
    assert isinstance(value, torch.Tensor)
    return float(value.item())


def _agreement_pairs(ct_hu: Array) -> Iterator[tuple[Array, Array]]:
    rng = np.random.default_rng(7)
    for sd in (10.0, 80.0):
        yield ct_hu + rng.normal(0.0, sd, ct_hu.shape), ct_hu


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("protocol_id", list(EXPECTED))
def test_ssim_agrees_with_monai(ct_hu: Array, protocol_id: str) -> None:
    protocol = PROTOCOLS[protocol_id]
    for den, ref in _agreement_pairs(ct_hu):
        ours = ssim(denoised=den, reference=ref, protocol=protocol)
        theirs = _monai_ssim(
            protocol.prepare(den),
            protocol.prepare(ref),
            data_range=protocol.data_range,
            kernel_type="uniform",
            win_size=7,
        )
        assert abs(ours - theirs) < 1e-3, (protocol_id, ours, theirs)


@pytest.mark.shared_data
@pytest.mark.usefixtures("one_thread")
def test_ssim_agrees_with_monai_on_512_slice() -> None:
    """A real 512×512 GE slice with padding, at high noise, where sample covariance would differ by ~2e-3."""
    folder = require_shared("fixtures/dcmqi-ct-3slice/01-series")
    ref = _hu(pydicom.dcmread(sorted(Path(folder).glob("*.dcm"))[1]))
    den = ref + np.random.default_rng(3).normal(0.0, 80.0, ref.shape)
    for protocol_id in ("abdomen", "full"):
        protocol = PROTOCOLS[protocol_id]
        ours = ssim(denoised=den, reference=ref, protocol=protocol)
        theirs = _monai_ssim(
            protocol.prepare(den),
            protocol.prepare(ref),
            data_range=protocol.data_range,
            kernel_type="uniform",
            win_size=7,
        )
        assert abs(ours - theirs) < 1e-3, (protocol_id, ours, theirs)


@pytest.mark.usefixtures("one_thread")
def test_gaussian_ssim_settings_also_agree_with_monai(noisy_pair: tuple[Array, Array]) -> None:
    """The matching Gaussian settings: scikit-image sigma 1.5 (11×11 support), population covariance."""
    den, ref = (np.clip(a, -160.0, 240.0) for a in noisy_pair)
    sk = structural_similarity(
        ref, den, data_range=400.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    mo = _monai_ssim(den, ref, data_range=400.0, kernel_type="gaussian", win_size=11)
    assert abs(sk - mo) < 1e-3


# --- series scores ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def volume_pair(ct_hu: Array) -> tuple[Array, Array]:
    """Three slices: noise 10 HU, identical, noise 40 HU (denoised, reference)."""
    rng = np.random.default_rng(99)
    ref = np.stack([ct_hu, np.flipud(ct_hu), np.fliplr(ct_hu)])
    den = ref.copy()
    den[0] += rng.normal(0.0, 10.0, ct_hu.shape)
    den[2] += rng.normal(0.0, 40.0, ct_hu.shape)
    return den, ref


def test_score_volume_per_slice_and_means(volume_pair: tuple[Array, Array]) -> None:
    den, ref = volume_pair
    positions = [-12.5, -10.0, -7.5]
    scores = score_volume(denoised=den, reference=ref, protocols=("full", "abdomen"), positions_mm=positions)
    assert list(scores) == ["full", "abdomen"]
    for key, series in scores.items():
        protocol = PROTOCOLS[key]
        assert series.protocol is protocol
        assert series.n_slices == 3
        for i, s in enumerate(series.per_slice):
            assert (s.index, s.position_mm, s.protocol) == (i, positions[i], key)
            assert s.psnr == psnr(denoised=den[i], reference=ref[i], protocol=protocol)
            assert s.ssim == ssim(denoised=den[i], reference=ref[i], protocol=protocol)
            assert s.rmse == rmse(denoised=den[i], reference=ref[i], protocol=protocol)
        assert series.per_slice[1].psnr == math.inf
        assert series.n_infinite_psnr == 1
        assert series.mean_psnr == pytest.approx((series.per_slice[0].psnr + series.per_slice[2].psnr) / 2)
        assert series.mean_ssim == pytest.approx(np.mean([s.ssim for s in series.per_slice]))
        assert series.mean_rmse == pytest.approx(np.mean([s.rmse for s in series.per_slice]))
        assert series.per_slice[0].psnr > series.per_slice[2].psnr
        assert "mean of per-slice" in series.aggregation


def test_score_volume_all_identical_and_no_positions(volume_pair: tuple[Array, Array]) -> None:
    _, ref = volume_pair
    series = score_volume(denoised=ref, reference=ref, protocols=["head-ldct"])["head-ldct"]
    assert series.mean_psnr == math.inf
    assert series.n_infinite_psnr == 3
    assert series.mean_ssim == pytest.approx(1.0)
    assert series.mean_rmse == 0.0
    assert all(s.position_mm is None for s in series.per_slice)


def test_score_volume_validates(volume_pair: tuple[Array, Array]) -> None:
    den, ref = volume_pair
    with pytest.raises(ValueError, match=r"\(3, 128, 128\).*\(2, 128, 128\)"):
        score_volume(denoised=den, reference=ref[:2])
    with pytest.raises(ValueError, match="slices, rows, cols"):
        score_volume(denoised=den[0], reference=ref[0])
    with pytest.raises(ValueError, match="positions_mm has 2 values for 3 slices"):
        score_volume(denoised=den, reference=ref, positions_mm=[0.0, 1.0])
    with pytest.raises(ValueError, match="did you mean 'full'"):
        score_volume(denoised=den, reference=ref, protocols=["ful"])
