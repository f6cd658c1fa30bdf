"""Training losses by name: L1, MSE, SSIM (MONAI) and weighted L1+SSIM / MSE+SSIM mixes."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from meddenoise.training.config import LossName

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SSIM_WEIGHT = 0.2  # default weight in the mixes; SSIM alone drifts in mean HU, L1/MSE anchor it
SSIM_DATA_RANGE = 0.4  # network units are HU/1000: SSIM cares about a 400 HU soft-tissue span


def make_loss(name: LossName, *, ssim_weight: float = SSIM_WEIGHT) -> Loss:
    """The loss function named in a recipe (inputs in network units, shaped N×1×H×W).

    ``l1+ssim`` and ``mse+ssim`` are ``pixel_loss + ssim_weight * (1 - SSIM)``.

    Examples
    --------
    >>> x = torch.zeros(1, 1, 16, 16)
    >>> float(make_loss("l1")(x + 0.5, x))
    0.5
    """
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    from monai.losses import SSIMLoss

    ssim = SSIMLoss(spatial_dims=2, data_range=SSIM_DATA_RANGE)
    if name == "ssim":
        return ssim
    pixel: Loss = F.l1_loss if name == "l1+ssim" else F.mse_loss
    if name not in ("l1+ssim", "mse+ssim"):
        raise ValueError(f"unknown loss {name!r}; valid: l1, mse, ssim, l1+ssim, mse+ssim")
    return lambda pred, target: pixel(pred, target) + ssim_weight * ssim(pred, target)
