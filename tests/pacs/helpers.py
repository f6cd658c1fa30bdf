"""Small shared pieces for the PACS tests: a tiny checkpoint and a corrupt series."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import torch

from meddenoise.models import ModelCard, network_from_card, save_checkpoint
from tests.dicom.synthetic import make_series

PYTHON = sys.executable


def save_tiny_model(path: Path) -> Path:
    """An untrained UNetPU(channels=(8, 16)), context 1: fast, and checked like any other."""
    torch.manual_seed(0)
    card = ModelCard(
        name="tiny", version="0.1", architecture="unet_pu", architecture_kwargs={"channels": [8, 16]}
    )
    save_checkpoint(network=network_from_card(card), card=card, path=path)
    return path


def make_corrupt_series(folder: Path, *, seed: int = 99) -> str:
    """A CT series whose middle slice lost its pixel data (found by the walk, refused on reading)."""
    series = make_series(folder, n_slices=3, seed=seed)
    victim = series.paths[1]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    return str(series.series_uid)
