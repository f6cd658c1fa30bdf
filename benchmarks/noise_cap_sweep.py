"""How a noise-conditioned model keeps low-contrast detectability at extreme noise: d′ against the
noise level told to the network, and against blending back the input.

At the lowest doses of ``benchmarks/detectability.py`` (10 % and 5 %, 82 and 132 HU) the default,
told each slice's estimated noise, smooths to 8-9 HU and loses up to 14 % of the smallest inserts'
d′. Three levers are compared on the same simulated realisations (the detectability benchmark's
own, from its cache):

``scale f``
    the network is told f × each slice's estimate;
``cap C``
    it is told min(estimate, C): what a card's ``noise_level_cap_hu`` does;
``blend s``
    the output at the full estimate, blended with the input at strength s (``--strength``).

Every row gives the output's noise SD and the d′ ratio (output / input, paired jackknife SD) per
insert and pooled, as in ``detectability.py``. The levels are given explicitly, so a cap in the
model's own card does not act here.

    python benchmarks/noise_cap_sweep.py --model unet-pu-v7 --simulate 300 --dose 10 --dose 5 \\
        --scale 1 --scale 0.8 --scale 0.65 --scale 0.5 --cap 60 --cap 70 --blend 0.9 --blend 0.8

Writes a Markdown table to stdout and ``benchmarks/results/noise_cap_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import detectability as det  # a sibling script: python puts benchmarks/ on the path
import numpy as np
from phantom_texture import Volume, denoise_each, read_ground_truth

logger = logging.getLogger("noise_cap_sweep")
RESULTS = Path(__file__).resolve().parent / "results" / "noise_cap_sweep.json"


def estimates(stack: Volume) -> np.ndarray:
    from meddenoise.metrics.noise_level import estimate_noise_sd

    return np.array([estimate_noise_sd(s).sd_hu for s in stack])


def row(
    label: str, inputs: tuple[Volume, Volume], outputs: tuple[Volume, Volume], truth: Volume
) -> dict[str, Any]:
    ratios = det.ratios(inputs, outputs, truth)
    return {"lever": label, "output_noise_sd_hu": det.noise_sd(outputs[1]), "ratios": ratios}


def sweep_dose(percent: float, truth: Volume, model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every lever at one dose."""
    truths = (truth, det.absent_truth(truth))
    settings = det.level_settings(percent)
    inputs = tuple(
        det.cached_realisations(
            t,
            n=args.simulate,
            settings=settings,
            seed=det.SEED + 2 * round(100 * percent) + c,
            cache=args.cache,
        )
        for c, t in enumerate(truths)
    )
    pair = (inputs[0], inputs[1])
    told = (estimates(pair[0]), estimates(pair[1]))
    rows = []
    levers = [(f"scale {f:g}", lambda e, f=f: f * e) for f in args.scale]
    levers += [(f"cap {c:g} HU", lambda e, c=c: np.minimum(e, c)) for c in args.cap]
    full: tuple[Volume, Volume] | None = None
    for label, tell in levers:
        started = time.perf_counter()
        outputs = (
            denoise_each(pair[0], model, 1.0, tell(told[0])),
            denoise_each(pair[1], model, 1.0, tell(told[1])),
        )
        rows.append(row(label, pair, outputs, truth))
        if label == "scale 1":
            full = outputs
        logger.info("%g %%, %s: %.0f s", percent, label, time.perf_counter() - started)
    if args.blend:
        if full is None:
            raise SystemExit("--blend needs --scale 1 (the output it blends)")
        for s in args.blend:
            blended = (
                pair[0] + np.float32(s) * (full[0] - pair[0]),
                pair[1] + np.float32(s) * (full[1] - pair[1]),
            )
            rows.append(row(f"blend {s:g}", pair, blended, truth))
    return {
        "noise_sd_hu": det.noise_sd(pair[1]),
        "estimated_noise_hu_median": float(np.median(told[1])),
        "inserts": [det.insert_label(r) for r in det.score(*pair, truth)],
        "rows": rows,
    }


def markdown(levels: dict[str, dict[str, Any]]) -> str:
    lines = []
    for label, level in levels.items():
        inserts = level["inserts"]
        lines += [
            f"{label}: input noise {level['noise_sd_hu']:.1f} HU SD (estimator median "
            f"{level['estimated_noise_hu_median']:.1f} HU)",
            "",
            "| lever | output noise SD HU | " + " | ".join(inserts) + " | pooled | lowest |",
            "|---|---|" + "---|" * (len(inserts) + 2),
        ]
        for r in level["rows"]:
            cells = [f"{m:.3f} ± {s:.3f}" for m, s in r["ratios"]]
            lowest = min(m for m, _ in r["ratios"][:-1])
            lines.append(
                f"| {r['lever']} | {r['output_noise_sd_hu']:.1f} | "
                + " | ".join(cells)
                + f" | {lowest:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from meddenoise.models import load_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    parser.add_argument("--model", default="unet-pu-v7")
    parser.add_argument("--simulate", type=int, default=300, help="N + N realisations per dose")
    parser.add_argument("--dose", type=float, action="append", help="per cent (default 10 and 5)")
    parser.add_argument("--scale", type=float, action="append", default=[])
    parser.add_argument("--cap", type=float, action="append", default=[])
    parser.add_argument("--blend", type=float, action="append", default=[])
    parser.add_argument("--cache", type=Path, default=det.CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(1)
    model = load_model(args.model)
    truth = read_ground_truth(args.shared / det.FIXTURE)[0]
    levels = {f"{p:g} %": sweep_dose(p, truth, model, args) for p in args.dose or [10.0, 5.0]}
    print(markdown(levels))
    context = {
        "command": "python benchmarks/noise_cap_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "realisations": f"{args.simulate} signal-present + {args.simulate} signal-absent per dose",
        "ratios": "per insert, then pooled (last): d'(output)/d'(input) +/- paired jackknife SD",
    }
    args.out.write_text(json.dumps({"context": context, "levels": levels}, indent=1) + "\n")
    print(f"written {args.out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
