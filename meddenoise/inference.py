"""HU volume in, HU volume out: run a model over every slice with MONAI's sliding-window inferer.

This module knows nothing of DICOM. 2D models see slices as the batch; 2.5D models (a card with
``context_slices = k``) see each slice with its k//2 neighbours on either side as channels, the
nearest slice repeated at the ends of the series. The volume is processed in chunks of slices,
so memory stays flat for any series length.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import SlidingWindowInferer

from meddenoise.errors import DeviceError
from meddenoise.models import LoadedModel

__all__ = ["InferenceSettings", "denoise_volume", "resolve_device"]

logger = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class InferenceSettings:
    """How to run a model over a volume.

    Parameters
    ----------
    roi
        Sliding-window size (rows, cols); reduced to the image size where the image is smaller,
        so the network never sees padding.
    overlap
        Fraction of overlap between windows, in [0, 1).
    batch_size
        Windows per forward pass.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads
        CPU threads for torch during the call (restored afterwards); None keeps torch's setting.
    strength
        Blend between input (0) and network output (1).
    chunk_slices
        Slices converted and run together; bounds memory.
    amp
        Mixed precision (bf16 where supported, else fp16) on CUDA; CPU always runs float32.
    """

    roi: tuple[int, int] = (512, 512)
    overlap: float = 0.25
    batch_size: int = 4
    device: str = "auto"
    threads: int | None = None
    strength: float = 1.0
    chunk_slices: int = 16
    amp: bool = True

    def __post_init__(self) -> None:
        roi = tuple(self.roi)
        if len(roi) != 2 or not all(isinstance(r, int) and r >= 1 for r in roi):
            raise ValueError(f"roi must be two positive integers (rows, cols), got {self.roi!r}")
        object.__setattr__(self, "roi", roi)
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not _DEVICE.match(str(self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {self.strength!r}")
        if not (isinstance(self.chunk_slices, int) and self.chunk_slices >= 1):
            raise ValueError(f"chunk_slices must be a positive integer, got {self.chunk_slices!r}")


def resolve_device(requested: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device this machine has.

    Raises
    ------
    ValueError
        If ``requested`` is not one of those forms.
    DeviceError
        If a CUDA device is requested that this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if not _DEVICE.match(requested):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {requested} requested but no CUDA GPU is available; use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {requested} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return device


def denoise_volume(
    hu: npt.NDArray[np.floating],
    *,
    model: LoadedModel,
    settings: InferenceSettings,
    progress: Callable[[int], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Denoise a (slices, rows, cols) HU volume; return float32 HU of the same shape.

    Pixels above the card's network range (metal) or far below it (out-of-field padding; see
    :meth:`NetworkRange.passes_through`) keep their input HU; noisy air just below the range is
    denoised like the rest. ``settings.strength`` blends input and output (0 returns the input
    exactly, without running the network). ``progress`` is called with the number of slices
    finished after each chunk.

    Examples
    --------
    >>> from torch import nn
    >>> from meddenoise.models import ModelCard
    >>> card = ModelCard(name="id", version="1", architecture="none")
    >>> model = LoadedModel(network=nn.Identity(), card=card)
    >>> volume = np.full((2, 40, 50), 40.0, dtype=np.float32)
    >>> out = denoise_volume(volume, model=model, settings=InferenceSettings(roi=(32, 32), device="cpu"))
    >>> out.shape, bool(np.allclose(out, volume))
    ((2, 40, 50), True)
    """
    volume = _checked_volume(hu)
    if settings.strength == 0.0:
        if progress is not None:
            progress(volume.shape[0])
        return volume.copy()
    device = resolve_device(settings.device)
    network = model.network.to(device).eval()
    out = np.empty_like(volume)
    with _torch_threads(settings.threads), torch.inference_mode(), _autocast(device, settings.amp):
        for start in range(0, volume.shape[0], settings.chunk_slices):
            stop = min(start + settings.chunk_slices, volume.shape[0])
            out[start:stop] = _denoise_chunk(
                volume, start, stop, network=network, model=model, settings=settings, device=device
            )
            logger.debug("denoised slices %d..%d of %d", start, stop - 1, volume.shape[0])
            if progress is not None:
                progress(stop - start)
    return out


def _checked_volume(hu: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    volume = np.asarray(hu)
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"hu must be a non-empty (slices, rows, cols) array, got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.number) or np.iscomplexobj(volume):
        raise ValueError(f"hu must be a real numeric array, got dtype {volume.dtype}")
    volume = volume.astype(np.float32, copy=False)
    if not np.isfinite(volume).all():
        raise ValueError("hu contains NaN or infinite values")
    return volume


def _context_units(volume: npt.NDArray[np.float32], start: int, stop: int, model: LoadedModel) -> np.ndarray:
    """Network-unit input (stop-start, k, rows, cols): each slice with its k//2 neighbours either side."""
    k = model.card.context_slices
    halo = k // 2
    index = np.clip(np.arange(start - halo, stop + halo), 0, volume.shape[0] - 1)
    units = model.card.network_range.to_unit(volume[index])
    count = stop - start
    return np.ascontiguousarray(np.stack([units[c : c + count] for c in range(k)], axis=1))


def _denoise_chunk(
    volume: npt.NDArray[np.float32],
    start: int,
    stop: int,
    *,
    network: torch.nn.Module,
    model: LoadedModel,
    settings: InferenceSettings,
    device: torch.device,
) -> npt.NDArray[np.float32]:
    rows, cols = volume.shape[1:]
    inferer = SlidingWindowInferer(
        roi_size=(min(settings.roi[0], rows), min(settings.roi[1], cols)),
        sw_batch_size=settings.batch_size,
        overlap=settings.overlap,
        mode="gaussian",
    )
    inputs = torch.from_numpy(_context_units(volume, start, stop, model)).to(device)
    result = inferer(inputs, network)
    expected = (stop - start, 1, rows, cols)
    if not isinstance(result, torch.Tensor) or tuple(result.shape) != expected:
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise ValueError(
            f"model {model.card.name!r} returned {got}, expected one channel of shape {expected}"
        )
    net_hu = model.card.network_range.to_hu(result[:, 0].float().cpu().numpy())
    source = volume[start:stop]
    denoised = np.where(model.card.network_range.passes_through(source), source, net_hu)
    if settings.strength != 1.0:
        denoised = source + np.float32(settings.strength) * (denoised - source)
    return denoised.astype(np.float32, copy=False)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads inside the block and restore the previous count afterwards."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()
