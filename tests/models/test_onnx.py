"""ONNX checkpoints: export, load, run through ONNX Runtime; one-line errors naming the file."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from meddenoise.errors import CheckpointError, DeviceError, MissingExtraError  # noqa: E402
from meddenoise.inference import InferenceSettings, denoise_volume  # noqa: E402
from meddenoise.models import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    LoadedModel,
    ModelCard,
    load_model,
    network_from_card,
    save_checkpoint,
    shipped_models,
)
from meddenoise.models import checkpoint as checkpoint_module  # noqa: E402
from meddenoise.models.onnx_format import OnnxNetwork, graph_sha256, save_onnx  # noqa: E402
from meddenoise.training.export import export_onnx  # noqa: E402

TOLERANCE_UNITS = 1e-4  # torch vs ONNX Runtime fp32, network units (2e-6 measured)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _tiny(tmp_path: Path, *, context_slices: int = 1, noise: bool = False, name: str = "tiny") -> Path:
    kwargs: dict[str, object] = {"channels": [4, 8]}
    if noise:
        kwargs["noise_channel"] = True
    card = ModelCard(
        name=name,
        version="0.1",
        architecture="unet_pu",
        architecture_kwargs=kwargs,
        context_slices=context_slices,
        created="2024-01-02",
    )
    network = network_from_card(card)
    with torch.no_grad():  # a non-trivial noise estimate, so the residual is tested too
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return _saved(save_checkpoint(network=network, card=card, path=tmp_path / f"{name}.pt"), tmp_path)


def _saved(card: ModelCard, tmp_path: Path) -> Path:
    return tmp_path / f"{card.name}.pt"


def _exported(tmp_path: Path, **kwargs: object) -> tuple[Path, Path]:
    source = _tiny(tmp_path, **kwargs)  # type: ignore[arg-type]
    out = tmp_path / "tiny.onnx"
    export_onnx(model=source, out_path=out)
    return source, out


def _bare_export(module: nn.Module) -> bytes:
    """An ONNX graph with no meddenoise metadata (dynamic N, H, W), by the exporter export_onnx uses."""
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated (export_onnx mutes it too)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, 1, 8, 8),),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
    return buffer.getvalue()


def _forward(network: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return network(x).numpy()


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 1, 37, 45), (2, 1, 5, 6)])
def test_tiny_export_matches_torch(tmp_path: Path, shape: tuple[int, ...]) -> None:
    source, out = _exported(tmp_path)
    torch_model, onnx_model = load_model(source), load_model(out)
    assert onnx_model.runtime == "onnx" and torch_model.runtime == "torch"
    assert isinstance(onnx_model.network, OnnxNetwork)
    assert onnx_model.card.name == "tiny-onnx"
    assert onnx_model.card.architecture_kwargs == torch_model.card.architecture_kwargs
    x = 0.3 * torch.randn(shape)
    np.testing.assert_allclose(
        _forward(onnx_model.network, x), _forward(torch_model.network, x), atol=TOLERANCE_UNITS
    )
    graph = onnx.load(out)
    assert graph.opset_import[0].version >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert json.loads(out.with_name("tiny.onnx.card.json").read_text()) == onnx_model.card.to_dict()


def test_noise_conditioned_model_runs_through_onnx(tmp_path: Path) -> None:
    source, out = _exported(tmp_path, context_slices=3, noise=True)
    volume = np.random.default_rng(0).normal(40.0, 30.0, size=(4, 40, 50)).astype(np.float32)
    settings = InferenceSettings(roi=(32, 32), device="cpu", threads=1)
    via_torch = denoise_volume(volume, model=load_model(source), settings=settings)
    via_onnx = denoise_volume(volume, model=load_model(out), settings=settings)
    assert load_model(out).card.noise_conditioned
    np.testing.assert_allclose(via_onnx, via_torch, atol=TOLERANCE_UNITS * 1000.0)  # in HU (scale 1000)
    fixed = InferenceSettings(roi=(32, 32), device="cpu", noise_level_hu=20.0)
    assert not np.allclose(denoise_volume(volume, model=load_model(out), settings=fixed), via_onnx)


def test_shipped_default_exports_and_matches_torch(tmp_path: Path) -> None:
    if DEFAULT_MODEL_NAME not in [card.name for card in shipped_models()]:
        pytest.skip(f"the default model {DEFAULT_MODEL_NAME} is not shipped yet")
    card = export_onnx(model=DEFAULT_MODEL_NAME, out_path=tmp_path / "default.onnx")
    reference = load_model(DEFAULT_MODEL_NAME)
    onnx_model = load_model(tmp_path / "default.onnx")
    assert onnx_model.card == card and card.name == f"{DEFAULT_MODEL_NAME}-onnx"
    channels = reference.card.context_slices + int(reference.card.noise_conditioned)
    x = 0.3 * torch.randn(2, channels, 96, 120)
    np.testing.assert_allclose(
        _forward(onnx_model.network, x), _forward(reference.network, x), atol=TOLERANCE_UNITS
    )


def test_export_is_reproducible(tmp_path: Path) -> None:
    source, out = _exported(tmp_path)
    again = export_onnx(model=source, out_path=tmp_path / "again.onnx")
    assert again.weights_sha256 == load_model(out).card.weights_sha256


def test_threads_set_the_session_threads(tmp_path: Path) -> None:
    _, out = _exported(tmp_path)
    network = load_model(out).network
    assert isinstance(network, OnnxNetwork)
    bound = network.bind(device=torch.device("cpu"), threads=1)
    session = bound._session(bound._key)
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_shipped_onnx_variant_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    source = _tiny(tmp_path)
    card = export_onnx(model=source, out_path=weights / "tiny-onnx.onnx")
    monkeypatch.setattr(checkpoint_module, "_weights_folder", lambda: weights)
    assert shipped_models() == [card]
    assert load_model("tiny-onnx").card == card


def test_onnx_file_without_a_card(tmp_path: Path) -> None:
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(_bare_export(nn.Conv2d(1, 1, 3, padding=1)))
    with pytest.raises(CheckpointError, match=rf"ONNX model {bare} has no meddenoise model card") as info:
        load_model(bare)
    assert "\n" not in str(info.value)


def test_onnx_file_that_is_not_onnx(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(CheckpointError, match=rf"{junk} is not an ONNX model"):
        load_model(junk)
    with pytest.raises(CheckpointError, match=rf"ONNX model {tmp_path / 'missing.onnx'} does not exist"):
        load_model(tmp_path / "missing.onnx")


def test_onnx_card_whose_sha256_does_not_match(tmp_path: Path) -> None:
    _, out = _exported(tmp_path)
    graph = onnx.load(out)
    weights = graph.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weights) + 1e-3
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))  # tamper; keep the metadata
    tampered = tmp_path / "tampered.onnx"
    onnx.save(graph, tampered)
    with pytest.raises(CheckpointError, match=rf"ONNX model {tampered} fails its checksum") as info:
        load_model(tampered)
    assert "\n" not in str(info.value)


def test_onnxruntime_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out = _exported(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(MissingExtraError, match=rf"{out} needs the optional package onnxruntime") as info:
        load_model(out)
    assert 'pip install "meddenoise[onnx]"' in str(info.value)


def test_cuda_provider_where_there_is_none(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has a CUDA provider")
    _, out = _exported(tmp_path)
    network = load_model(out).network
    assert isinstance(network, OnnxNetwork)
    with pytest.raises(DeviceError, match=r"tiny\.onnx, but this ONNX Runtime has no CUDA provider"):
        network.bind(device=torch.device("cuda"), threads=None)
    fallback = network.bind(device=torch.device("cuda"), threads=None, explicit=False)  # --device auto
    assert fallback(torch.zeros(1, 1, 16, 16)).shape == (1, 1, 16, 16)


def test_onnx_model_with_the_wrong_output_shape(tmp_path: Path) -> None:
    class TwoChannels(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x], dim=1)

    card = ModelCard(name="two", version="1", architecture="none", created="2024-01-02")
    path = tmp_path / "two.onnx"
    save_onnx(model=onnx.load_from_string(_bare_export(TwoChannels())), card=card, path=path, export_info={})
    assert load_model(path).card.weights_sha256 == graph_sha256(onnx.load(path))
    volume = np.zeros((2, 20, 30), dtype=np.float32)
    with pytest.raises(ValueError, match=r"model 'two' returned \(2, 2, 20, 30\), expected one channel"):
        denoise_volume(volume, model=load_model(path), settings=InferenceSettings(roi=(16, 16), device="cpu"))


def test_export_refuses_an_onnx_source(tmp_path: Path) -> None:
    _, out = _exported(tmp_path)
    with pytest.raises(ValueError, match=r"not .*tiny\.onnx"):
        export_onnx(model=out, out_path=tmp_path / "again.onnx")


def test_int8_export_needs_data_to_calibrate_and_score(tmp_path: Path) -> None:
    source = _tiny(tmp_path)
    with pytest.raises(ValueError, match="calibration folder"):
        export_onnx(model=source, out_path=tmp_path / "q.onnx", int8=True, recipe=None)


@pytest.mark.slow
def test_int8_export_from_a_dicom_folder_runs(tmp_path: Path) -> None:
    from tests.dicom.synthetic import make_series

    make_series(tmp_path / "ct", n_slices=4)
    source = _tiny(tmp_path, context_slices=3)
    card = export_onnx(
        model=source,
        out_path=tmp_path / "q.onnx",
        int8=True,
        calibration=tmp_path / "ct",
        recipe=None,
        max_loss_db=None,
    )
    graph = onnx.load(tmp_path / "q.onnx")
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node)
    info = json.loads({p.key: p.value for p in graph.metadata_props}["meddenoise.export"])
    assert info["precision"] == "int8" and len(info["float_nodes"]) >= 2
    quantised = load_model(tmp_path / "q.onnx")
    assert quantised.card == card and card.name == "tiny-int8"
    volume = np.random.default_rng(0).normal(40.0, 30.0, size=(3, 48, 48)).astype(np.float32)
    settings = InferenceSettings(roi=(48, 48), device="cpu")
    fp32 = denoise_volume(volume, model=load_model(source), settings=settings)
    int8 = denoise_volume(volume, model=quantised, settings=settings)
    assert np.abs(int8 - fp32).max() < 20.0  # HU; an untrained tiny net, so only a sanity bound


def test_loaded_model_defaults_to_the_torch_runtime() -> None:
    card = ModelCard(name="m", version="1", architecture="none")
    assert LoadedModel(network=nn.Identity(), card=card).runtime == "torch"
