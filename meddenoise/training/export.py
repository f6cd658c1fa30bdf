"""Export a network to ONNX (fp32, or INT8 by static quantisation calibrated on CT).

The graph is the network alone (MONAI's sliding window stays outside, in inference): dynamic batch,
height and width, opset 17, the card in the ONNX metadata (:mod:`meddenoise.models.onnx_format`).

INT8 is static QDQ quantisation (ONNX Runtime) with per-channel weights, calibrated on simulated
low-dose CT from the recipe's ``train`` sets (or a folder of DICOM series). What keeps its quality:

- the residual stays in float: the graph ends in ``centre slice - predicted noise``, and an
  8-bit input on the residual path would put 8-bit steps (over 4000 HU, about 16 HU) straight
  into the output; only convolutions are quantised, and the first and last stay float;
- the layers that hurt most (measured one at a time: the RMSE of the output, in HU, when only
  that layer is quantised) stay float too, most sensitive first, until the output error on the
  calibration slices is below ``INT8_RMSE_TARGET_HU``;
- the result is scored against the fp32 graph on the recipe's validation pairs (PSNR/SSIM,
  abdomen protocol) and refused when it loses more than ``max_loss_db``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from meddenoise.dicom import find_series, read_series
from meddenoise.errors import CheckpointError, ConfigError, require_extra
from meddenoise.inference import InferenceSettings, denoise_volume, network_input
from meddenoise.metrics.fidelity import PROTOCOLS, psnr, ssim
from meddenoise.models import LoadedModel, MetricRecord, ModelCard, load_model
from meddenoise.models.onnx_format import OnnxNetwork, save_onnx
from meddenoise.training.catalogue import load_sets
from meddenoise.training.config import TrainingRecipe, load_recipe
from meddenoise.training.data import _train_requests, prepare_validation
from meddenoise.training.pairs import RunRequest, build_runs

__all__ = ["DEFAULT_RECIPE", "Int8Report", "export_onnx"]

logger = logging.getLogger(__name__)

OPSET = 17
DEFAULT_RECIPE = Path("configs/train_default.toml")
CALIBRATION_CROP = 192  # px; activations of a fully convolutional net do not depend on the crop size
INT8_RMSE_TARGET_HU = 1.0  # output error (vs fp32) on calibration crops below which exclusion stops
MAX_EXTRA_FLOAT_LAYERS = 6
CALIBRATION_STRIDE = 4  # crops per calibration pass (ranges merged): bounds the memory of all activations
_QUANTISED_OPS = ["Conv", "ConvTranspose"]


@dataclasses.dataclass(frozen=True)
class Int8Report:
    """How an INT8 graph compares with its fp32 graph on the validation pairs (abdomen protocol)."""

    psnr_fp32_db: float
    psnr_int8_db: float
    ssim_fp32: float
    ssim_int8: float
    max_abs_diff_hu: float

    @property
    def psnr_loss_db(self) -> float:
        """fp32 PSNR minus INT8 PSNR (positive: INT8 is worse)."""
        return self.psnr_fp32_db - self.psnr_int8_db


def export_onnx(
    *,
    model: str | Path,
    out_path: Path,
    int8: bool = False,
    calibration: Path | None = None,
    recipe: Path | None = DEFAULT_RECIPE,
    name: str | None = None,
    max_loss_db: float | None = 0.1,
    calibration_slices: int = 48,
) -> ModelCard:
    """Export a torch checkpoint (shipped name or ``.pt`` path) to ``out_path`` as ONNX.

    With ``int8``, quantise (see the module docstring), calibrated on ``calibration`` (a folder of
    DICOM series) or, when None, on simulated low-dose slices of ``recipe``'s train sets; then
    score INT8 against fp32 on ``recipe``'s validation pairs, record the scores in the card, and
    raise CheckpointError when it loses more than ``max_loss_db`` dB of PSNR (None: no limit).
    ``recipe`` None skips the scoring (it then needs ``calibration`` and ``max_loss_db=None``).
    ``name`` defaults to ``<model>-onnx`` or ``<model>-int8``. Returns the card as written.

    Raises
    ------
    ValueError
        A ``.onnx`` source, or INT8 without the data its calibration or scoring needs.
    CheckpointError
        Unknown or corrupt source model; an INT8 graph that loses more than ``max_loss_db``.
    ConfigError
        A recipe or calibration folder that is missing or yields no slices.

    Examples
    --------
    >>> export_onnx(model="unet-pu-v1", out_path=Path("unet-pu-v1-onnx.onnx"))  # doctest: +SKIP
    """
    if Path(str(model)).suffix == ".onnx":
        raise ValueError(f"export from a torch checkpoint (.pt or a shipped name), not {model}")
    if int8 and recipe is None and (calibration is None or max_loss_db is not None):
        raise ValueError("INT8 without a recipe needs a calibration folder and max_loss_db=None (no scoring)")
    loaded = load_model(model)
    fp32, multiple = _export_graph(loaded)
    card = dataclasses.replace(
        loaded.card,
        name=name or f"{loaded.card.name}-{'int8' if int8 else 'onnx'}",
        description=f"{loaded.card.description} ONNX export ({'INT8 QDQ' if int8 else 'fp32'}) "
        f"of {loaded.card.name} v{loaded.card.version}.".strip(),
    )
    info: dict[str, Any] = {
        "source": f"{loaded.card.name} v{loaded.card.version}",
        "source_sha256": loaded.card.weights_sha256,
        "opset": OPSET,
        "precision": "int8" if int8 else "fp32",
    }
    graph = fp32
    if int8:
        crops = _calibration_crops(loaded, calibration=calibration, recipe=recipe, slices=calibration_slices)
        graph, float_nodes = _quantise(fp32, crops, card=loaded.card)
        info.update(
            calibration=str(calibration) if calibration else f"simulated train sets of {recipe}",
            calibration_slices=calibration_slices,
            float_nodes=float_nodes,
        )
        if recipe is not None:
            report = _int8_report(fp32, graph, card=loaded.card, multiple=multiple, recipe=recipe)
            logger.info("INT8 vs fp32 on validation: %s (float: %s)", report, float_nodes)
            if max_loss_db is not None and report.psnr_loss_db > max_loss_db:
                raise CheckpointError(
                    f"INT8 export of {loaded.card.name} loses {report.psnr_loss_db:.3f} dB PSNR against "
                    f"fp32 (limit {max_loss_db} dB); nothing written to {out_path}"
                )
            card = dataclasses.replace(card, metrics=(*card.metrics, *_report_metrics(report, recipe)))
            info.update(psnr_loss_db=round(report.psnr_loss_db, 4), report=dataclasses.asdict(report))
    return save_onnx(model=graph, card=card, path=out_path, required_multiple=multiple, export_info=info)


def _export_graph(loaded: LoadedModel) -> tuple[Any, int]:
    """The network as an ``onnx.ModelProto`` with dynamic N, H, W; and the multiple H, W must be."""
    onnx = require_extra("onnx", extra="onnx", feature="exporting to ONNX")
    network = loaded.network.cpu().eval()
    multiple = int(getattr(network, "factor", 1))
    channels = loaded.card.context_slices + int(loaded.card.noise_conditioned)
    size = multiple * max(1, 64 // multiple)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="meddenoise-export-") as tmp:
        # The TorchScript exporter is deprecated in favour of torch.export, which needs onnxscript;
        # it traces the padding branch for a size that needs none, so H, W must be multiples.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        target = Path(tmp) / "model.onnx"
        torch.onnx.export(
            network,
            (torch.zeros(1, channels, size, size),),
            target,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
        return onnx.load_model(target), multiple


def _calibration_crops(
    loaded: LoadedModel, *, calibration: Path | None, recipe: Path | None, slices: int
) -> list[npt.NDArray[np.float32]]:
    """Network-unit inputs (1, C, crop, crop) from the body of calibration slices."""
    if calibration is not None:
        volumes = _dicom_volumes(calibration, slices)
    else:
        assert recipe is not None  # export_onnx checked
        volumes = _simulated_volumes(recipe, slices)
    settings = InferenceSettings(device="cpu")
    rng = np.random.default_rng(0)
    crops = []
    for hu in volumes:
        units = network_input(hu, model=loaded, settings=settings)
        for index in range(units.shape[0]):
            crops.append(_body_crop(units[index], hu[index], rng))
    if not crops:
        raise ConfigError(f"no calibration slices found in {calibration or recipe}")
    usable = max(CALIBRATION_STRIDE, len(crops) - len(crops) % CALIBRATION_STRIDE)
    return (crops * CALIBRATION_STRIDE)[:usable]  # ONNX Runtime wants whole strides


def _body_crop(
    units: npt.NDArray[np.float32], hu: npt.NDArray[np.float32], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    size = min(CALIBRATION_CROP, *hu.shape)
    rows, cols = np.nonzero(hu[: hu.shape[0] - size + 1, : hu.shape[1] - size + 1] > -500.0)
    if rows.size == 0:
        top, left = 0, 0
    else:
        pick = rng.integers(rows.size)
        top, left = int(rows[pick]), int(cols[pick])
    return np.ascontiguousarray(units[None, :, top : top + size, left : left + size])


def _simulated_volumes(recipe_path: Path, slices: int) -> Iterator[npt.NDArray[np.float32]]:
    """Low-dose runs simulated from the recipe's train sets (the training cache), spread over them."""
    recipe = _recipe(recipe_path)
    sets = load_sets(shared_root=Path(recipe.data.shared_root), names=recipe.data.train_sets, role="train")
    requests = _train_requests(recipe, tuple(f for s in sets for f in s.folders))
    if not requests:
        raise ConfigError(f"recipe {recipe_path} names no train series to calibrate on")
    cache = Path(recipe.data.cache_dir)
    per_series: dict[str, list[RunRequest]] = {}
    for request in requests:  # one run per series; one already in the training cache if there is one
        per_series.setdefault(request.info.series_uid, []).append(request)
    candidates = [
        next((r for r in runs if (cache / f"{r.key()}.npz").exists()), runs[len(runs) // 2])
        for runs in per_series.values()
    ]
    wanted = min(len(candidates), max(1, round(slices / max(r.length for r in requests))))
    chosen = [candidates[i] for i in np.linspace(0, len(candidates) - 1, wanted).round().astype(int)]
    runs = build_runs(chosen, cache_dir=cache, description="calibration pairs")
    for run in runs:
        yield run.low_hu.astype(np.float32)


def _dicom_volumes(folder: Path, slices: int) -> Iterator[npt.NDArray[np.float32]]:
    """Up to ``slices`` consecutive slices from the middle of each series under ``folder``."""
    found = find_series(folder).series
    if not found:
        raise ConfigError(f"calibration folder {folder} holds no DICOM series")
    per_series = max(1, slices // len(found))
    for info in found:
        hu = read_series(info).hu
        start = max(0, (hu.shape[0] - per_series) // 2)
        yield np.asarray(hu[start : start + per_series], dtype=np.float32)


def _recipe(path: Path) -> TrainingRecipe:
    if not Path(path).is_file():
        raise ConfigError(
            f"recipe {path} not found: run from the repository root, or pass a calibration folder"
        )
    return load_recipe(path)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of inputs, in strides (bounded memory)."""

    def __init__(self, name: str, crops: list[npt.NDArray[np.float32]]) -> None:
        self._name, self._crops = name, crops
        self._items: Iterator[npt.NDArray[np.float32]] = iter(crops)

    def __len__(self) -> int:
        return len(self._crops)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._items = iter(self._crops[start_index:end_index])

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        crop = next(self._items, None)
        return None if crop is None else {self._name: crop}


def _quantise(fp32: Any, crops: list[npt.NDArray[np.float32]], *, card: ModelCard) -> tuple[Any, list[str]]:
    """INT8 QDQ graph; float for the first and last conv and the most sensitive others."""
    convs = [n.name for n in fp32.graph.node if n.op_type in _QUANTISED_OPS]
    always = [convs[0], convs[-1]]
    with tempfile.TemporaryDirectory(prefix="meddenoise-int8-") as tmp:
        cache = Path(tmp) / "ranges"
        reference = _run_all(fp32, crops)
        quantise = _quantiser(fp32, crops, cache=cache, tmp=Path(tmp))
        sensitivity = {}
        for node in convs[1:-1]:
            others = [n for n in convs if n != node]
            sensitivity[node] = _rmse_hu(_run_all(quantise(others), crops), reference, card)
        ranked = sorted(sensitivity, key=lambda n: -sensitivity[n])
        logger.info("INT8 sensitivity (output RMSE HU, one layer quantised): %s", sensitivity)
        excluded = list(always)
        graph = quantise(excluded)
        error = _rmse_hu(_run_all(graph, crops), reference, card)
        for node in ranked[:MAX_EXTRA_FLOAT_LAYERS]:
            if error <= INT8_RMSE_TARGET_HU:
                break
            excluded.append(node)
            graph = quantise(excluded)
            error = _rmse_hu(_run_all(graph, crops), reference, card)
            logger.info("INT8 with %d float convs: output RMSE %.2f HU", len(excluded), error)
    return graph, excluded


def _quantiser(fp32: Any, crops: list[npt.NDArray[np.float32]], *, cache: Path, tmp: Path) -> Any:
    """A function: float nodes → INT8 graph (ranges calibrated once, then cached)."""
    onnx = require_extra("onnx", extra="onnx", feature="INT8 export")
    quant = require_extra("onnxruntime.quantization", extra="onnx", feature="INT8 export")
    source = tmp / "fp32.onnx"
    onnx.save_model(fp32, source)
    name = fp32.graph.input[0].name

    def quantise(excluded: list[str]) -> Any:
        target = tmp / "int8.onnx"
        with _without_preprocessing_advice():
            _quantize_static(quant, source, target, name, crops, excluded, cache)
        return onnx.load_model(target)

    return quantise


def _quantize_static(
    quant: Any,
    source: Path,
    target: Path,
    name: str,
    crops: list[npt.NDArray[np.float32]],
    excluded: list[str],
    cache: Path,
) -> None:
    quant.quantize_static(
        source,
        target,
        _Reader(name, crops),
        quant_format=quant.QuantFormat.QDQ,
        op_types_to_quantize=_QUANTISED_OPS,
        per_channel=True,
        activation_type=quant.QuantType.QUInt8,
        weight_type=quant.QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=quant.CalibrationMethod.MinMax,
        extra_options={"CalibStridedMinMax": CALIBRATION_STRIDE},
        calibration_cache_path=cache,
    )


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Mute ONNX Runtime's root-logger advice to pre-process (shape inference; ours has static
    channel counts, and the advice would reach the CLI's output on every export)."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _run_all(graph: Any, crops: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    ort = require_extra("onnxruntime", extra="onnx", feature="INT8 export")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: crop})[0] for crop in crops])


def _rmse_hu(got: npt.NDArray[np.float32], reference: npt.NDArray[np.float32], card: ModelCard) -> float:
    return float(np.sqrt(np.mean((got - reference) ** 2)) * card.network_range.scale_hu)


def _int8_report(fp32: Any, int8: Any, *, card: ModelCard, multiple: int, recipe: Path) -> Int8Report:
    """Denoise the recipe's validation pairs with both graphs; score both against full dose."""
    validation = prepare_validation(_recipe(recipe), real=[])
    settings = InferenceSettings(device="cpu", noise_level_hu=None)
    scores: dict[str, list[tuple[float, float]]] = {"fp32": [], "int8": []}
    max_diff = 0.0
    for run in validation.runs:
        low, full = run.low_hu.astype(np.float32), run.full_hu.astype(np.float32)
        outputs = {}
        for label, graph in (("fp32", fp32), ("int8", int8)):
            network = OnnxNetwork(graph.SerializeToString(), path=Path(label), required_multiple=multiple)
            model = LoadedModel(network=network, card=card, runtime="onnx")
            outputs[label] = denoise_volume(low, model=model, settings=settings)
            for den, ref in zip(outputs[label], full, strict=True):
                scores[label].append(_scores(den, ref))
        max_diff = max(max_diff, float(np.abs(outputs["int8"] - outputs["fp32"]).max()))
    means = {label: np.mean(values, axis=0) for label, values in scores.items()}
    return Int8Report(
        psnr_fp32_db=float(means["fp32"][0]),
        psnr_int8_db=float(means["int8"][0]),
        ssim_fp32=float(means["fp32"][1]),
        ssim_int8=float(means["int8"][1]),
        max_abs_diff_hu=max_diff,
    )


def _scores(denoised: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]) -> tuple[float, float]:
    protocol = PROTOCOLS["abdomen"]
    return (
        psnr(denoised=denoised, reference=reference, protocol=protocol),
        ssim(denoised=denoised, reference=reference, protocol=protocol),
    )


def _report_metrics(report: Int8Report, recipe: Path) -> tuple[MetricRecord, ...]:
    common = {"protocol": "abdomen (clip -160..240 HU, data_range 400)", "dose": "simulated validation dose"}
    data = f"validation sets of {recipe}"
    return (
        MetricRecord(name="int8_psnr_loss_vs_fp32_db", value=report.psnr_loss_db, dataset=data, **common),
        MetricRecord(
            name="int8_ssim_loss_vs_fp32", value=report.ssim_fp32 - report.ssim_int8, dataset=data, **common
        ),
    )
