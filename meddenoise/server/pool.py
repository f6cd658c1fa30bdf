"""The model pool: several models loaded at once by name, with hot reload from a watched folder.

Each checkpoint ``DIR/<name>.pt`` or ``DIR/<name>.onnx`` is served as ``<name>``. A poll finds
new, changed and removed files: a new or changed file is loaded (and checked: its card and
sha256, by :func:`meddenoise.pipeline.resolve_model`) before it replaces anything, so a bad file
is refused with a logged reason while the model it would have replaced keeps serving. A job holds
the :class:`PoolEntry` it started with, so it finishes on that model whatever the pool does.
Without a folder the pool serves the shipped models.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from meddenoise.errors import CheckpointError, MeddenoiseError
from meddenoise.pipeline import LoadedModel, resolve_model, shipped_models

logger = logging.getLogger(__name__)

SUFFIXES = (".pt", ".onnx")
Signature = tuple[int, int]  # (mtime_ns, size): a file changed when this did


@dataclass(frozen=True)
class PoolEntry:
    """A loaded model under its serving name, where it came from and when it was loaded."""

    name: str
    model: LoadedModel
    path: str
    loaded_at: float
    signature: Signature = (0, 0)

    @property
    def version(self) -> str:
        """``<card name> v<card version>``, as jobs and ``GET /models`` show it."""
        return f"{self.model.card.name} v{self.model.card.version}"

    def describe(self) -> dict[str, object]:
        """What ``GET /models`` shows of this model."""
        card = self.model.card
        return {
            "name": self.name,
            "card_name": card.name,
            "version": card.version,
            "architecture": card.architecture,
            "runtime": self.model.runtime,
            "context_slices": card.context_slices,
            "weights_sha256": card.weights_sha256,
            "file": Path(self.path).name,
            "loaded_at": self.loaded_at,
        }


def _signature(path: Path) -> Signature | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


class ModelPool:
    """Models by name; ``refresh`` (or the ``watch`` thread) reloads the folder's changes.

    Examples
    --------
    >>> pool = ModelPool(models_dir=None, device="cpu")  # doctest: +SKIP
    >>> pool.get("unet-pu-v1").version  # doctest: +SKIP
    'unet-pu-v1 v1.0'
    """

    def __init__(self, *, models_dir: Path | None, device: str) -> None:
        self.models_dir = models_dir
        self.device = device
        self._lock = threading.Lock()
        self._entries: dict[str, PoolEntry] = {}
        self._refused: dict[Path, Signature] = {}
        self.refresh()

    def names(self) -> list[str]:
        """The names served now, sorted."""
        with self._lock:
            return sorted(self._entries)

    def get(self, name: str) -> PoolEntry:
        """The entry served as ``name``; KeyError naming the served ones when unknown."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                served = ", ".join(sorted(self._entries)) or "none"
                raise KeyError(f"unknown model {name!r}; served: {served}")
            return entry

    def entries(self) -> list[PoolEntry]:
        """Every served entry, by name."""
        with self._lock:
            return [self._entries[name] for name in sorted(self._entries)]

    def refresh(self) -> None:
        """Load new and changed checkpoints, drop removed ones; a bad file is refused and logged."""
        if self.models_dir is None:
            if not self._entries:
                self._load_shipped()
            return
        found = {p.stem: p for p in sorted(self.models_dir.iterdir()) if p.suffix in SUFFIXES and p.is_file()}
        for name, path in found.items():
            signature = _signature(path)
            with self._lock:
                current = self._entries.get(name)
            if signature is None or (current is not None and current.signature == signature):
                continue
            if self._refused.get(path) == signature:
                continue
            self._load(name, path, signature, replacing=current)
        with self._lock:
            for name in [n for n in self._entries if n not in found]:
                logger.warning("model %s: its file is gone; no longer served", name)
                del self._entries[name]

    def _load(self, name: str, path: Path, signature: Signature, *, replacing: PoolEntry | None) -> None:
        try:
            model = resolve_model(path, device=self.device)
        except (MeddenoiseError, OSError, ValueError) as err:
            self._refused[path] = signature
            kept = f"; {replacing.version} keeps serving" if replacing else ""
            logger.error("model %s refused: %s%s", name, " ".join(str(err).split()), kept)
            return
        self._refused.pop(path, None)
        entry = PoolEntry(name=name, model=model, path=str(path), loaded_at=time.time(), signature=signature)
        with self._lock:
            self._entries[name] = entry
        logger.warning("model %s: %s %s", name, "reloaded as" if replacing else "loaded", entry.version)

    def _load_shipped(self) -> None:
        for card in shipped_models():
            try:
                model = resolve_model(card.name, device=self.device)
            except CheckpointError as err:
                logger.error("shipped model %s refused: %s", card.name, err)
                continue
            entry = PoolEntry(name=card.name, model=model, path=card.name, loaded_at=time.time())
            with self._lock:
                self._entries[card.name] = entry

    def watch(self, *, stop: threading.Event, poll_s: float) -> threading.Thread:
        """Start a daemon thread that calls :meth:`refresh` every ``poll_s`` until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(poll_s):
                try:
                    self.refresh()
                except OSError as err:
                    logger.error("cannot scan %s: %s", self.models_dir, err)

        thread = threading.Thread(target=loop, name="meddenoise-model-watch", daemon=True)
        thread.start()
        return thread
