"""Quality across in-plane pixel sizes, on real anatomy: does a model work outside its training pixels?

Each validation run's full-dose slices are resampled to a target pixel size (area averaging to
coarser pixels, as a coarser reconstruction grid would; bicubic to finer ones, which smooths the
anatomy and the full-dose noise), then scanned again at the validation dose with the project's own
simulator *on that grid*, so the low-dose noise has the texture of that pixel size. The model then
denoises the simulated scan and is scored against the resampled full dose (abdomen protocol), beside
the low-dose input. The model card's ``pixel_mm_range`` (the training pairs' pixel sizes) is printed
so the rows can be read against it.

    python benchmarks/pixel_size.py --model unet-pu-v1
    python benchmarks/pixel_size.py --model unet-pu-v1 --pixel-mm 0.5 --pixel-mm 2.0 --slices 2

Writes a Markdown table to stdout and ``benchmarks/results/pixel_size.json``.
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
Volume = npt.NDArray[np.float32]

logger = logging.getLogger("pixel_size")


def abdomen_psnr(test: Volume, reference: Volume) -> float:
    from meddenoise.metrics import score_volume

    return score_volume(denoised=test, reference=reference, protocols=("abdomen",))["abdomen"].mean_psnr


def measure(model: Any, recipe: Any, targets: Sequence[float], slices: int) -> list[dict[str, Any]]:
    """One row per validation run and pixel size (its native size first)."""
    from meddenoise.inference import InferenceSettings, denoise_volume
    from meddenoise.simulate import SimulationSettings, simulate_from_settings
    from meddenoise.training.data import VALIDATION_FILTER, VALIDATION_I0, prepare_validation
    from meddenoise.training.pairs import regrid

    simulation = SimulationSettings(
        dose_fraction=recipe.data.validation_dose,
        i0=VALIDATION_I0,
        sigma_e2=recipe.data.sigma_e2,
        filter=VALIDATION_FILTER,
    )
    validation = prepare_validation(recipe)
    rows = []
    for index, run in enumerate(validation.runs):
        start = max(0, (run.full_hu.shape[0] - slices) // 2)
        full_native = run.full_hu[start : start + slices].astype(np.float32)
        native_mm = float(run.pixel_mm[0])
        for target in [native_mm, *targets]:
            full, (pixel_mm, _), _ = regrid(full_native, (native_mm, native_mm), target / native_mm)
            low = simulate_from_settings(
                full, pixel_mm=(pixel_mm, pixel_mm), settings=simulation, seed=7 + index
            ).astype(np.float32)
            denoised = denoise_volume(low, model=model, settings=InferenceSettings(device="cpu"))
            rows.append(
                {
                    "series": validation.series_names.get(run.series_uid, run.series_uid),
                    "native_mm": native_mm,
                    "pixel_mm": round(pixel_mm, 4),
                    "matrix": full.shape[-1],
                    "input_psnr_db": abdomen_psnr(low, full),
                    "model_psnr_db": abdomen_psnr(denoised, full),
                }
            )
            logger.info(
                "%(series)s at %(pixel_mm).3f mm: %(input_psnr_db).2f -> %(model_psnr_db).2f dB", rows[-1]
            )
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| series | pixel mm | matrix | input PSNR dB | denoised PSNR dB | gain dB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["model_psnr_db"] - r["input_psnr_db"]
        lines.append(
            f"| {r['series']} | {r['pixel_mm']:.3f} | {r['matrix']} | {r['input_psnr_db']:.2f} | "
            f"{r['model_psnr_db']:.2f} | {gain:+.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from meddenoise.models import load_model
    from meddenoise.training import load_recipe

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train_default.toml")
    parser.add_argument("--model", default="unet-pu-v1", help="checkpoint name or path")
    parser.add_argument("--pixel-mm", type=float, action="append", help="target pixel sizes (repeatable)")
    parser.add_argument("--slices", type=int, default=2, help="central slices of each validation run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pixel_size.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_model(args.model)
    rows = measure(model, load_recipe(args.config), args.pixel_mm or [0.5, 1.0, 1.5, 2.0], args.slices)
    card = model.card
    context = {
        "config": args.config.name,
        "model": f"{card.name} {card.version}",
        "training_pixel_mm_range": card.pixel_mm_range,
        "slices_per_run": args.slices,
        "protocol": "full dose resampled (area to coarser, bicubic to finer) and re-simulated at the "
        "validation dose on that grid; abdomen PSNR against the resampled full dose",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"context": context, "rows": rows}, indent=2) + "\n")
    print(f"model {context['model']}, trained on pixels of {card.pixel_mm_range} mm")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
