"""HU volume in, HU volume out: run a model over every slice with MONAI's sliding-window inferer.

This module knows nothing of DICOM. 2D models see slices as the batch; 2.5D models (a card with
``context_slices = k``) see each slice with its k//2 neighbours on either side as channels, the
nearest slice repeated at the ends of the series. The volume is processed in chunks of slices,
so memory stays flat for any series length. A noise-conditioned model (``card.noise_conditioned``)
also gets each slice's noise level as a map: estimated from the slice itself, or the user's value.

Two runtimes sit behind the same sliding window: torch (any checkpoint; autocast on CUDA) and ONNX
Runtime (an ``.onnx`` checkpoint, whose :class:`~meddenoise.models.onnx_format.OnnxNetwork` is
bound here to the device and thread count of the call).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from monai.inferers import SlidingWindowInferer

from meddenoise.device import DEVICE_PATTERN, resolve_device
from meddenoise.metrics.noise_level import estimate_noise_sd
from meddenoise.models import LoadedModel
from meddenoise.models.onnx_format import OnnxNetwork
from meddenoise.windowing import noise_map_unit

__all__ = ["InferenceSettings", "denoise_volume", "network_input", "resolve_device", "slice_noise_levels"]

logger = logging.getLogger(__name__)

# On CPU an automatic batch holds about one 512² slice of windows: batching bigger windows buys no
# speed on CPU, and each extra 512² window costs about 90 MB of activations (ONNX Runtime keeps them
# in its arena). `python benchmarks/speed.py --lengths ...` measures the effect on peak RSS.
CPU_BATCH_PIXELS = 512 * 512
MAX_AUTO_BATCH_SIZE = 64
GPU_MEMORY_SHARE = 0.5  # of the free GPU memory, what an automatic batch may fill


@dataclass(frozen=True)
class InferenceSettings:
    """How to run a model over a volume.

    Parameters
    ----------
    roi
        Sliding-window size (rows, cols), positive; reduced to the image size where the image is
        smaller, so the network never sees padding. A network that needs tiles of a multiple of
        some size says so with a ``tile_multiple`` attribute (none of the shipped ones does: they
        pad inside, and so does the ONNX runtime).
    overlap
        Fraction of overlap between windows, in [0, 1).
    batch_size
        Windows per forward pass; None chooses: on CPU, about one 512² slice's worth of windows
        (1 for 512² windows, 16 for 128²), and on CUDA as many as fit half the free GPU memory
        (measured with one window, at most 64).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads
        CPU threads for torch during the call (restored afterwards), and ONNX Runtime's intra-op
        threads; None keeps torch's setting and ONNX Runtime's default.
    strength
        Blend between input (0) and network output (1).
    chunk_slices
        Slices converted and run together; bounds memory.
    amp
        Mixed precision (bf16 where supported, else fp16) on CUDA; CPU always runs float32.
    noise_level_hu
        The input's noise SD in HU, told to a noise-conditioned model; None estimates it per
        slice from the image (:func:`~meddenoise.metrics.noise_level.estimate_noise_sd`) and
        limits the estimate to the card's ``noise_level_cap_hu``. A level given here is not capped.
    """

    roi: tuple[int, int] = (512, 512)
    overlap: float = 0.25
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    strength: float = 1.0
    chunk_slices: int = 16
    amp: bool = True
    noise_level_hu: float | None = None

    def __post_init__(self) -> None:
        roi = tuple(self.roi)
        if len(roi) != 2 or not all(isinstance(r, int) and r >= 1 for r in roi):
            raise ValueError(f"roi must be two positive integers (rows, cols), got {self.roi!r}")
        object.__setattr__(self, "roi", roi)
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap!r}")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if not DEVICE_PATTERN.match(str(self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {self.strength!r}")
        if not (isinstance(self.chunk_slices, int) and self.chunk_slices >= 1):
            raise ValueError(f"chunk_slices must be a positive integer, got {self.chunk_slices!r}")
        level = self.noise_level_hu
        if level is not None and not (isinstance(level, int | float) and np.isfinite(level) and level > 0):
            raise ValueError(f"noise level must be a positive number of HU, got {level!r}")


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
    network = _runnable(model, device=device, settings=settings)
    roi = _window(settings.roi, volume.shape[1:], network)
    out = np.empty_like(volume)
    with _torch_threads(settings.threads), torch.inference_mode(), _autocast(device, settings.amp):
        run = _Run(network=network, model=model, settings=settings, device=device, roi=roi)
        run = dataclasses.replace(run, batch_size=_batch_size(run))
        for start in range(0, volume.shape[0], settings.chunk_slices):
            stop = min(start + settings.chunk_slices, volume.shape[0])
            out[start:stop] = _denoise_chunk(volume, start, stop, run=run)
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


def slice_noise_levels(
    volume: npt.NDArray[np.float32], settings: InferenceSettings, *, cap_hu: float | None = None
) -> npt.NDArray[np.float32]:
    """Each slice's noise SD in HU as told to the network: ``settings.noise_level_hu`` if given,
    else estimated per slice and limited to ``cap_hu`` (the card's ``noise_level_cap_hu``).

    Examples
    --------
    >>> flat = np.zeros((2, 64, 64), dtype=np.float32)
    >>> slice_noise_levels(flat, InferenceSettings(noise_level_hu=90.0), cap_hu=60.0).tolist()
    [90.0, 90.0]
    """
    if settings.noise_level_hu is not None:
        return np.full(volume.shape[0], settings.noise_level_hu, dtype=np.float32)
    levels = np.array([estimate_noise_sd(s).sd_hu for s in volume], dtype=np.float32)
    return levels if cap_hu is None else np.minimum(levels, np.float32(cap_hu))


def network_input(
    hu: npt.NDArray[np.floating], *, model: LoadedModel, settings: InferenceSettings
) -> npt.NDArray[np.float32]:
    """What the sliding window cuts its windows from: (slices, k [+ 1], rows, cols) network units,
    each slice with its neighbours (and the noise-level map of a noise-conditioned model).

    Examples
    --------
    >>> from torch import nn
    >>> from meddenoise.models import ModelCard
    >>> model = LoadedModel(network=nn.Identity(), card=ModelCard(name="m", version="1", architecture="x",
    ...                     context_slices=3))
    >>> network_input(np.zeros((2, 8, 8)), model=model, settings=InferenceSettings()).shape
    (2, 3, 8, 8)
    """
    volume = _checked_volume(hu)
    return _context_units(volume, 0, volume.shape[0], model, settings)


def _context_units(
    volume: npt.NDArray[np.float32], start: int, stop: int, model: LoadedModel, settings: InferenceSettings
) -> np.ndarray:
    """Network-unit input (stop-start, k [+1], rows, cols): each slice with its k//2 neighbours
    either side, and the noise-level map for a noise-conditioned model."""
    k = model.card.context_slices
    halo = k // 2
    index = np.clip(np.arange(start - halo, stop + halo), 0, volume.shape[0] - 1)
    units = model.card.network_range.to_unit(volume[index])
    count = stop - start
    channels = [units[c : c + count] for c in range(k)]
    if model.card.noise_conditioned:
        levels = slice_noise_levels(volume[start:stop], settings, cap_hu=model.card.noise_level_cap_hu)
        logger.debug("noise levels of slices %d..%d: %s HU", start, stop - 1, np.round(levels, 1))
        channels.append(np.broadcast_to(noise_map_unit(levels)[:, None, None], channels[0].shape))
    return np.ascontiguousarray(np.stack(channels, axis=1))


@dataclass(frozen=True)
class _Run:
    """What every chunk of one :func:`denoise_volume` call shares."""

    network: torch.nn.Module
    model: LoadedModel
    settings: InferenceSettings
    device: torch.device
    roi: tuple[int, int]
    batch_size: int = 1


def _runnable(model: LoadedModel, *, device: torch.device, settings: InferenceSettings) -> torch.nn.Module:
    """The network on ``device``: a torch module moved there, or an ONNX graph bound to a provider."""
    if isinstance(model.network, OnnxNetwork):
        explicit = settings.device != "auto"
        return model.network.bind(device=device, threads=settings.threads, explicit=explicit)
    return model.network.to(device).eval()


def _window(roi: tuple[int, int], shape: tuple[int, ...], network: torch.nn.Module) -> tuple[int, int]:
    """The sliding window: ``roi`` shrunk to the image; ValueError when the network needs a multiple."""
    window = (min(roi[0], shape[0]), min(roi[1], shape[1]))
    multiple = int(getattr(network, "tile_multiple", 1))
    if any(size % multiple for size in window):
        raise ValueError(
            f"tile {roi[0]}x{roi[1]} (window {window[0]}x{window[1]} on this image) must be a multiple "
            f"of {multiple} for this network"
        )
    return window


def _batch_size(run: _Run) -> int:
    """``settings.batch_size``, or the automatic choice (CPU: one slice's worth of windows; CUDA:
    what fits free memory)."""
    if run.settings.batch_size is not None:
        return run.settings.batch_size
    if run.device.type != "cuda":
        return max(1, min(MAX_AUTO_BATCH_SIZE, CPU_BATCH_PIXELS // (run.roi[0] * run.roi[1])))
    channels = run.model.card.context_slices + int(run.model.card.noise_conditioned)
    probe = torch.zeros((1, channels, *run.roi), device=run.device)
    torch.cuda.synchronize(run.device)
    free_before = torch.cuda.mem_get_info(run.device)[0]
    torch.cuda.reset_peak_memory_stats(run.device)
    allocated = torch.cuda.memory_allocated(run.device)
    run.network(probe)
    torch.cuda.synchronize(run.device)
    if isinstance(run.network, OnnxNetwork):  # ONNX Runtime's arena is outside torch's allocator
        per_window = free_before - torch.cuda.mem_get_info(run.device)[0]
    else:
        per_window = torch.cuda.max_memory_allocated(run.device) - allocated
    fit = int(GPU_MEMORY_SHARE * free_before // max(per_window, 1))
    batch = max(1, min(MAX_AUTO_BATCH_SIZE, fit))
    logger.debug(
        "one %dx%d window takes %.0f MB on %s: batch %d", *run.roi, per_window / 2**20, run.device, batch
    )
    return batch


def _denoise_chunk(
    volume: npt.NDArray[np.float32], start: int, stop: int, *, run: _Run
) -> npt.NDArray[np.float32]:
    rows, cols = volume.shape[1:]
    model, settings = run.model, run.settings
    inferer = SlidingWindowInferer(
        roi_size=run.roi, sw_batch_size=run.batch_size, overlap=settings.overlap, mode="gaussian"
    )
    inputs = torch.from_numpy(_context_units(volume, start, stop, model, settings)).to(run.device)
    result = inferer(inputs, lambda windows: _own_memory(run.network(windows), windows))
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


def _own_memory(output: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """``output``, copied if it shares memory with the input windows: MONAI weights the output in
    place, and with one window per pass that window is a view of the volume itself."""
    shared = output.untyped_storage().data_ptr() == windows.untyped_storage().data_ptr()
    return output.clone() if shared else output


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
