"""RED-CNN: the residual encoder-decoder CNN of Chen et al. (2017).

H. Chen et al., "Low-Dose CT With a Residual Encoder-Decoder Convolutional Neural Network",
IEEE TMI 36(12), 2017. Five 5×5 convolutions and five 5×5 transposed convolutions (96 channels,
no padding, so any image size of at least 21 pixels works), ReLU, and three shortcuts: input →
output, after conv2 → after deconv4 (``residual_2``), after conv4 → after deconv1
(``residual_3``). About 1.85 M parameters for one input channel.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RedCNN"]


class RedCNN(nn.Module):
    """RED-CNN as published: 1.848 M parameters with ``in_channels=1, channels=96``.

    Parameters
    ----------
    in_channels
        Input slices (1 for 2D, an odd k for 2.5D). The input shortcut uses the centre slice.
    channels
        Feature channels of every hidden layer (96 in the paper).
    final_relu
        Apply the paper's ReLU after the last shortcut. It clips negative network units, so keep
        it only with a ``NetworkRange`` whose ``offset_hu`` equals its ``lower_hu`` (units ≥ 0).

    Examples
    --------
    >>> net = RedCNN()
    >>> net(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 1, 37, 45])
    """

    def __init__(self, *, in_channels: int = 1, channels: int = 96, final_relu: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or channels < 1:
            raise ValueError(f"RedCNN needs positive channel counts, got {in_channels=}, {channels=}")
        self.in_channels = in_channels
        self.final_relu = final_relu
        self.convs = nn.ModuleList(
            [nn.Conv2d(in_channels if i == 0 else channels, channels, kernel_size=5) for i in range(5)]
        )
        self.deconvs = nn.ModuleList(
            [nn.ConvTranspose2d(channels, 1 if i == 4 else channels, kernel_size=5) for i in range(5)]
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` of shape (N, in_channels, H, W) into (N, 1, H, W)."""
        centre = self.in_channels // 2
        residual_1 = x[:, centre : centre + 1]
        out = self.relu(self.convs[0](x))
        out = self.relu(self.convs[1](out))
        residual_2 = out
        out = self.relu(self.convs[2](out))
        out = self.relu(self.convs[3](out))
        residual_3 = out
        out = self.relu(self.convs[4](out))
        out = self.deconvs[0](out) + residual_3
        out = self.deconvs[1](self.relu(out))
        out = self.deconvs[2](self.relu(out)) + residual_2
        out = self.deconvs[3](self.relu(out))
        out = self.deconvs[4](self.relu(out)) + residual_1
        return self.relu(out) if self.final_relu else out
