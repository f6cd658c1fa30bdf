"""The Python engine: load a model once, denoise many inputs (``Denoiser``, ``AsyncDenoiser``).

``Denoiser.denoise(x)`` takes an HU array (slices, rows, cols) or one slice (rows, cols), a
:class:`~meddenoise.dicom.CTSeries`, or a path to a DICOM folder or file, and returns the matching
kind: an array for an array, a ``CTSeries`` for a series *and for a path* (the path is read, the
result stays in memory and nothing is written; :meth:`Denoiser.write` writes derived series through
the one series runner).

``AsyncDenoiser`` has the same arguments; ``await denoiser.denoise(x)`` queues the call on the one
worker thread of its device, shared by every ``AsyncDenoiser`` of the process, so the event loop
never runs model or file work and a device never runs two calls at once. Calls queued together run
back to back on the loaded model; arrays and series of the same slice size sent to a 2D model
(``context_slices == 1``) with the same settings are stacked into one volume, so their slices share
forward passes, and split again.

Examples
--------
>>> import numpy as np
>>> from meddenoise.pipeline.api import Denoiser
>>> denoiser = Denoiser(model="unet-pu-v1", device="cpu", tile=64)  # doctest: +SKIP
>>> denoiser.denoise(np.zeros((2, 64, 64), dtype=np.float32)).shape  # doctest: +SKIP
(2, 64, 64)
>>> series = denoiser.denoise("scans/patient1")  # doctest: +SKIP
>>> summary = denoiser.write("scans", out_dir="out")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
import numpy.typing as npt

from meddenoise.device import resolve_device
from meddenoise.dicom import CTSeries
from meddenoise.inference import InferenceSettings, denoise_volume
from meddenoise.models import LoadedModel, ModelCard
from meddenoise.pipeline.load import read_series, resolve_model, warn_unfamiliar_pixels
from meddenoise.pipeline.request import OutputPolicy, RunRequest
from meddenoise.pipeline.runner import RunSummary, denoise_path

logger = logging.getLogger(__name__)

Input = str | Path | CTSeries | npt.NDArray[np.floating]
WORKER_IDLE_S = 30.0  # a device worker with nothing to do for this long stops (restarted on demand)


@dataclass(frozen=True)
class _Options:
    """The arguments ``Denoiser`` and ``AsyncDenoiser`` share, checked once."""

    model: str | Path | LoadedModel | None
    settings: InferenceSettings


def _options(
    *,
    model: str | Path | LoadedModel | None,
    device: str,
    batch_size: int | None,
    tile: int,
    strength: float,
    noise_level: float | None,
) -> _Options:
    settings = InferenceSettings(
        roi=(tile, tile), batch_size=batch_size, device=device, strength=strength, noise_level_hu=noise_level
    )
    return _Options(model=model, settings=settings)


class Denoiser:
    """A model loaded once, and the settings to run it with.

    Parameters
    ----------
    model
        A shipped model name, a checkpoint path (``.pt`` or ``.onnx``) or a loaded model;
        None: the shipped default.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (resolved once, here).
    batch_size
        Sliding-window tiles per forward pass (None: one 512² slice's worth on CPU, fitted to the GPU).
    tile
        Sliding-window tile size in pixels (shrunk to the image when larger).
    strength
        Blend between the input (0) and the network's output (1).
    noise_level
        The input's noise SD in HU for a noise-conditioned model (None: estimated per slice).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from meddenoise.models import LoadedModel, ModelCard
    >>> identity = LoadedModel(nn.Identity(), ModelCard(name="id", version="1", architecture="none"))
    >>> denoiser = Denoiser(model=identity, device="cpu", tile=32)
    >>> out = denoiser.denoise(np.full((2, 40, 40), 30.0))
    >>> out.shape, out.dtype, float(out.mean())
    ((2, 40, 40), dtype('float32'), 30.0)
    """

    def __init__(
        self,
        model: str | Path | LoadedModel | None = None,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        tile: int = 512,
        strength: float = 1.0,
        noise_level: float | None = None,
    ) -> None:
        options = _options(
            model=model,
            device=device,
            batch_size=batch_size,
            tile=tile,
            strength=strength,
            noise_level=noise_level,
        )
        self.device = str(resolve_device(device))
        self.model = resolve_model(options.model, device=self.device)
        self.settings = replace(options.settings, device=self.device)

    @property
    def card(self) -> ModelCard:
        """The loaded model's card (name, version, training range)."""
        return self.model.card

    @overload
    def denoise(self, x: CTSeries | str | Path) -> CTSeries: ...

    @overload
    def denoise(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]: ...

    def denoise(self, x: Input) -> CTSeries | npt.NDArray[np.float32]:
        """Denoise an HU array, a series, or the one CT series under a path (nothing is written).

        Returns a float32 array of the input's shape for an array, a ``CTSeries`` (same geometry
        and headers) for a series or a path. Raises ``TypeError`` for anything else.
        """
        if isinstance(x, str | Path):
            x = read_series(x)
        if isinstance(x, CTSeries):
            return self._series(x)
        if isinstance(x, np.ndarray):
            return self._array(x)
        raise TypeError(f"denoise takes a path, a CTSeries or an HU numpy array, got {type(x).__name__}")

    def write(self, input_path: str | Path, *, out_dir: str | Path, report: bool = False) -> RunSummary:
        """Denoise every CT series under ``input_path`` into derived series under ``out_dir``.

        The series runner does the work (:func:`~meddenoise.pipeline.denoise_path`) with this
        loaded model; with ``report`` each series also gets its ``<folder>.report/``.
        """
        request = RunRequest(model=self.model, settings=self.settings, output=OutputPolicy(report=report))
        return denoise_path(input_path=input_path, out_dir=out_dir, request=request)

    def _series(self, series: CTSeries) -> CTSeries:
        warn_unfamiliar_pixels(self.model, series.info.spacing_mm, "series")
        return replace(series, hu=self._volume(series.hu))

    def _array(self, hu: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        if hu.ndim == 2:  # one slice
            return self._volume(hu[None])[0]
        return self._volume(hu)

    def _volume(self, hu: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        return denoise_volume(hu, model=self.model, settings=self.settings)

    def stackable(self) -> bool:
        """Whether slices of different calls may share one volume (a 2D model: slices independent)."""
        return self.model.card.context_slices == 1


@dataclass(eq=False)
class _Call:
    """One queued ``AsyncDenoiser.denoise`` call."""

    owner: AsyncDenoiser
    x: Input
    done: Future[Any]


class _DeviceWorker:
    """The one thread that runs every ``AsyncDenoiser`` call for a device, in arrival order."""

    registry: ClassVar[dict[str, _DeviceWorker]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, device: str) -> None:
        self.device = device
        self.calls: queue.Queue[_Call] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name=f"meddenoise-{device}", daemon=True)
        self.thread.start()

    @classmethod
    def submit(cls, device: str, call: _Call) -> None:
        """Queue ``call`` on the device's worker, starting one when none runs."""
        with cls.lock:
            worker = cls.registry.get(device)
            if worker is None:
                worker = cls.registry[device] = _DeviceWorker(device)
            worker.calls.put(call)

    def _loop(self) -> None:
        while True:
            try:
                first = self.calls.get(timeout=WORKER_IDLE_S)
            except queue.Empty:
                with self.lock:  # submit holds the lock too, so no call is left behind
                    if self.calls.empty():
                        del self.registry[self.device]
                        return
                continue
            group = [first]
            while True:
                try:
                    group.append(self.calls.get_nowait())
                except queue.Empty:
                    break
            _run_group(group)


def _run_group(group: list[_Call]) -> None:
    """Run calls queued together: stackable ones of one denoiser and slice size as one volume."""
    pending = [call for call in group if call.done.set_running_or_notify_cancel()]
    stacks: dict[tuple[int, tuple[int, ...]], list[tuple[_Call, Any]]] = {}
    for call in pending:
        try:
            denoiser = call.owner.loaded()
            if isinstance(call.x, _Work):
                call.done.set_result(call.x.work(denoiser))
                continue
            x = read_series(call.x) if isinstance(call.x, str | Path) else call.x
            hu = x.hu if isinstance(x, CTSeries) else np.asarray(x)
            if denoiser.stackable() and hu.ndim == 3:
                stacks.setdefault((id(call.owner), hu.shape[1:]), []).append((call, x))
            else:
                call.done.set_result(denoiser.denoise(x))
        except Exception as err:  # the caller's await raises it
            call.done.set_exception(err)
    for members in stacks.values():
        _run_stack(members)


def _run_stack(members: list[tuple[_Call, Any]]) -> None:
    denoiser = members[0][0].owner.loaded()
    volumes = [x.hu if isinstance(x, CTSeries) else np.asarray(x) for _, x in members]
    try:
        if len(members) > 1:
            logger.debug("stacking %d calls (%d slices)", len(members), sum(len(v) for v in volumes))
        out = denoiser.denoise(np.concatenate(volumes, axis=0))
    except Exception as err:
        for call, _ in members:
            call.done.set_exception(err)
        return
    start = 0
    for (call, x), volume in zip(members, volumes, strict=True):
        part = out[start : start + len(volume)]
        start += len(volume)
        call.done.set_result(replace(x, hu=part) if isinstance(x, CTSeries) else part)


class AsyncDenoiser:
    """``Denoiser`` for asyncio: ``await denoiser.denoise(x)``; the model loads on first use.

    Every call runs on its device's one worker thread (shared by all ``AsyncDenoiser`` objects),
    never on the event loop. Calls that queue up while the worker is busy run next, back to back;
    for a 2D model, arrays and series of one slice size are stacked and run as one volume.

    Examples
    --------
    >>> import asyncio
    >>> import numpy as np
    >>> from torch import nn
    >>> from meddenoise.models import LoadedModel, ModelCard
    >>> identity = LoadedModel(nn.Identity(), ModelCard(name="id", version="1", architecture="none"))
    >>> denoiser = AsyncDenoiser(model=identity, device="cpu", tile=32)
    >>> async def many():
    ...     arrays = [np.full((1, 32, 32), float(k)) for k in range(4)]
    ...     return await asyncio.gather(*(denoiser.denoise(a) for a in arrays))
    >>> [float(out.mean()) for out in asyncio.run(many())]
    [0.0, 1.0, 2.0, 3.0]
    """

    def __init__(
        self,
        model: str | Path | LoadedModel | None = None,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        tile: int = 512,
        strength: float = 1.0,
        noise_level: float | None = None,
    ) -> None:
        self._arguments: dict[str, Any] = {
            "device": device,
            "batch_size": batch_size,
            "tile": tile,
            "strength": strength,
            "noise_level": noise_level,
        }
        _options(model=model, **self._arguments)  # bad arguments fail here, not in the worker
        self._model = model
        self.device = str(resolve_device(device))
        self._denoiser: Denoiser | None = None

    def loaded(self) -> Denoiser:
        """The underlying :class:`Denoiser`, loading the model on first use (in the worker thread)."""
        if self._denoiser is None:
            self._denoiser = Denoiser(self._model, **self._arguments)
        return self._denoiser

    @overload
    async def denoise(self, x: CTSeries | str | Path) -> CTSeries: ...

    @overload
    async def denoise(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]: ...

    async def denoise(self, x: Input) -> CTSeries | npt.NDArray[np.float32]:
        """Like :meth:`Denoiser.denoise`, on the device's worker thread."""
        if not isinstance(x, str | Path | CTSeries | np.ndarray):
            raise TypeError(f"denoise takes a path, a CTSeries or an HU numpy array, got {type(x).__name__}")
        done: Future[Any] = Future()
        _DeviceWorker.submit(self.device, _Call(owner=self, x=x, done=done))
        return await asyncio.wrap_future(done)

    async def run(self, work: Callable[[Denoiser], Any]) -> Any:
        """Run ``work(denoiser)`` on the device's worker thread (e.g. ``lambda d: d.write(...)``)."""
        done: Future[Any] = Future()
        _DeviceWorker.submit(self.device, _Call(owner=self, x=_Work(work), done=done))  # type: ignore[arg-type]
        return await asyncio.wrap_future(done)


@dataclass(frozen=True)
class _Work:
    """A callable queued on a device worker (see :meth:`AsyncDenoiser.run`)."""

    work: Callable[[Denoiser], Any]


__all__ = ["AsyncDenoiser", "Denoiser"]
