"""Tests for meddenoise.windowing: network ranges vs display windows."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from meddenoise.windowing import WINDOWS, DisplayWindow, NetworkRange, WindowName, window_by_name


def test_network_range_round_trip_inside_range() -> None:
    r = NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, offset_hu=0.0, scale_hu=1000.0)
    hu = np.linspace(-1024.0, 3071.0, 1001)
    unit = r.to_unit(hu)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(r.to_hu(unit), hu, atol=1e-3)


def test_network_range_clips_outside_and_uses_offset() -> None:
    r = NetworkRange(lower_hu=-1000.0, upper_hu=1000.0, offset_hu=-1000.0, scale_hu=2000.0)
    hu = np.array([-3024.0, -1000.0, 0.0, 1000.0, 4000.0])
    np.testing.assert_allclose(r.to_unit(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(r.to_hu(r.to_unit(hu)), [-1000.0, -1000.0, 0.0, 1000.0, 1000.0])


def test_only_metal_and_padding_pass_through_not_air_just_below_the_range() -> None:
    r = NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, offset_hu=0.0, scale_hu=1000.0)
    hu = np.array([-3024.0, -2048.0, -1600.0, -1400.0, -1100.0, 0.0, 3071.0, 3072.0])
    np.testing.assert_array_equal(r.passes_through(hu), [True, True, True, False, False, False, False, True])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lower_hu": 100.0, "upper_hu": 100.0}, "lower_hu < upper_hu"),
        ({"lower_hu": 200.0, "upper_hu": -200.0}, "lower_hu < upper_hu"),
        ({"scale_hu": 0.0}, "scale_hu > 0"),
        ({"scale_hu": -1.0}, "scale_hu > 0"),
    ],
)
def test_network_range_validates(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkRange(**kwargs)


@pytest.mark.parametrize(
    ("name", "lower", "upper"),
    [
        ("abdomen", -160.0, 240.0),
        ("full", -1024.0, 3072.0),
        ("chest-ldct", -1350.0, 150.0),
        ("abdomen-ldct", -150.0, 250.0),
        ("head-ldct", 0.0, 80.0),
    ],
)
def test_display_window_bounds(name: str, lower: float, upper: float) -> None:
    window = window_by_name(name)
    assert (window.lower_hu, window.upper_hu) == (lower, upper)
    np.testing.assert_allclose(
        window.to_unit(np.array([lower - 500.0, lower, upper, upper + 500.0])), [0, 0, 1, 1]
    )
    np.testing.assert_allclose(window.clip_hu(np.array([lower - 1.0, upper + 1.0])), [lower, upper])


def test_display_window_maps_centre_to_half() -> None:
    window = DisplayWindow("test", center_hu=40.0, width_hu=400.0)
    assert float(window.to_unit(np.array([40.0]))[0]) == pytest.approx(0.5)


def test_window_names_match_literal() -> None:
    assert set(WINDOWS) == set(get_args(WindowName))
    assert all(window.name == key for key, window in WINDOWS.items())


def test_window_by_name_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown window 'abdo'.*abdomen.*head-ldct"):
        window_by_name("abdo")
