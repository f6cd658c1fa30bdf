"""The ONNX checkpoint format: one ``.onnx`` file whose metadata holds the model card.

An ONNX checkpoint is the network alone (no sliding window; dynamic batch, height and width), with
``metadata_props``:

- ``meddenoise.format``: ``meddenoise-onnx/1``;
- ``meddenoise.card``: the card as JSON; its ``weights_sha256`` is :func:`graph_sha256` of the
  file's graph, so a corrupt or modified file is refused on load;
- ``meddenoise.required_multiple``: height and width the graph accepts are multiples of this
  (the runtime pads to it and crops back, as the torch network does inside itself);
- ``meddenoise.export`` (optional): JSON provenance (source checkpoint, quantisation settings).

:class:`OnnxNetwork` wraps an ``onnxruntime.InferenceSession`` as a ``torch.nn.Module``, so MONAI's
sliding window runs around it unchanged. ``onnx`` and ``onnxruntime`` (the ``onnx`` extra) are
imported only when an ONNX file is written or read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meddenoise.errors import CheckpointError, DeviceError, require_extra
from meddenoise.models.card import ModelCard
from meddenoise.models.checkpoint import LoadedModel, card_path, write_atomically

__all__ = ["ONNX_FORMAT", "OnnxNetwork", "graph_sha256", "load_onnx", "save_onnx"]

logger = logging.getLogger(__name__)

ONNX_FORMAT = "meddenoise-onnx/1"
KEY_FORMAT = "meddenoise.format"
KEY_CARD = "meddenoise.card"
KEY_MULTIPLE = "meddenoise.required_multiple"
KEY_EXPORT = "meddenoise.export"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def _onnx(path: Path | None = None) -> Any:
    feature = f"reading ONNX model {path}" if path else "reading and writing ONNX models"
    return require_extra("onnx", extra="onnx", feature=feature)


def _ort(path: Path | None = None) -> Any:
    return require_extra("onnxruntime", extra="onnx", feature=f"running ONNX model {path or ''}".strip())


def graph_sha256(model: Any) -> str:
    """SHA-256 of an ``onnx.ModelProto``'s graph: its initializers in sorted order (name, type,
    shape, bytes), then its nodes in order (deterministic serialisation). Metadata is not covered,
    so the card can carry the digest of the graph it sits in.
    """
    numpy_helper = _onnx().numpy_helper
    digest = hashlib.sha256()
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        array = numpy_helper.to_array(init)
        digest.update(f"{init.name}|{init.data_type}|{tuple(init.dims)}|".encode())
        digest.update(array.tobytes())
    for node in model.graph.node:
        digest.update(node.SerializeToString(deterministic=True))
    return digest.hexdigest()


def save_onnx(
    *, model: Any, card: ModelCard, path: Path, required_multiple: int = 1, export_info: dict[str, Any]
) -> ModelCard:
    """Write ``model`` (an ``onnx.ModelProto``) with ``card`` in its metadata to ``path`` (atomically)
    and the card to ``<path>.card.json``; return the card as written (``weights_sha256`` filled in).
    """
    path = Path(path)
    card = dataclasses.replace(card, weights_sha256=graph_sha256(model))
    values = {
        KEY_FORMAT: ONNX_FORMAT,
        KEY_CARD: card.to_json(),
        KEY_MULTIPLE: str(int(required_multiple)),
        KEY_EXPORT: json.dumps(export_info, sort_keys=True),
    }
    del model.metadata_props[:]
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    data = model.SerializeToString()
    write_atomically(path, lambda handle: handle.write(data))
    write_atomically(card_path(path), lambda handle: handle.write(card.to_json().encode()))
    logger.info("saved ONNX model %s (%s, sha256 %s)", path, card.name, card.weights_sha256)
    return card


def load_onnx(path: Path) -> LoadedModel:
    """Read an ONNX checkpoint, verify its card and digest, and wrap it for the sliding window.

    Raises
    ------
    CheckpointError
        Missing or unreadable file, no meddenoise card in its metadata, or a digest mismatch.
    MissingExtraError
        When ``onnx`` or ``onnxruntime`` is not installed.
    """
    _ort(path)  # a missing onnxruntime is reported before any work
    onnx = _onnx(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model {path} does not exist")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as err:
        raise CheckpointError(f"{path} is not an ONNX model ({_first_line(err)})") from err
    meta = {entry.key: entry.value for entry in model.metadata_props}
    if meta.get(KEY_FORMAT) != ONNX_FORMAT or KEY_CARD not in meta:
        raise CheckpointError(
            f"ONNX model {path} has no meddenoise model card in its metadata; "
            "export it with `meddenoise export` so it says how to run it"
        )
    try:
        card = ModelCard.from_json(meta[KEY_CARD])
        multiple = int(meta.get(KEY_MULTIPLE, "1"))
    except ValueError as err:
        raise CheckpointError(f"ONNX model {path} has an invalid model card: {_first_line(err)}") from err
    got = graph_sha256(model)
    if got != card.weights_sha256:
        raise CheckpointError(
            f"ONNX model {path} fails its checksum: expected {card.weights_sha256 or '(none)'}, got {got}; "
            "the file is corrupt or was modified"
        )
    network = OnnxNetwork(data, path=path, required_multiple=multiple)
    network.bind(device=torch.device("cpu"), threads=None, explicit=True)  # fail now on a bad graph
    logger.info("loaded ONNX model %s %s from %s", card.name, card.version, path)
    return LoadedModel(network=network, card=card, runtime="onnx")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class OnnxNetwork(nn.Module):
    """An ONNX graph run by ONNX Runtime, looking like a torch network (N, C, H, W) → (N, 1, H, W).

    Input is padded at the bottom/right to the graph's required multiple (reflect, or replicate
    where the image is too small) and the output cropped back. Sessions are made per (provider,
    threads) by :meth:`bind` and shared between the bound copies.

    Examples
    --------
    >>> net = load_onnx(Path("model.onnx")).network  # doctest: +SKIP
    >>> net.bind(device=torch.device("cpu"), threads=2)(torch.zeros(1, 3, 64, 64)).shape  # doctest: +SKIP
    torch.Size([1, 1, 64, 64])
    """

    def __init__(self, data: bytes, *, path: Path, required_multiple: int = 1) -> None:
        super().__init__()
        self.path = path
        self.required_multiple = max(1, int(required_multiple))
        self._data = data
        self._sessions: dict[tuple[str, int, int], Any] = {}
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] = (_CPU, 0, 0)

    def bind(self, *, device: torch.device, threads: int | None, explicit: bool = True) -> OnnxNetwork:
        """A copy that runs on ``device`` (CPU, or ONNX Runtime's CUDA provider) with ``threads``
        intra-op threads (None: ONNX Runtime's default). With ``explicit`` False (``--device auto``),
        a CUDA device falls back to CPU when ONNX Runtime has no CUDA provider.

        Raises
        ------
        DeviceError
            CUDA asked for explicitly where ONNX Runtime has no CUDA provider.
        """
        provider = _CPU
        if device.type == "cuda":
            if _CUDA in _ort(self.path).get_available_providers():
                provider = _CUDA
            elif explicit:
                raise DeviceError(
                    f"--device {device} requested for ONNX model {self.path.name}, but this ONNX Runtime has "
                    "no CUDA provider; install onnxruntime-gpu, or use --device cpu"
                )
            else:
                logger.info("ONNX Runtime has no CUDA provider; running %s on CPU", self.path.name)
        key = (provider, (device.index or 0) if provider == _CUDA else 0, threads or 0)
        self._session(key)
        bound = OnnxNetwork.__new__(OnnxNetwork)
        nn.Module.__init__(bound)
        bound.path, bound.required_multiple, bound._data = self.path, self.required_multiple, self._data
        bound._sessions, bound._lock, bound._key = self._sessions, self._lock, key
        return bound

    def _session(self, key: tuple[str, int, int]) -> Any:
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = self._new_session(key)
            return self._sessions[key]

    def _new_session(self, key: tuple[str, int, int]) -> Any:
        ort = _ort(self.path)
        provider, index, threads = key
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not to logging
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers: list[Any] = [_CPU] if provider == _CPU else [(_CUDA, {"device_id": index}), _CPU]
        try:
            return ort.InferenceSession(self._data, options, providers=providers)
        except Exception as err:
            raise CheckpointError(f"ONNX Runtime cannot run {self.path}: {_first_line(err)}") from err

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on ``x`` (float32 on any device); the result comes back on ``x``'s device."""
        session = self._session(self._key)
        height, width = x.shape[-2:]
        padded = _pad_to_multiple(x.detach().float(), self.required_multiple)
        name = session.get_inputs()[0].name
        out = session.run(None, {name: padded.cpu().numpy()})[0]
        return torch.from_numpy(out[..., :height, :width]).to(x.device)


def _pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % factor, -width % factor
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
