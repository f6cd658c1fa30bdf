"""Distillation (train.teacher): the student learns the teacher's outputs, and bad teachers are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from meddenoise.errors import ConfigError
from meddenoise.models import load_model
from meddenoise.training import load_recipe, train_recipe
from tests.conftest import save_tiny_model
from tests.training.layouts import log_rows, write_recipe


def _checkpoint(path: Path, *, context: int = 1) -> Path:
    # The recipe's student is UNetPU(8, 16) with unshuffle 2: the same, so it can start from it.
    return save_tiny_model(path, context_slices=context, seed=11, unshuffle=2)


def test_a_student_that_already_agrees_with_its_teacher_learns_nothing_at_full_weight(
    tmp_path: Path, aapm: Path
) -> None:
    # Started from the teacher's own weights with teacher_weight = 1, the loss is the distance to
    # the teacher, zero at every step: the weights must not move. Without the teacher they do.
    teacher = _checkpoint(tmp_path / "teacher.pt")
    runs = {}
    for name, extra in (("taught", {"teacher": str(teacher), "teacher_weight": 1.0}), ("plain", {})):
        path = write_recipe(
            tmp_path / f"{name}.toml",
            out_dir=tmp_path / name,
            aapm_root=aapm,
            model={"init_checkpoint": str(teacher)},
            train={"iterations": 2, "validate_every": 1, "weight_decay": 0.0, **extra},
        )
        train_recipe(load_recipe(path))
        runs[name] = load_model(tmp_path / name / "model.pt")
    start = load_model(teacher).network.state_dict()
    taught = runs["taught"].network.state_dict()
    plain = runs["plain"].network.state_dict()
    assert all(torch.equal(start[k], taught[k]) for k in start)
    assert not all(torch.equal(start[k], plain[k]) for k in start)
    assert [float(r["train_loss"]) for r in log_rows(tmp_path / "taught")] == [0.0, 0.0]
    assert runs["taught"].card.training_config["train"]["teacher"] == str(teacher)


def test_a_teacher_that_does_not_exist_names_the_key_and_writes_nothing(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"teacher": "no-such-teacher"}
    )
    with pytest.raises(ConfigError, match=r"r\.toml: train\.teacher = 'no-such-teacher': unknown model"):
        train_recipe(load_recipe(path))
    assert not (tmp_path / "r").exists()


def test_a_teacher_that_needs_more_context_than_the_student_gets_is_refused(
    tmp_path: Path, aapm: Path
) -> None:
    teacher = _checkpoint(tmp_path / "wide.pt", context=3)
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"teacher": str(teacher)}
    )
    with pytest.raises(
        ConfigError, match=r"train\.teacher = .*reads 3 context slices, more than the student's"
    ):
        train_recipe(load_recipe(path))


def test_a_teacher_weight_outside_0_to_1_is_refused_on_load(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "r", aapm_root=aapm, train={"teacher_weight": 1.5}
    )
    with pytest.raises(ConfigError, match=r"train\.teacher_weight must lie in \[0, 1\], got 1\.5"):
        load_recipe(path)
