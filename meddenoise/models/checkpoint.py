"""The checkpoint formats: one ``.pt`` file of plain types and tensors, plus its card as JSON.

A checkpoint is ``{"format": "meddenoise-checkpoint/1", "card": card.to_dict(), "state_dict": ...}``
saved with ``torch.save`` and read with ``torch.load(weights_only=True)``. The card's
``weights_sha256`` covers the state dict in a canonical order, so a corrupt or modified file is
refused. Shipped models live in the package folder ``meddenoise/models/weights/<name>.pt``.

An ``.onnx`` file (see :mod:`meddenoise.models.onnx_format`) is the other format: the network
exported for ONNX Runtime, its card in the ONNX metadata. :func:`load_model` reads both, and finds
shipped ONNX variants by name too (``weights/<name>.onnx``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from meddenoise.errors import CheckpointError
from meddenoise.models.card import ModelCard
from meddenoise.models.registry import ARCHITECTURES, build_network, unknown_architecture_message

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_MODEL_NAME",
    "LoadedModel",
    "load_model",
    "network_from_card",
    "save_checkpoint",
    "shipped_models",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "meddenoise-checkpoint/1"
DEFAULT_MODEL_NAME = "unet-pu-v7"
CARD_SUFFIX = ".card.json"
SUFFIXES = (".pt", ".onnx")

Runtime = Literal["torch", "onnx"]


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to run (eval mode), the card that says how, and what runs it.

    ``runtime`` is ``"torch"`` for a torch module, ``"onnx"`` for an
    :class:`~meddenoise.models.onnx_format.OnnxNetwork` (ONNX Runtime behind a torch module).
    """

    network: nn.Module
    card: ModelCard
    runtime: Runtime = "torch"


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict in canonical order: sorted keys; key, dtype, shape and bytes of each.

    Examples
    --------
    >>> len(weights_sha256({"w": torch.zeros(2)}))
    64
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash the raw 16-bit patterns
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def network_from_card(card: ModelCard) -> nn.Module:
    """A freshly initialised network of the card's architecture, kwargs and ``context_slices`` inputs.

    Examples
    --------
    >>> card = ModelCard(name="d", version="1", architecture="dncnn", context_slices=3)
    >>> network_from_card(card).in_channels
    3
    """
    return build_network(card.architecture, in_channels=card.context_slices, **card.architecture_kwargs)


def card_path(path: Path) -> Path:
    """Where the human-readable card of checkpoint ``path`` lives: ``<path>.card.json``."""
    return path.with_name(path.name + CARD_SUFFIX)


def save_checkpoint(*, network: nn.Module, card: ModelCard, path: Path) -> ModelCard:
    """Write ``network``'s weights and ``card`` to ``path`` (atomically) and ``<path>.card.json``.

    Returns the card as written, with ``weights_sha256`` filled in. Raises ValueError when the
    card's architecture, ``architecture_kwargs`` and ``context_slices`` cannot rebuild ``network``.

    Examples
    --------
    >>> import tempfile
    >>> from meddenoise.models.unet_pu import UNetPU
    >>> card = ModelCard(name="demo", version="1", architecture="unet_pu",
    ...                  architecture_kwargs={"channels": [4, 8]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     saved = save_checkpoint(network=UNetPU(channels=[4, 8]), card=card, path=Path(tmp) / "d.pt")
    ...     load_model(Path(tmp) / "d.pt").card == saved
    True
    """
    path = Path(path)
    state_dict = {key: value.detach().cpu().clone() for key, value in network.state_dict().items()}
    _check_card_describes(card, state_dict)
    card = dataclasses.replace(card, weights_sha256=weights_sha256(state_dict))
    payload = {"format": CHECKPOINT_FORMAT, "card": card.to_dict(), "state_dict": state_dict}
    write_atomically(path, lambda handle: torch.save(payload, handle))
    write_atomically(card_path(path), lambda handle: handle.write(card.to_json().encode()))
    logger.info("saved checkpoint %s (%s, sha256 %s)", path, card.architecture, card.weights_sha256)
    return card


def _check_card_describes(card: ModelCard, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse to save a card that could not rebuild this network (ValueError)."""
    try:
        network_from_card(card).load_state_dict(state_dict, strict=True)
    except (TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"card {card.name!r} does not describe this network: {first}") from err


def write_atomically(path: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _weights_folder() -> Traversable:
    return resources.files("meddenoise.models") / "weights"


def shipped_models() -> list[ModelCard]:
    """The cards of the models shipped in ``meddenoise/models/weights/`` (read from JSON only):
    torch checkpoints (``<name>.pt``) and ONNX variants (``<name>.onnx``)."""
    folder = _weights_folder()
    if not folder.is_dir():
        return []
    cards = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(tuple(suffix + CARD_SUFFIX for suffix in SUFFIXES)):
            try:
                cards.append(ModelCard.from_json(entry.read_text(encoding="utf-8")))
            except ValueError as err:
                raise CheckpointError(f"shipped model card {entry.name} is invalid: {err}") from err
    return cards


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a shipped model by name or a checkpoint by path; verify it; return it in eval mode.

    A ``Path``, or a string that names an existing file, ends in ``.pt`` or ``.onnx`` or contains
    a path separator, is a path; anything else is a shipped model name (``weights/<name>.pt`` or
    ``weights/<name>.onnx``). An ``.onnx`` file runs on ONNX Runtime (the ``onnx`` extra); its
    provider and threads are chosen when inference binds it to a device, so ``device`` applies to
    torch checkpoints only.

    Raises
    ------
    CheckpointError
        Missing file, not a meddenoise checkpoint, unknown architecture, checksum mismatch, or an
        unknown model name.
    MissingExtraError
        An ``.onnx`` file without onnxruntime and onnx installed.

    Examples
    --------
    >>> load_model("no-such-model")
    Traceback (most recent call last):
    ...
    meddenoise.errors.CheckpointError: unknown model 'no-such-model'; ...
    """
    path = _resolve(name_or_path)
    if path.suffix == ".onnx":
        from meddenoise.models.onnx_format import load_onnx

        return load_onnx(path)
    state_dict, card = _read_checkpoint(path)
    network = _build(path, card, state_dict)
    network.to(device).eval()
    logger.info("loaded model %s %s from %s", card.name, card.version, path)
    return LoadedModel(network=network, card=card)


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or os.sep in text or "/" in text or text.endswith(SUFFIXES):
        return Path(name_or_path)
    if Path(text).is_file():
        return Path(text)
    for suffix in SUFFIXES:
        shipped = _weights_folder() / f"{text}{suffix}"
        if shipped.is_file():
            return Path(str(shipped))
    names = [card.name for card in shipped_models()]
    listed = ", ".join(names) if names else "none are installed"
    raise CheckpointError(
        f"unknown model {text!r}; shipped models: {listed} (a path to a .pt or .onnx checkpoint also works)"
    )


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], ModelCard]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a meddenoise checkpoint (torch.load failed: {first})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a meddenoise checkpoint (no format {CHECKPOINT_FORMAT!r})")
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"checkpoint {path} has no valid state_dict")
    try:
        card = ModelCard.from_dict(payload.get("card", {}))
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} has an invalid model card: {err}") from err
    got = weights_sha256(state_dict)
    if got != card.weights_sha256:
        raise CheckpointError(
            f"checkpoint {path} fails its checksum: expected {card.weights_sha256 or '(none)'}, got {got}; "
            "the file is corrupt or was modified"
        )
    return dict(state_dict), card


def _build(path: Path, card: ModelCard, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    if card.architecture not in ARCHITECTURES:
        raise CheckpointError(f"checkpoint {path}: {unknown_architecture_message(card.architecture)}")
    try:
        network = network_from_card(card)
        network.load_state_dict(state_dict, strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture {card.architecture!r}: {first}"
        ) from err
    return network
