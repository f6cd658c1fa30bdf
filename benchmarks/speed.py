"""Speed of ``meddenoise denoise`` on each runtime against RED-CNN's forward pass, in one run.

Measured in one run on the same slices of a real series, so the ratios hold on a noisy shared
machine where absolute seconds do not. Each measurement runs in its own child process, so its
peak memory (max RSS) and thread settings are its own. For each runtime (torch; ONNX Runtime fp32;
ONNX Runtime INT8) it measures:

- the network's forward pass alone, per 512² slice, in batches of ``--batch`` slices;
- ``meddenoise denoise`` end to end (read, infer, write), per slice;

and RED-CNN's forward pass per slice, the reference of the speed target.

The ONNX graphs are exported from ``--model`` into a temporary folder unless ``--onnx`` and
``--int8`` name files. An exported INT8 graph is calibrated on the benchmark's own slices with no
quality check (speed does not depend on the calibration); ship only what ``meddenoise export --int8``
accepts.

    python benchmarks/speed.py                      # 24 slices of the pancreatic validation series
    python benchmarks/speed.py --series ../shared/data/ct/lidc-idri-0001 --slices 40 --threads 2
    python benchmarks/speed.py --runtime torch --runtime onnx   # a subset of the runtimes
    python benchmarks/speed.py --series ../shared/data/ct/lidc-idri-0001 --lengths 24 133 400

``--lengths`` measures series-length scaling instead: the series' slices repeated along z (new
SOPInstanceUIDs, positions continued) into series of each length, denoised end to end on
``--runtime`` (the first given, default torch), with time per slice and peak RSS; streaming keeps
memory flat, so the peak RSS should not grow with the length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SERIES = REPO.parent / "shared" / "data" / "ct" / "pancreatic-ct-cbct-seg-001"


def _subset(series: Path, n_slices: int, into: Path) -> Path:
    """A folder of symlinks to ``n_slices`` consecutive files of the series (sorted by position)."""
    from meddenoise.dicom import find_series

    info = find_series(series).series[0]
    start = max(0, (len(info.slices) - n_slices) // 2)
    folder = into / "input"
    folder.mkdir()
    for ref in info.slices[start : start + n_slices]:
        (folder / ref.path.name).symlink_to(ref.path.resolve())
    return folder


def _repeated(series: Path, length: int, into: Path) -> Path:
    """``length`` slices: the series' slices in order, repeated along z with continued positions."""
    import pydicom
    from pydicom.uid import generate_uid

    from meddenoise.dicom import find_series

    info = find_series(series).series[0]
    n, step = len(info.slices), info.spacing_mm[0]
    normal = info.direction[:, 2]
    folder = into / f"length-{length}"
    folder.mkdir()
    for index in range(length):
        ref = info.slices[index % n]
        ds = pydicom.dcmread(ref.path)
        shift = (index // n) * n * step * normal
        ds.ImagePositionPatient = [f"{float(v):.4f}" for v in ref.position_mm + shift]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index + 1
        ds.save_as(folder / f"{index:05d}.dcm", enforce_file_format=True)
    return folder


def _child_denoise(folder: str, threads: int, model: str) -> dict[str, float]:
    import torch

    from meddenoise.inference import InferenceSettings
    from meddenoise.pipeline import RunRequest, denoise_path, resolve_model

    torch.set_num_threads(threads)
    loaded = resolve_model(model)
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    settings = InferenceSettings(device="cpu", threads=threads)
    started = time.perf_counter()
    summary = denoise_path(
        input_path=folder, out_dir=out, request=RunRequest(model=loaded, settings=settings)
    )
    seconds = time.perf_counter() - started
    if summary.failed:
        raise RuntimeError(f"denoising failed: {summary.failed[0].error}")
    n = sum(result.instances for result in summary.succeeded)
    return {"seconds": seconds, "slices": n}


def _child_forward(model: str, threads: int, batch: int) -> dict[str, float]:
    """Forward pass alone on ``batch`` 512² slices (random HU-like values), after a warm-up."""
    import numpy as np
    import torch

    from meddenoise.models import load_model
    from meddenoise.models.onnx_format import OnnxNetwork

    torch.set_num_threads(threads)
    loaded = load_model(model)
    network = loaded.network
    if isinstance(network, OnnxNetwork):
        network = network.bind(device=torch.device("cpu"), threads=threads)
    channels = loaded.card.context_slices + int(loaded.card.noise_conditioned)
    rng = np.random.default_rng(0)
    units = torch.from_numpy(rng.normal(0.04, 0.05, size=(batch, channels, 512, 512)).astype(np.float32))
    repeats = 3
    with torch.inference_mode():
        network(units)  # warm-up (allocator, kernel selection, ORT's first-run graph work)
        started = time.perf_counter()
        for _ in range(repeats):
            network(units)
    return {"seconds": time.perf_counter() - started, "slices": repeats * batch}


def _child_redcnn(folder: str, threads: int, slices: int) -> dict[str, float]:
    import numpy as np
    import torch

    from meddenoise.dicom import find_series, read_series
    from meddenoise.models import build_network

    torch.set_num_threads(threads)
    hu = read_series(find_series(Path(folder)).series[0]).hu[:slices]
    network = build_network("redcnn").eval()
    units = torch.from_numpy(np.clip(hu, -1024, 3071)[:, None] / 1000.0).float()
    with torch.inference_mode():
        network(units[:1])  # warm-up (allocator, kernel selection)
        started = time.perf_counter()
        for index in range(len(units)):
            network(units[index : index + 1])
    return {"seconds": time.perf_counter() - started, "slices": len(units)}


RUNTIMES = ("torch", "onnx", "int8")


def _export(model: str, runtime: str, folder: Path, into: Path) -> str:
    """``model`` as an ONNX file for ``runtime`` (exported into ``into``)."""
    from meddenoise.training.export import export_onnx

    out = into / f"{runtime}.onnx"
    if runtime == "onnx":
        export_onnx(model=model, out_path=out)
    else:
        export_onnx(model=model, out_path=out, int8=True, calibration=folder, recipe=None, max_loss_db=None)
    return str(out)


def _run_child(kind: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=Path, default=DEFAULT_SERIES)
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--redcnn-slices", type=int, default=3, help="RED-CNN takes ~10 s a slice here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="unet-pu-v1", help="a torch checkpoint: name or .pt path")
    parser.add_argument("--onnx", help="an fp32 ONNX export of --model (else exported here)")
    parser.add_argument("--int8", help="an INT8 ONNX export of --model (else exported here, speed only)")
    parser.add_argument("--runtime", action="append", choices=RUNTIMES, help="repeat; default: all")
    parser.add_argument("--batch", type=int, default=4, help="slices per forward pass (forward timing)")
    parser.add_argument("--lengths", type=int, nargs="+", help="series-length scaling instead (slices)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, first, threads, extra = args.child
        if kind == "denoise":
            result = _child_denoise(first, int(threads), extra)
        elif kind == "forward":
            result = _child_forward(first, int(threads), int(extra))
        else:
            result = _child_redcnn(first, int(threads), int(extra))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if not args.series.exists():
        sys.exit(f"error: {args.series} not found (pass --series PATH to a CT series)")
    if args.lengths:
        _scaling(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = _subset(args.series, args.slices, Path(tmp))
        rows = {}
        for runtime in args.runtime or RUNTIMES:
            model = {"torch": args.model, "onnx": args.onnx, "int8": args.int8}[runtime]
            model = model or _export(args.model, runtime, folder, Path(tmp))
            forward = _run_child("forward", model, str(args.threads), str(args.batch))
            ours = _run_child("denoise", str(folder), str(args.threads), model)
            rows[runtime] = (forward, ours)
        red = _run_child("redcnn", str(folder), str(args.threads), str(args.redcnn_slices))
    _print_table(args, rows, red)


def _scaling(args: argparse.Namespace) -> None:
    runtime = (args.runtime or ["torch"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = {"torch": args.model, "onnx": args.onnx, "int8": args.int8}[runtime]
        first = _repeated(args.series, min(args.lengths), Path(tmp))
        model = model or _export(args.model, runtime, first, Path(tmp))
        rows = []
        for length in args.lengths:
            folder = first if length == min(args.lengths) else _repeated(args.series, length, Path(tmp))
            rows.append((length, _run_child("denoise", str(folder), str(args.threads), model)))
        red = _run_child("redcnn", str(first), str(args.threads), str(args.redcnn_slices))
    red_per_slice = red["seconds"] / red["slices"]
    print(f"series: {args.series} repeated along z, {args.threads} threads, {runtime}, model {args.model}")
    print("| slices | end to end | per slice | peak RSS | RED-CNN forward / end to end |")
    print("|---|---|---|---|---|")
    for length, ours in rows:
        per_slice = ours["seconds"] / ours["slices"]
        print(
            f"| {length} | {ours['seconds']:.1f} s | {per_slice:.3f} s | {ours['peak_rss_mb']:.0f} MB "
            f"| {red_per_slice / per_slice:.1f}x |"
        )
    print(f"RED-CNN forward pass only: {red_per_slice:.3f} s/slice")


def _print_table(
    args: argparse.Namespace,
    rows: dict[str, tuple[dict[str, float], dict[str, float]]],
    red: dict[str, float],
) -> None:
    red_per_slice = red["seconds"] / red["slices"]
    print(f"series: {args.series} ({args.slices} slices, {args.threads} threads), model {args.model}")
    print(
        "| runtime | forward per 512² slice (batch "
        f"{args.batch}) | end to end per slice | peak RSS end to end | RED-CNN forward / end to end |"
    )
    print("|---|---|---|---|---|")
    for runtime, (forward, ours) in rows.items():
        per_slice = ours["seconds"] / ours["slices"]
        print(
            f"| {runtime} | {1000 * forward['seconds'] / forward['slices']:.0f} ms "
            f"| {per_slice:.3f} s | {ours['peak_rss_mb']:.0f} MB | {red_per_slice / per_slice:.1f}x |"
        )
    print(
        f"RED-CNN forward pass only ({int(red['slices'])} slices): {red_per_slice:.3f} s/slice, "
        f"peak RSS {red['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
