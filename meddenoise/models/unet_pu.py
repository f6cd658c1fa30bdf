"""``unet_pu``: a small, fast U-Net that starts with a pixel-unshuffle.

Pixel-unshuffle (factor 2) turns k×H×W into 4k×H/2×W/2 without losing information, so every
convolution runs on a quarter of the pixels. A U-Net with GroupNorm-free, BatchNorm-free 3×3
convolutions (batch-size independent) predicts the noise in that space, pixel-shuffle brings it
back, and the output is the centre input slice minus the noise. Any H, W works: the input is
padded to a multiple of the total downsampling factor and the output cropped back.

With ``noise_channel`` the input carries one more channel after the slices: a map of the input's
noise level (FFDNet's idea), so one network can remove as much noise as each scan holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNetPU"]


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.SiLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.SiLU(inplace=True),
    )


class UNetPU(nn.Module):
    """Pixel-unshuffle U-Net (about 0.5 M parameters with the defaults).

    Parameters
    ----------
    in_channels
        Input slices (1 for 2D, an odd k for 2.5D). The residual uses the centre slice.
    channels
        Feature channels per U-Net level; each level after the first halves the resolution.
    unshuffle
        Pixel-unshuffle factor applied first.
    noise_channel
        Expect one extra input channel after the slices: the noise-level map (see
        :func:`meddenoise.windowing.noise_map_unit`).

    Examples
    --------
    >>> UNetPU(channels=(4, 8))(torch.zeros(1, 1, 37, 45)).shape
    torch.Size([1, 1, 37, 45])
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        unshuffle: int = 2,
        noise_channel: bool = False,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        if in_channels < 1 or unshuffle < 1 or not chans or min(chans) < 1:
            raise ValueError(f"UNetPU needs positive sizes, got {in_channels=}, {channels=}, {unshuffle=}")
        self.in_channels = in_channels
        self.noise_channel = bool(noise_channel)
        self.unshuffle = unshuffle
        self.factor = unshuffle * 2 ** (len(chans) - 1)
        stem = (in_channels + self.noise_channel) * unshuffle**2
        self.encoders = nn.ModuleList(_block(a, b) for a, b in zip([stem, *chans[:-1]], chans, strict=True))
        self.downs = nn.ModuleList(nn.Conv2d(c, c, 2, stride=2) for c in chans[:-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in itertools.pairwise(chans))
        self.decoders = nn.ModuleList(_block(2 * c, c) for c in chans[:-1])
        self.head = nn.Conv2d(chans[0], unshuffle**2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` of shape (N, in_channels [+ 1 noise map], H, W) into (N, 1, H, W)."""
        height, width = x.shape[-2:]
        padded = _pad_to_multiple(x, self.factor)
        out = F.pixel_unshuffle(padded, self.unshuffle)
        skips = []
        for level, encoder in enumerate(self.encoders):
            out = encoder(out)
            if level < len(self.downs):
                skips.append(out)
                out = self.downs[level](out)
        for up, decoder in zip(reversed(self.ups), reversed(self.decoders), strict=True):
            out = decoder(torch.cat([up(out), skips.pop()], dim=1))
        noise = F.pixel_shuffle(self.head(out), self.unshuffle)[..., :height, :width]
        centre = self.in_channels // 2
        return x[:, centre : centre + 1] - noise


def _pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Pad the bottom/right of ``x`` to a multiple of ``factor`` (reflect; replicate if too small)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % factor, -width % factor
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
