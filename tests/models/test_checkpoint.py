"""Checkpoint format: save → load round trip, checksums, and one-line errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from meddenoise.errors import CheckpointError
from meddenoise.models import (
    CHECKPOINT_FORMAT,
    DEFAULT_MODEL_NAME,
    ModelCard,
    load_model,
    network_from_card,
    save_checkpoint,
    shipped_models,
    weights_sha256,
)
from meddenoise.models import checkpoint as checkpoint_module
from meddenoise.models.unet_pu import UNetPU


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _card(**changes: object) -> ModelCard:
    values: dict[str, object] = {
        "name": "tiny",
        "version": "0.1",
        "architecture": "unet_pu",
        "architecture_kwargs": {"channels": [4, 8]},
        "context_slices": 3,
        "created": "2024-01-02",
    }
    values.update(changes)
    return ModelCard(**values)  # type: ignore[arg-type]


def _saved(tmp_path: Path) -> tuple[Path, ModelCard, torch.nn.Module]:
    network = network_from_card(_card()).eval()
    path = tmp_path / "tiny.pt"
    return path, save_checkpoint(network=network, card=_card(), path=path), network


def test_round_trip_gives_the_same_network_and_card(tmp_path: Path) -> None:
    path, saved, network = _saved(tmp_path)
    assert saved.weights_sha256 == weights_sha256(network.state_dict())
    loaded = load_model(path)
    assert loaded.card == saved
    assert not loaded.network.training
    x = torch.randn(2, 3, 37, 45)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.network(x), network(x), rtol=0, atol=0)
    assert load_model(str(path)).card == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", "tiny.pt.card.json"]  # no temp files
    assert ModelCard.from_json((tmp_path / "tiny.pt.card.json").read_text()) == saved
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    assert set(raw) == {"format", "card", "state_dict"}


def test_sha256_is_canonical_and_sensitive() -> None:
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    b = {"b": torch.zeros(3), "w": torch.arange(6.0).reshape(2, 3)}
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"].reshape(3, 2)})
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"].double()})
    assert len(weights_sha256({"h": torch.ones(2, dtype=torch.bfloat16)})) == 64


def test_tampered_checkpoint_fails_its_checksum(tmp_path: Path) -> None:
    path, saved, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    tensor = payload["state_dict"]["head.weight"]
    tensor.numpy().reshape(-1).view(np.uint8)[0] ^= 0xFF  # flip one byte in place
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=rf"tiny\.pt fails its checksum: expected {saved.weights_sha256}"
    ):
        load_model(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a meddenoise checkpoint"):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"other\.pt is not a meddenoise checkpoint"):
        load_model(other)
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_model(tmp_path / "missing.pt")


def test_unknown_architecture_in_checkpoint_lists_valid_ones(tmp_path: Path) -> None:
    path, _, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["card"]["architecture"] = "unet-pu"
    torch.save(payload, path)
    with pytest.raises(
        CheckpointError, match=r"tiny\.pt: unknown architecture 'unet-pu'.*dncnn, redcnn, unet_pu"
    ):
        load_model(path)


def test_card_that_does_not_fit_the_weights_is_refused(tmp_path: Path) -> None:
    network = UNetPU(in_channels=3, channels=(4, 8))
    with pytest.raises(ValueError, match="does not describe this network"):
        save_checkpoint(network=network, card=_card(context_slices=1), path=tmp_path / "a.pt")
    path, _, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["card"]["architecture_kwargs"] = {"channels": [4, 16]}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"tiny\.pt does not fit architecture 'unet_pu'"):
        load_model(path)


def test_unknown_model_name_lists_shipped_names_and_mentions_paths() -> None:
    with pytest.raises(CheckpointError, match=r"unknown model 'no-such-model'; shipped models: .*path"):
        load_model("no-such-model")


def test_shipped_lookup_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    network = network_from_card(_card(name="demo-v1"))
    saved = save_checkpoint(network=network, card=_card(name="demo-v1"), path=weights / "demo-v1.pt")
    (weights / "README.md").write_text("not a card\n")
    monkeypatch.setattr(checkpoint_module, "_weights_folder", lambda: weights)
    assert shipped_models() == [saved]
    assert load_model("demo-v1").card == saved
    with pytest.raises(CheckpointError, match=r"shipped models: demo-v1 \(a path"):
        load_model("demo-v2")
    (weights / "broken.pt.card.json").write_text(json.dumps({"name": "broken"}))
    with pytest.raises(CheckpointError, match=r"broken\.pt\.card\.json is invalid"):
        shipped_models()


def test_shipped_models_load_and_match_their_cards() -> None:
    cards = shipped_models()
    if DEFAULT_MODEL_NAME not in [card.name for card in cards]:
        pytest.skip(f"the default model {DEFAULT_MODEL_NAME} has not been trained and shipped yet")
    for card in cards:
        assert load_model(card.name).card == card
