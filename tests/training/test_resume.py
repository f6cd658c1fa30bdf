"""Checkpoints and --resume: an interrupted run continues exactly and its log keeps every row once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from meddenoise.cli import main
from meddenoise.errors import ConfigError
from meddenoise.training import load_recipe, train_recipe
from tests.training.layouts import log_rows, write_recipe


def _interrupt_after(iterations: int) -> Callable[..., object]:
    """A progress factory that raises KeyboardInterrupt (as Ctrl-C would) after ``iterations`` steps."""

    @contextmanager
    def progress(*, description: str, total: int) -> Iterator[Callable[[int], None]]:
        done = 0

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            if description == "train" and done >= iterations:
                raise KeyboardInterrupt

        yield advance

    return progress


def test_an_interrupted_run_resumes_exactly_where_it_stopped(tmp_path: Path, aapm: Path) -> None:
    train = {"iterations": 6, "validate_every": 2}
    straight = write_recipe(tmp_path / "a.toml", out_dir=tmp_path / "a", aapm_root=aapm, train=train)
    train_recipe(load_recipe(straight))
    broken = write_recipe(tmp_path / "b.toml", out_dir=tmp_path / "b", aapm_root=aapm, train=train)
    with pytest.raises(KeyboardInterrupt):
        train_recipe(load_recipe(broken), progress=_interrupt_after(3))  # type: ignore[arg-type]
    assert [r["iteration"] for r in log_rows(tmp_path / "b")] == ["2"]
    assert not (tmp_path / "b" / "model.pt").exists()
    assert main(["train", "--config", str(broken), "--resume"]) == 0
    resumed, reference = log_rows(tmp_path / "b"), log_rows(tmp_path / "a")
    assert [r["iteration"] for r in resumed] == ["2", "4", "6"]
    for got, want in zip(resumed, reference, strict=True):
        assert {k: v for k, v in got.items() if k != "seconds"} == {
            k: v for k, v in want.items() if k != "seconds"
        }
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["iteration"] == 6


def test_resume_to_a_larger_count_appends_and_drops_rows_past_the_checkpoint(
    tmp_path: Path, aapm: Path
) -> None:
    first = write_recipe(tmp_path / "r.toml", out_dir=tmp_path / "run", aapm_root=aapm)
    train_recipe(load_recipe(first))
    with (tmp_path / "run" / "log.csv").open("a") as log:  # a row written just before a crash
        log.write("5,0.1,1e-3,1,1,1,1,1\n")
    with (tmp_path / "run" / "log.jsonl").open("a") as log:
        log.write(json.dumps({"iteration": 5}) + "\n")
    more = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "run", aapm_root=aapm, train={"iterations": 8}
    )
    train_recipe(load_recipe(more), resume=True)
    assert [r["iteration"] for r in log_rows(tmp_path / "run")] == ["2", "4", "6", "8"]
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [2, 4, 6, 8]


def test_resume_without_a_checkpoint_says_so(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(tmp_path / "r.toml", out_dir=tmp_path / "none", aapm_root=aapm)
    with pytest.raises(ConfigError, match=r"--resume: .*none/last\.pt does not exist"):
        train_recipe(load_recipe(path), resume=True)


def test_resume_with_another_network_is_refused(tmp_path: Path, aapm: Path) -> None:
    path = write_recipe(
        tmp_path / "r.toml", out_dir=tmp_path / "run", aapm_root=aapm, train={"iterations": 2}
    )
    train_recipe(load_recipe(path))
    other = write_recipe(
        tmp_path / "o.toml", out_dir=tmp_path / "run", aapm_root=aapm, kwargs={"channels": [8, 8]}
    )
    with pytest.raises(ConfigError, match=r"different \[model\] section"):
        train_recipe(load_recipe(other), resume=True)
