"""ModelCard: JSON round trip and validation that names the bad key or value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meddenoise.models import MetricRecord, ModelCard, TrainingData, card_markdown
from meddenoise.windowing import NetworkRange


def _card() -> ModelCard:
    return ModelCard(
        name="unet-pu-v1",
        version="1.0.0",
        architecture="unet_pu",
        architecture_kwargs={"channels": [32, 64, 128]},
        network_range=NetworkRange(lower_hu=-1024.0, upper_hu=3071.0, offset_hu=-1024.0, scale_hu=4095.0),
        context_slices=3,
        training_data=(
            TrainingData(collection="LDCT-and-Projection-data", licence="TCIA", citation="McCollough 2020"),
        ),
        training_config={"epochs": 10, "lr": 1e-4},
        metrics=(MetricRecord(name="psnr", value=40.5, protocol="abdomen", dataset="test", dose="25%"),),
        description="a test card",
        created="2024-05-01",
    )


def test_round_trips_through_dict_and_json() -> None:
    card = _card()
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_json(card.to_json()) == card
    data = json.loads(card.to_json())
    assert data["network_range"]["scale_hu"] == 4095.0
    assert data["training_data"][0]["role"] == "training"
    assert isinstance(data["metrics"], list)


def test_defaults_are_valid() -> None:
    card = ModelCard(name="x", version="1", architecture="dncnn")
    assert card.context_slices == 1
    assert card.network_range == NetworkRange()
    assert ModelCard.from_dict(card.to_dict()) == card


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda d: d["network_range"].update(window=1), r"network_range has unknown keys \['window'\]"),
        (lambda d: d["metrics"][0].update(units="dB"), r"metrics entry has unknown keys"),
        (lambda d: d["training_data"][0].pop("licence"), r"lacks required keys \['licence'\]"),
        (lambda d: d.pop("architecture"), r"lacks required keys \['architecture'\]"),
        (lambda d: d.update(context_slices=2), "positive odd integer"),
        (lambda d: d.update(weights_sha256="abc"), "64 lowercase hex"),
        (lambda d: d.update(created="yesterday"), "ISO date"),
        (lambda d: d.update(name="Bad Name"), "must match"),
        (lambda d: d["architecture_kwargs"].update(in_channels=3), "context_slices"),
        (lambda d: d.update(network_range=[1, 2]), "must be a mapping"),
    ],
)
def test_from_dict_rejects_bad_cards(mutate: Any, message: str) -> None:
    data = _card().to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=message):
        ModelCard.from_dict(data)


def test_kwargs_must_be_plain_json() -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        ModelCard(name="x", version="1", architecture="dncnn", training_config={"f": object()})


def test_the_training_pixel_range_round_trips_and_warns_only_outside_it() -> None:
    card = ModelCard(name="demo", version="1", architecture="unet_pu", pixel_mm_range=(0.6, 1.0))
    assert ModelCard.from_json(card.to_json()) == card
    assert json.loads(card.to_json())["pixel_mm_range"] == [0.6, 1.0]
    for inside in (0.6, 0.8, 1.0, 0.55, 1.1):  # the range, and within 15 % of its ends
        assert card.pixel_size_warning(inside) is None
    message = card.pixel_size_warning(1.5)
    assert message is not None
    assert "1.5 mm" in message and "0.6-1 mm" in message and "demo" in message
    assert card.pixel_size_warning(0.45) is not None
    unknown = ModelCard(name="old", version="1", architecture="unet_pu")
    assert unknown.pixel_size_warning(5.0) is None  # a card from before the range was recorded


@pytest.mark.parametrize("bad", [(1.0, 0.5), (0.0, 1.0), (0.5,), (0.5, 1.0, 2.0)])
def test_a_malformed_pixel_range_is_refused(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="pixel_mm_range"):
        ModelCard(name="demo", version="1", architecture="unet_pu", pixel_mm_range=bad)  # type: ignore[arg-type]


def test_the_noise_level_cap_round_trips_shows_in_the_markdown_and_needs_a_noise_map() -> None:
    card = ModelCard(
        name="demo",
        version="1",
        architecture="unet_pu",
        architecture_kwargs={"noise_channel": True},
        noise_level_cap_hu=60,
    )
    assert ModelCard.from_json(card.to_json()) == card and card.noise_level_cap_hu == 60.0
    assert "noise map capped at 60 HU" in card_markdown(card)
    old = card.to_dict()
    del old["noise_level_cap_hu"]
    assert ModelCard.from_dict(old).noise_level_cap_hu is None  # a card from before the cap existed
    for bad, kwargs in ((0.0, {"noise_channel": True}), (float("nan"), {"noise_channel": True}), (60.0, {})):
        with pytest.raises(ValueError, match="noise_level_cap_hu"):
            ModelCard(
                name="d",
                version="1",
                architecture="unet_pu",
                architecture_kwargs=kwargs,
                noise_level_cap_hu=bad,
            )
