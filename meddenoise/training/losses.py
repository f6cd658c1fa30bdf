"""Training losses by name: L1, MSE, SSIM (MONAI) and an L1+SSIM mix."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from meddenoise.training.config import LossName

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SSIM_WEIGHT = 0.2  # in the l1+ssim mix; SSIM alone drifts in mean HU, L1 anchors it


def make_loss(name: LossName) -> Loss:
    """The loss function named in a recipe (inputs in network units, shaped N×1×H×W)."""
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    from monai.losses import SSIMLoss

    # Network units are HU/1000; SSIM's data range is set to the soft-tissue span it should care about.
    ssim = SSIMLoss(spatial_dims=2, data_range=0.4)
    if name == "ssim":
        return ssim
    return lambda pred, target: F.l1_loss(pred, target) + SSIM_WEIGHT * ssim(pred, target)
