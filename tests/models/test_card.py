"""ModelCard: JSON round trip and validation that names the bad key or value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meddenoise.models import MetricRecord, ModelCard, TrainingData
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
