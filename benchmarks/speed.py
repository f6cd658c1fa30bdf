"""End-to-end speed of ``meddenoise denoise`` against RED-CNN's forward pass, in one run.

Both are measured in the same process on the same slices of a real series, so the ratio holds
on a noisy shared machine where absolute seconds do not. Each side runs in a child process so
its peak memory (max RSS) is its own.

    python benchmarks/speed.py                      # 24 slices of the pancreatic validation series
    python benchmarks/speed.py --series ../shared/data/ct/lidc-idri-0001 --slices 40 --threads 2
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


def _child_denoise(folder: str, threads: int, model: str) -> dict[str, float]:
    import torch

    from meddenoise.inference import InferenceSettings
    from meddenoise.pipeline import denoise_path, resolve_model

    torch.set_num_threads(threads)
    loaded = resolve_model(model)
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    started = time.perf_counter()
    outcomes = denoise_path(
        input_path=folder,
        out_dir=out,
        model=loaded,
        settings=InferenceSettings(device="cpu", threads=threads),
    )
    seconds = time.perf_counter() - started
    n = len(list(outcomes[0].output_folder.glob("*.dcm")))
    return {"seconds": seconds, "slices": n}


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
    parser.add_argument("--model", default="unet-pu-v1")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, threads, extra = args.child
        result = (
            _child_denoise(folder, int(threads), extra)
            if kind == "denoise"
            else _child_redcnn(folder, int(threads), int(extra))
        )
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if not args.series.exists():
        sys.exit(f"error: {args.series} not found (pass --series PATH to a CT series)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = _subset(args.series, args.slices, Path(tmp))
        ours = _run_child("denoise", str(folder), str(args.threads), args.model)
        red = _run_child("redcnn", str(folder), str(args.threads), str(args.redcnn_slices))
    ours_per_slice = ours["seconds"] / ours["slices"]
    red_per_slice = red["seconds"] / red["slices"]
    print(f"series: {args.series} ({int(ours['slices'])} slices, {args.threads} threads)")
    print(
        f"meddenoise denoise ({args.model}), end to end (read, infer, write): "
        f"{ours['seconds']:.2f} s = {ours_per_slice:.3f} s/slice, peak RSS {ours['peak_rss_mb']:.0f} MB"
    )
    print(
        f"RED-CNN forward pass only ({int(red['slices'])} slices): {red_per_slice:.3f} s/slice, "
        f"peak RSS {red['peak_rss_mb']:.0f} MB"
    )
    print(f"speed-up (RED-CNN forward / meddenoise end to end): {red_per_slice / ours_per_slice:.1f}x")


if __name__ == "__main__":
    main()
