"""Denoise a series in chunks of slices, so memory stays flat however long the series is.

Each chunk is read with the k//2 neighbours a 2.5D model needs on either side (its halo),
denoised, and written slice by slice into the writer's temporary series folder, which is renamed
into place only when every slice is written (the atomic-output guarantee is the writer's). Reading
the next chunk runs in a background thread while the network works on this one, and the derived
slices are encoded and written in another, so reading and writing hide behind compute. The output
is the same as the whole-volume path: every slice sees the same neighbours and noise estimate.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset

from meddenoise.dicom import CTSeries, SeriesInfo, check_output_location, derived_series_folder
from meddenoise.dicom import read_series as read_series_info
from meddenoise.dicom.derive import DerivedIdentity, derive_slice, hu_to_stored
from meddenoise.dicom.write import write_series_files
from meddenoise.inference import denoise_volume
from meddenoise.pipeline.load import short_uid, warn_unfamiliar_pixels
from meddenoise.pipeline.series import DenoiseStep, remove_leftovers
from meddenoise.progress import ProgressFactory, no_progress

STREAM_CHUNK_SLICES = 32
"""Slices denoised together when streaming: bounds memory (about 4 MB per 512² slice in flight)."""
QUEUE_SLICES = 64  # derived slices waiting for the writer thread


def _chunk(info: SeriesInfo, start: int, stop: int, halo: int) -> tuple[int, CTSeries]:
    """Decode slices ``start - halo .. stop + halo`` (clipped to the series); returns (first, chunk)."""
    first, last = max(0, start - halo), min(len(info.slices), stop + halo)
    part = replace(info, slices=info.slices[first:last], shape=(last - first, *info.shape[1:]))
    return first, read_series_info(part)


def _derived_slices(
    info: SeriesInfo, *, step: DenoiseStep, identity: DerivedIdentity, chunk_slices: int
) -> Iterator[Dataset]:
    """The derived datasets in slice order, computed a chunk at a time with the next chunk prefetched."""
    halo = step.model.card.context_slices // 2
    bounds = [(s, min(s + chunk_slices, len(info.slices))) for s in range(0, len(info.slices), chunk_slices)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="meddenoise-read") as reader:
        pending = reader.submit(_chunk, info, *bounds[0], halo)
        for index, (start, stop) in enumerate(bounds):
            first, chunk = pending.result()
            if index + 1 < len(bounds):
                pending = reader.submit(_chunk, info, *bounds[index + 1], halo)
            hu = denoise_volume(chunk.hu, model=step.model, settings=step.settings)
            for number in range(start, stop):
                local = number - first
                mask = None if chunk.padding_mask is None else chunk.padding_mask[local]
                stored = hu_to_stored(hu=hu[local], header=info.slices[number].header, padding=mask)
                yield derive_slice(
                    ref=info.slices[number],
                    instance_number=number + 1,
                    stored=stored,
                    identity=identity,
                    derivation=step.derivation,
                )


def _in_background(items: Iterator[Dataset], *, maxsize: int) -> Iterator[Dataset]:
    """Run ``items`` in a thread, handing its results over a bounded queue (errors re-raised here)."""
    handover: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handover.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handover.put(("done", None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            handover.put(("error", err))

    worker = threading.Thread(target=produce, name="meddenoise-denoise", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handover.get()
            if kind == "done":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            assert isinstance(value, Dataset)
            yield value
    finally:
        stop.set()
        worker.join(timeout=30.0)


def stream_denoise(
    info: SeriesInfo,
    *,
    step: DenoiseStep,
    out_dir: Path,
    identity: DerivedIdentity,
    overwrite: bool = False,
    chunk_slices: int = STREAM_CHUNK_SLICES,
    progress: ProgressFactory = no_progress,
) -> Path:
    """Read, denoise and write ``info`` chunk by chunk; returns the derived series folder.

    Raises what reading, inference or writing raise; a failure leaves no series behind.

    Examples
    --------
    >>> folder = stream_denoise(info, step=step, out_dir=Path("out"), identity=identity)  # doctest: +SKIP
    """
    if chunk_slices < 1:
        raise ValueError(f"chunk_slices must be a positive integer, got {chunk_slices}")
    final = derived_series_folder(out_dir=out_dir, source=info, derivation=step.derivation)
    for parent in {ref.path.parent for ref in info.slices}:
        check_output_location(input_root=parent, out_dir=final)
    warn_unfamiliar_pixels(step.model, info.spacing_mm, f"series {info.series_uid}")
    remove_leftovers(final)
    slices = _derived_slices(info, step=step, identity=identity, chunk_slices=chunk_slices)
    advance: Callable[[int], None]
    # The bar counts slices written, each already read and denoised.
    with progress(
        description=f"write {short_uid(info.series_uid)}, denoising", total=len(info.slices)
    ) as advance:
        return write_series_files(
            datasets=_in_background(slices, maxsize=QUEUE_SLICES),
            count=len(info.slices),
            final=final,
            overwrite=overwrite,
            progress=advance,
        )
