"""Noise texture on a uniform phantom, the vendors' protocol: the NPS from repeated scans.

The FDA low-contrast phantom fixture (``fixtures/lcd-ct-phantom-3doses`` in ``../shared/data``,
CC0) holds 10 independent noise realisations of a water-equivalent disc at 10, 55 and 100 % dose,
reconstructed by fan-beam FBP in a simulator that is not meddenoise's. Every realisation is denoised
on its own, as a one-slice series: the 10 "slices" share the object but not the noise, so a 2.5D
model must not see them as neighbours.

Noise = each output minus the mean of the 10 (variance scaled by 10/9). Its NPS is measured in
square ROIs inside the disc, pooled over realisations, and compared with the FBP input's, measured
the same way: peak and mean frequency, noise SD, and the mean HU against the input's. The file
declares 1 mm pixels; shifts in per cent do not depend on that.

Fidelity: the signal-present realisations (low-contrast inserts) are denoised the same way and
scored against the fixture's noise-free ground truth (abdomen protocol, mean over realisations).
A second simulator's noise is a check on how far the model generalises beyond its training noise.

    python benchmarks/phantom_texture.py --model unet-pu-v1
    python benchmarks/phantom_texture.py --model unet-pu-v1 --strength 1 --strength 0.5

Writes a Markdown table to stdout and ``benchmarks/results/phantom_texture.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
FIXTURE = "fixtures/lcd-ct-phantom-3doses"
DOSES = ("dose_010", "dose_055", "dose_100")
ROI_MM = 32.0
Volume = npt.NDArray[np.float32]

logger = logging.getLogger("phantom_texture")


def read_realisations(root: Path, dose: str, signal: str = "absent") -> tuple[Volume, float]:
    """The 10 realisations of one dose (signal ``absent`` or ``present``) in HU, and the pixel size."""
    from meddenoise.volume.io import read_volume

    name = f"signal_{signal}"
    volume = read_volume(root / dose / name / f"{name}.mhd", hu_offset=-1000.0)
    return volume.hu.astype(np.float32), float(volume.spacing_mm[1])


def read_ground_truth(root: Path) -> Volume:
    """The noise-free phantom in HU. It stores no spacing, so read_volume refuses it; it only
    serves as a reference on the realisations' grid."""
    import SimpleITK as sitk

    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "ground_truth.mhd")))
    return truth.astype(np.float32)[np.newaxis] - 1000.0


def abdomen_psnr(images: Volume, truth: Volume) -> float:
    """Mean abdomen-protocol PSNR of the realisations against the noise-free truth."""
    from meddenoise.metrics import score_volume

    reference = np.broadcast_to(truth, images.shape)
    return score_volume(denoised=images, reference=reference, protocols=("abdomen",))["abdomen"].mean_psnr


def denoise_each(
    realisations: Volume, model: Any, strength: float, noise_levels: Sequence[float] | None = None
) -> Volume:
    """Each realisation through the product's inference (a LoadedModel) as a one-slice series;
    with ``noise_levels``, each is told its own level (else the level is estimated)."""
    from meddenoise.inference import InferenceSettings, denoise_volume

    def settings(i: int) -> InferenceSettings:
        level = None if noise_levels is None else float(noise_levels[i])
        return InferenceSettings(device="cpu", strength=strength, noise_level_hu=level)

    return np.concatenate(
        [
            denoise_volume(realisations[i : i + 1], model=model, settings=settings(i))
            for i in range(len(realisations))
        ]
    )


def texture(images: Volume, rois: Sequence[Any], pixel_mm: float) -> dict[str, Any]:
    """Noise SD, mean HU and radial NPS of repeated images of one object, in ``rois``."""
    from meddenoise.metrics import nps_2d, radial_nps, stack_rois

    n = len(images)
    noise = images - images.mean(axis=0, keepdims=True)
    stack = stack_rois(hu=noise, rois=rois)
    nps = radial_nps(nps_2d(rois_stack=stack, pixel_mm=pixel_mm, variance_scale=n / (n - 1)))
    means = stack_rois(hu=images, rois=rois).mean()
    return {
        "noise_sd_hu": float(np.sqrt(stack.var() * n / (n - 1))),
        "mean_hu": float(means),
        "nps_peak_mm": nps.peak_frequency_mm,
        "nps_mean_mm": nps.mean_frequency_mm,
        "frequency_mm": [round(float(f), 4) for f in nps.frequency_mm],
        "nps_hu2mm2": [round(float(v), 3) for v in nps.nps_hu2mm2],
    }


def compare(found: dict[str, Any], fbp: dict[str, Any]) -> dict[str, Any]:
    """A method's texture against the FBP input's: SD reduction, HU shift, peak and mean-f shift."""
    return found | {
        "noise_reduction_percent": 100.0 * (1.0 - found["noise_sd_hu"] / fbp["noise_sd_hu"]),
        "hu_shift": found["mean_hu"] - fbp["mean_hu"],
        "nps_peak_shift_percent": 100.0 * (found["nps_peak_mm"] / fbp["nps_peak_mm"] - 1.0),
        "nps_mean_shift_percent": 100.0 * (found["nps_mean_mm"] / fbp["nps_mean_mm"] - 1.0),
    }


def disc_rois(images: Volume, pixel_mm: float) -> tuple[Any, ...]:
    """Non-overlapping ROIs inside the water disc of every realisation (found on their mean)."""
    from meddenoise.metrics import Roi, find_uniform_rois

    centre = images.mean(axis=0, keepdims=True)
    found = find_uniform_rois(hu=centre, pixel_mm=pixel_mm, roi_mm=ROI_MM, n_rois=4, hu_range=(-100, 100))
    if not found:
        raise SystemExit("no uniform ROI found inside the phantom's disc")
    return tuple(Roi(slice=k, row=r.row, col=r.col, size=r.size) for k in range(len(images)) for r in found)


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| dose | method | abdomen PSNR dB vs truth | noise SD HU | reduction % | mean HU shift | "
        "NPS peak mm⁻¹ | peak shift % | mean-frequency shift % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dose, methods in results.items():
        for name, r in methods.items():
            lines.append(
                f"| {dose} | {name} | {r['psnr_db']:.2f} | {r['noise_sd_hu']:.1f} | "
                f"{r['noise_reduction_percent']:.0f} | "
                f"{r['hu_shift']:+.2f} | {r['nps_peak_mm']:.3f} | {r['nps_peak_shift_percent']:+.0f} | "
                f"{r['nps_mean_shift_percent']:+.0f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from meddenoise.models import load_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", action="append", default=[], help="checkpoint name or path (repeatable)")
    parser.add_argument("--strength", type=float, action="append", help="blend with the input (repeatable)")
    parser.add_argument("--dose", action="append", choices=DOSES, help="default: 10 and 55 %%")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "phantom_texture.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = args.shared / FIXTURE
    if not root.is_dir():
        raise SystemExit(f"{root}: the LCD phantom fixture is missing (see ../shared/data/README.md)")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    truth = read_ground_truth(root)
    models = {name: load_model(name) for name in args.model}  # once, not per dose and strength
    for dose in args.dose or ["dose_010", "dose_055"]:
        images, pixel_mm = read_realisations(root, dose)
        signal, _ = read_realisations(root, dose, "present")
        rois = disc_rois(images, pixel_mm)
        fbp = texture(images, rois, pixel_mm)
        results[dose] = {"FBP input": compare(fbp, fbp) | {"psnr_db": abdomen_psnr(signal, truth)}}
        for model in args.model:
            for strength in args.strength or [1.0]:
                name = model if strength == 1.0 else f"{model} (strength {strength:g})"
                out = denoise_each(images, models[model], strength)
                psnr = abdomen_psnr(denoise_each(signal, models[model], strength), truth)
                results[dose][name] = compare(texture(out, rois, pixel_mm), fbp) | {"psnr_db": psnr}
                logger.info(
                    "%s %s: %.1f -> %.1f HU",
                    dose,
                    name,
                    fbp["noise_sd_hu"],
                    results[dose][name]["noise_sd_hu"],
                )
    context = {
        "fixture": FIXTURE,
        "fidelity": "abdomen protocol PSNR of the signal-present realisations against ground_truth.mhd",
        "realisations": 10,
        "roi_mm": ROI_MM,
        "protocol": "noise = realisation - mean of the 10 (x 10/9 variance); radial NPS of ROIs inside "
        "the disc pooled over realisations; every realisation denoised alone",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"context": context, "results": results}, indent=2) + "\n")
    print(markdown(results))
    print(f"\nwritten {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
