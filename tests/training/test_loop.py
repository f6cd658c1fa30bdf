"""The training loop on a tiny AAPM-layout fixture: losses, seeds, logs, early stop, fine-tuning, devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from meddenoise.dicom import find_series
from meddenoise.errors import ConfigError, DeviceError
from meddenoise.models import ModelCard, load_model, save_checkpoint
from meddenoise.models.unet_pu import UNetPU
from meddenoise.training import load_recipe, train_recipe
from meddenoise.training.loop import initial_network, lr_factor
from meddenoise.training.losses import make_loss
from tests.training.layouts import log_rows, write_recipe


def _train(tmp_path: Path, aapm: Path, name: str, **sections: dict) -> Path:
    path = write_recipe(tmp_path / f"{name}.toml", out_dir=tmp_path / name, aapm_root=aapm, **sections)
    train_recipe(load_recipe(path))
    return tmp_path / name


@pytest.mark.parametrize("name", ["l1", "mse", "ssim", "l1+ssim", "mse+ssim"])
def test_losses_are_zero_for_a_perfect_prediction_and_positive_otherwise(name: str) -> None:
    target = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.4
    loss = make_loss(name)  # type: ignore[arg-type]
    assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(target + 0.05 * torch.randn_like(target), target)) > 1e-4


def test_a_mix_is_the_pixel_loss_plus_the_weighted_ssim_loss() -> None:
    pred, target = torch.rand(1, 1, 24, 24), torch.rand(1, 1, 24, 24)
    mixed = make_loss("mse+ssim", ssim_weight=0.5)(pred, target)
    expected = make_loss("mse")(pred, target) + 0.5 * make_loss("ssim")(pred, target)
    assert float(mixed) == pytest.approx(float(expected), rel=1e-6)


def test_learning_rate_warms_up_then_decays_by_cosine() -> None:
    assert lr_factor(0, warmup=4, total=100) == 0.25 and lr_factor(3, warmup=4, total=100) == 1.0
    assert lr_factor(52, warmup=4, total=100) == pytest.approx(0.505)
    assert lr_factor(100, warmup=4, total=100) == pytest.approx(0.01)


def test_learning_rate_anneals_by_the_time_limit_when_that_runs_out_first() -> None:
    # A slow network at iteration 10 of 10000 with half its time used is half-way down the cosine.
    assert lr_factor(10, warmup=4, total=10_000, time_fraction=0.5) == pytest.approx(0.505)
    assert lr_factor(10, warmup=4, total=10_000, time_fraction=1.5) == pytest.approx(0.01)
    # Iterations still rule when they run out first; warm-up ignores the clock.
    assert lr_factor(52, warmup=4, total=100, time_fraction=0.1) == pytest.approx(0.505)
    assert lr_factor(0, warmup=4, total=100, time_fraction=0.9) == 0.25


def test_same_seed_same_losses_and_logs_as_csv_and_json_lines(tmp_path: Path, aapm: Path) -> None:
    train = {"iterations": 2, "validate_every": 1, "optimizer": "adam", "loss": "l1+ssim"}
    first = _train(tmp_path, aapm, "a", train=train)
    again = _train(tmp_path, aapm, "b", train=train)
    other = _train(tmp_path, aapm, "c", train={**train, "seed": 1})
    losses = [r["train_loss"] for r in log_rows(first)]
    assert len(losses) == 2 and losses == [r["train_loss"] for r in log_rows(again)]
    assert losses != [r["train_loss"] for r in log_rows(other)]
    records = [json.loads(line) for line in (first / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    assert {"train_loss", "lr", "abdomen_psnr_db", "abdomen_ssim", "full_psnr_db", "full_ssim"} <= set(
        records[0]
    )
    assert (first / "config.toml").read_text() == (tmp_path / "a.toml").read_text()
    card = load_model(first / "model.pt").card
    assert any("AAPM" in d.collection for d in card.training_data)
    assert any("L096" in m.dataset and "quarter dose" in m.dose for m in card.metrics)
    pixels = {size for info in find_series(aapm).series for size in info.spacing_mm[1:]}
    assert card.pixel_mm_range == (min(pixels), max(pixels))  # inference warns outside it
    state = torch.load(first / "last.pt", weights_only=True)
    assert state["iteration"] == 2 and set(state["optimizer"]) == {"state", "param_groups"}


def test_early_stopping_counts_validations_without_improvement(tmp_path: Path, aapm: Path) -> None:
    run = _train(
        tmp_path,
        aapm,
        "stop",
        train={"iterations": 12, "validate_every": 1, "learning_rate": 1e-12, "early_stopping_patience": 2},
    )
    assert [r["iteration"] for r in log_rows(run)] == ["1", "2", "3"]  # best at 1, then two without gain


def _checkpoint(path: Path, channels: list[int]) -> Path:
    torch.manual_seed(7)
    card = ModelCard(
        name="tiny",
        version="1",
        architecture="unet_pu",
        architecture_kwargs={"channels": channels, "unshuffle": 2},
    )
    save_checkpoint(network=UNetPU(channels=channels), card=card, path=path)
    return path


def test_fine_tuning_starts_from_the_checkpoint_and_keeps_frozen_layers(tmp_path: Path, aapm: Path) -> None:
    start = _checkpoint(tmp_path / "start.pt", [8, 16])
    run = _train(
        tmp_path,
        aapm,
        "ft",
        model={"init_checkpoint": str(start)},
        train={"iterations": 2, "freeze": ["encoders.0", "head"]},
    )
    before = load_model(start).network.state_dict()
    after = load_model(run / "model.pt").network.state_dict()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (name.startswith(("encoders.0.", "head."))), name


def test_fine_tuning_a_different_architecture_is_refused(tmp_path: Path, aapm: Path) -> None:
    start = _checkpoint(tmp_path / "start.pt", [8, 32])
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, model={"init_checkpoint": str(start)}
    )
    with pytest.raises(
        ConfigError, match=r"is a unet_pu with kwargs=.*\[8, 32\].*but \[model\] asks for kwargs"
    ):
        initial_network(load_recipe(path))


def test_an_unknown_freeze_prefix_lists_the_parameter_groups(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"freeze": ["encoder"]}
    )
    with pytest.raises(
        ConfigError, match=r"train\.freeze entry 'encoder' matches no parameter .* encoders\.0\.0"
    ):
        load_recipe(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_requested_where_none_exists_is_one_clear_error(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"device": "cuda"})
    with pytest.raises(DeviceError, match=r"r\.toml: train\.device = 'cuda' but this machine has 0 CUDA GPU"):
        train_recipe(load_recipe(path))
    assert not (tmp_path / "r").exists()


def test_a_malformed_device_is_a_config_error(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"device": "gpu"})
    with pytest.raises(ConfigError, match=r"train\.device = 'gpu'; valid values: auto, cpu, cuda, cuda:N"):
        load_recipe(path)
