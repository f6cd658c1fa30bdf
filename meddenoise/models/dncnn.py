"""DnCNN: Zhang et al. (2017), a deep residual CNN that predicts the noise.

K. Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising",
IEEE TIP 26(7), 2017. 17 layers of 3×3 convolutions with 64 channels: conv+ReLU, 15 ×
(conv+BatchNorm+ReLU), conv. The output is the centre input slice minus the predicted noise.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    """DnCNN-17 (about 0.56 M parameters with 64 channels); a baseline.

    Parameters
    ----------
    in_channels
        Input slices (1 for 2D, an odd k for 2.5D). The residual uses the centre slice.
    channels
        Feature channels (64 in the paper).
    depth
        Number of convolution layers (17 in the paper).

    Examples
    --------
    >>> DnCNN(depth=3, channels=8)(torch.zeros(2, 1, 9, 11)).shape
    torch.Size([2, 1, 9, 11])
    """

    def __init__(self, *, in_channels: int = 1, channels: int = 64, depth: int = 17) -> None:
        super().__init__()
        if in_channels < 1 or channels < 1 or depth < 2:
            raise ValueError(f"DnCNN needs positive channels and depth >= 2, got {in_channels=}, {depth=}")
        self.in_channels = in_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` of shape (N, in_channels, H, W) into (N, 1, H, W)."""
        centre = self.in_channels // 2
        return x[:, centre : centre + 1] - self.body(x)
