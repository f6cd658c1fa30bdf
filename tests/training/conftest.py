"""Fixtures shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.layouts import build_aapm


@pytest.fixture(scope="module")
def aapm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small AAPM/Mayo-layout dataset (two patients), built once per test module."""
    torch.set_num_threads(1)
    return build_aapm(tmp_path_factory.mktemp("mayo") / "aapm")
