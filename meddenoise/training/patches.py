"""Random training patches from pair runs: body-weighted, flipped and rotated, 2D or 2.5D.

A patch is centred on a body pixel (HU above a threshold in the full-dose slice) with high
probability, so batches are not wasted on air. The input holds ``context`` neighbouring low-dose
slices as channels (edge slices repeat, as at inference); the target is the full-dose centre slice.

Two options serve the noise-aware default. ``noise_channel`` appends the noise-level map that
inference will give: each low-dose slice's own estimate (:func:`estimate_noise_sd`, the estimator
inference uses), jittered a little so the network tolerates the estimator's error. With
``context_dropout`` a patch's neighbours are sometimes replaced by the centre slice itself, which
is what a single slice (or a series' end) looks like at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meddenoise.metrics.noise_level import estimate_noise_sd
from meddenoise.training.pairs import PairRun
from meddenoise.windowing import NetworkRange, noise_map_unit

BODY_FRACTION = 0.9  # the rest are uniform over the slice, so edges and air are still seen
NOISE_JITTER = 0.1  # log-SD of the multiplicative jitter on the noise level the network is told


@dataclass(frozen=True)
class PatchBatch:
    """Network units: inputs (batch, context [+1], p, p) and targets (batch, 1, p, p), float32."""

    inputs: npt.NDArray[np.float32]
    targets: npt.NDArray[np.float32]


class PatchSampler:
    """Draws batches of augmented patches from a list of pair runs."""

    def __init__(
        self,
        runs: list[PairRun],
        *,
        patch_size: int,
        context: int,
        network_range: NetworkRange,
        body_threshold_hu: float,
        seed: int,
        noise_channel: bool = False,
        context_dropout: float = 0.0,
    ) -> None:
        if not runs:
            raise ValueError("PatchSampler needs at least one pair run")
        self.runs = [r for r in runs if min(r.full_hu.shape[1:]) >= patch_size]
        if not self.runs:
            raise ValueError(f"every slice is smaller than the patch size {patch_size}")
        self.patch_size, self.context, self.range = patch_size, context, network_range
        self.rng = np.random.default_rng(seed)
        self.body = [self._body_pixels(r, body_threshold_hu) for r in self.runs]
        self.noise_channel, self.context_dropout = noise_channel, context_dropout
        self.noise_sd = (
            [np.array([estimate_noise_sd(s).sd_hu for s in r.low_hu]) for r in self.runs]
            if noise_channel
            else []
        )

    def _body_pixels(self, run: PairRun, threshold: float) -> list[npt.NDArray[np.int32]]:
        half = self.patch_size // 2
        pixels = []
        for full in run.full_hu:
            inner = full[half : full.shape[0] - half, half : full.shape[1] - half] > threshold
            pixels.append((np.argwhere(inner[::4, ::4]) * 4 + half).astype(np.int32))
        return pixels

    def _centre(self, run_index: int, slice_index: int) -> tuple[int, int]:
        height, width = self.runs[run_index].full_hu.shape[1:]
        half = self.patch_size // 2
        body = self.body[run_index][slice_index]
        if len(body) and self.rng.random() < BODY_FRACTION:
            y, x = body[self.rng.integers(len(body))]
            return int(y), int(x)
        return int(self.rng.integers(half, height - half + 1)), int(self.rng.integers(half, width - half + 1))

    def _patch(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        r = int(self.rng.integers(len(self.runs)))
        run = self.runs[r]
        depth = run.full_hu.shape[0]
        z = int(self.rng.integers(depth))
        cy, cx = self._centre(r, z)
        half = self.patch_size // 2
        ys, xs = slice(cy - half, cy - half + self.patch_size), slice(cx - half, cx - half + self.patch_size)
        neighbours = np.clip(np.arange(z - self.context // 2, z + self.context // 2 + 1), 0, depth - 1)
        if self.context > 1 and self.rng.random() < self.context_dropout:
            neighbours = np.full_like(neighbours, z)  # a lone slice: its neighbours are itself
        low = run.low_hu[neighbours, ys, xs].astype(np.float32)
        full = run.full_hu[z : z + 1, ys, xs].astype(np.float32)
        k = int(self.rng.integers(4))
        low, full = np.rot90(low, k, axes=(1, 2)), np.rot90(full, k, axes=(1, 2))
        if self.rng.random() < 0.5:
            low, full = low[:, :, ::-1], full[:, :, ::-1]
        if self.context > 1 and self.rng.random() < 0.5:
            low = low[::-1]  # the order of neighbours along z carries no meaning
        units = self.range.to_unit(low)
        if self.noise_channel:
            told = self.noise_sd[r][z] * np.exp(self.rng.normal(0.0, NOISE_JITTER))
            units = np.concatenate([units, np.full_like(units[:1], noise_map_unit(told))])
        return units, self.range.to_unit(full)

    def batch(self, size: int) -> PatchBatch:
        """``size`` random patches as contiguous arrays."""
        pairs = [self._patch() for _ in range(size)]
        return PatchBatch(
            inputs=np.ascontiguousarray(np.stack([p[0] for p in pairs])),
            targets=np.ascontiguousarray(np.stack([p[1] for p in pairs])),
        )
