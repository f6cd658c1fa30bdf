"""Quality on the validation sets at simulated 25 % dose: classical filters, BM3D and networks, one run.

The validation pairs are the training code's own (``prepare_validation`` of a recipe: the same
series, slices, seeds and pair cache), so the numbers follow the model cards' protocol. Every
classical method has its parameter tuned on these validation slices (grid search, best mean
abdomen PSNR); nothing is guessed. Scores are per-slice PSNR/SSIM under the ``abdomen``,
``chest-ldct`` (lung window C-600/W1500 in [0, 1]) and ``full`` protocols, averaged per series, then
over series. Physics: the mean HU bias against full
dose in uniform 25 mm ROIs, and the noise texture: the radial NPS of each method's noise, from the
difference of its outputs on two independent noise realisations in 40 mm soft-tissue ROIs, pooled
per series, against the input's (FBP) noise measured the same way (peak and mean frequency).

    python benchmarks/quality.py                                   # classical methods, all slices
    python benchmarks/quality.py --model unet-pu-v1 --model runs/redcnn-ref/model.pt
    python benchmarks/quality.py --slices 1 --skip bm3d            # a quick look
    python benchmarks/quality.py --skip gaussian --skip median --skip nlm --skip bm3d \
        --model unet-pu-v1 --strength 1 --strength 0.5  # texture against PSNR, by blending

Writes a Markdown table to stdout and ``benchmarks/results/quality.json`` (notebooks/03 reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from meddenoise.metrics import RadialNPS, Roi

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("abdomen", "chest-ldct", "full")  # abdomen and lung (LDCT-Bench chest) windows
ROI_MM = 25.0
NPS_ROI_MM = 40.0
Volume = npt.NDArray[np.float32]
Filter = Callable[[Volume, float], Volume]

logger = logging.getLogger("quality")


@dataclass(frozen=True)
class Case:
    """One validation run's slices to score: low dose, full dose, pixel size and series name.

    The ROIs and FBP's noise spectrum depend on the case alone, so each is found once per case
    (``dataclasses.replace`` to other slices makes a new case, which finds its own).
    """

    low: Volume
    full: Volume
    pixel_mm: float
    series: str
    keep: slice  # the scored slices; models see the whole run for their 2.5D context
    low2: Volume | None = None  # an independent realisation of ``low``, for the noise texture

    @cached_property
    def bias_rois(self) -> tuple[Roi, ...]:
        """Uniform 25 mm soft-tissue ROIs of the full-dose slices, for the HU bias."""
        from meddenoise.metrics import find_uniform_rois

        full = self.full[self.keep]
        return find_uniform_rois(
            hu=full, pixel_mm=self.pixel_mm, roi_mm=ROI_MM, n_rois=4, hu_range=(-150, 200)
        )

    @cached_property
    def nps_rois(self) -> tuple[Roi, ...]:
        """40 mm soft-tissue ROIs for the noise texture (anatomy cancels in the difference images)."""
        from meddenoise.metrics import find_uniform_rois

        full = self.full[self.keep]
        return find_uniform_rois(
            hu=full, pixel_mm=self.pixel_mm, roi_mm=NPS_ROI_MM, n_rois=3, hu_range=(-300, 400)
        )

    @cached_property
    def fbp_noise(self) -> Volume | None:
        """ROIs of the input's (FBP) noise difference, the reference texture; None without a twin."""
        if self.low2 is None or not self.nps_rois:
            return None
        return self.noise_rois(self.low[self.keep] - self.low2[self.keep])

    def noise_rois(self, difference: Volume) -> Volume:
        """The NPS ROIs of a difference of two realisations, as an (n, size, size) stack."""
        from meddenoise.metrics import stack_rois

        return stack_rois(hu=difference, rois=self.nps_rois).astype(np.float32)


def noise_nps(stacks: Sequence[Volume], pixel_mm: float) -> RadialNPS:
    """The radial NPS of one realisation's noise from ROI stacks of realisation differences.

    The ROIs of every case of a series are pooled into one ensemble before the peak is found: a
    peak taken per case from a handful of ROIs, then averaged, follows the estimator's noise.
    """
    from meddenoise.metrics import nps_2d, radial_nps

    pooled = np.concatenate(stacks)
    return radial_nps(nps_2d(rois_stack=pooled, pixel_mm=pixel_mm, variance_scale=0.5))


def _gaussian(hu: Volume, sigma: float) -> Volume:
    from scipy.ndimage import gaussian_filter

    return np.asarray(gaussian_filter(hu, sigma=(0.0, sigma, sigma)), dtype=np.float32)


def _median(hu: Volume, size: float) -> Volume:
    from scipy.ndimage import median_filter

    return np.asarray(median_filter(hu, size=(1, int(size), int(size))), dtype=np.float32)


def _nlm(hu: Volume, h_hu: float) -> Volume:
    from skimage.restoration import denoise_nl_means

    out = [
        denoise_nl_means(s, h=h_hu, sigma=h_hu, patch_size=5, patch_distance=6, fast_mode=True) for s in hu
    ]
    return np.stack(out).astype(np.float32)


def _bm3d(hu: Volume, sigma_hu: float) -> Volume:
    import bm3d

    # In HU/1000 (the networks' units), so sigma_psd is the noise SD in those units.
    out = [np.asarray(bm3d.bm3d(s / 1000.0, sigma_psd=sigma_hu / 1000.0)) * 1000.0 for s in hu]
    return np.stack(out).astype(np.float32)


CLASSICAL: dict[str, tuple[Filter, str, tuple[float, ...]]] = {
    "gaussian": (_gaussian, "sigma_px", (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)),
    "median": (_median, "size_px", (3.0, 5.0, 7.0)),
    "nlm": (_nlm, "h_hu", (10.0, 20.0, 30.0, 45.0, 60.0)),
    "bm3d": (_bm3d, "sigma_psd_hu", (20.0, 30.0, 45.0, 60.0, 80.0, 100.0, 130.0)),
}


def load_cases(config: Path, *, cache_dir: str | None, slices: int | None) -> list[Case]:
    """The recipe's validation runs (from the pair cache or simulated into it)."""
    from meddenoise.training import load_recipe
    from meddenoise.training.data import prepare_validation

    recipe = load_recipe(config)
    if cache_dir:
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, cache_dir=cache_dir))
    validation = prepare_validation(recipe)
    # The same simulated runs, in the same order, with independent noise; real pairs have no twin.
    twins = [run.low_hu.astype(np.float32) for run in prepare_validation(recipe, realisation=1).runs]
    cases = []
    for index, run in enumerate(validation.runs):
        n = run.full_hu.shape[0]
        k = n if slices is None else min(slices, n)
        start = (n - k) // 2
        cases.append(
            Case(
                low=run.low_hu.astype(np.float32),
                full=run.full_hu.astype(np.float32),
                pixel_mm=float(run.pixel_mm[0]),
                series=validation.series_names.get(run.series_uid, run.series_uid),
                keep=slice(start, start + k),
                low2=twins[index] if index < len(twins) else None,
            )
        )
    return cases


def _scores(output: Volume, case: Case) -> dict[str, list[float]]:
    from meddenoise.metrics import score_volume

    scores = score_volume(denoised=output, reference=case.full[case.keep], protocols=PROTOCOLS)
    out: dict[str, list[float]] = {}
    for protocol, series in scores.items():
        out[f"{protocol}_psnr_db"] = [s.psnr for s in series.per_slice]
        out[f"{protocol}_ssim"] = [s.ssim for s in series.per_slice]
    return out


def _texture(
    method: Sequence[Volume], fbp: Sequence[Volume], pixel_mm: float
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A series' pooled noise texture against FBP's: peak and mean frequency, and both curves."""
    out, ref = noise_nps(method, pixel_mm), noise_nps(fbp, pixel_mm)
    found = {
        "nps_peak_mm": out.peak_frequency_mm,
        "nps_peak_fbp_mm": ref.peak_frequency_mm,
        "nps_peak_shift_percent": 100.0 * (out.peak_frequency_mm / ref.peak_frequency_mm - 1.0),
        "nps_mean_mm": out.mean_frequency_mm,
        "nps_mean_shift_percent": 100.0 * (out.mean_frequency_mm / ref.mean_frequency_mm - 1.0),
        "nps_rois": float(sum(len(s) for s in method)),
    }
    curves = {
        "frequency_mm": [round(float(f), 4) for f in out.frequency_mm],
        "method_hu2mm2": [round(float(v), 2) for v in out.nps_hu2mm2],
        "fbp_hu2mm2": [round(float(v), 2) for v in ref.nps_hu2mm2],
    }
    return found, curves


def _hu_bias(output: Volume, case: Case) -> dict[str, float]:
    from meddenoise.metrics import hu_bias

    if not case.bias_rois:
        return {}
    bias = hu_bias(test=output, reference=case.full[case.keep], rois=case.bias_rois)
    return {
        "hu_bias": bias.mean_bias_hu,
        "hu_bias_worst": bias.max_abs_bias_hu,
        "n_rois": float(len(case.bias_rois)),
    }


def summarise(
    outputs: Sequence[Volume],
    cases: Sequence[Case],
    seconds: float,
    twins: Sequence[Volume | None] | None = None,
) -> dict[str, Any]:
    """Per-series means and their mean (the table's numbers), plus the physics.

    ``twins`` are the method's outputs on each case's second realisation (for the noise texture).
    """
    per_series: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    physics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    noise: dict[str, tuple[list[Volume], list[Volume], float]] = {}
    for index, (output, case) in enumerate(zip(outputs, cases, strict=True)):
        for key, values in _scores(output, case).items():
            per_series[case.series][key].extend(v for v in values if math.isfinite(v))
        for key, value in _hu_bias(output, case).items():
            physics[case.series][key].append(value)
        twin = twins[index] if twins is not None else None
        if twin is not None and case.fbp_noise is not None:
            method, fbp, _ = noise.setdefault(case.series, ([], [], case.pixel_mm))
            method.append(case.noise_rois(output - twin))
            fbp.append(case.fbp_noise)
    curves = {}
    for series, (method, fbp, pixel_mm) in noise.items():
        texture, curves[series] = _texture(method, fbp, pixel_mm)
        physics[series] |= {key: [value] for key, value in texture.items()}
    series_means = {
        name: {key: float(np.mean(v)) for key, v in keys.items()}
        | {key: float(np.mean(v)) for key, v in physics[name].items()}
        for name, keys in per_series.items()
    }
    keys = sorted({k for means in series_means.values() for k in means})
    overall = {
        k: float(np.mean([m[k] for m in series_means.values() if k in m]))
        for k in keys
        if any(k in m for m in series_means.values())
    }
    n_slices = sum(o.shape[0] for o in outputs)
    found = {"mean": overall, "per_series": series_means, "seconds_per_slice": seconds / max(n_slices, 1)}
    return found | ({"nps_curves": curves} if curves else {})


def _apply(method: Filter, parameter: float, cases: Sequence[Case]) -> tuple[list[Volume], float]:
    started = time.perf_counter()
    outputs = [method(case.low[case.keep], parameter) for case in cases]
    return outputs, time.perf_counter() - started


def _apply_twins(method: Filter, parameter: float, cases: Sequence[Case]) -> list[Volume | None]:
    """The method on each case's second realisation (not timed; only the texture uses it)."""
    return [None if c.low2 is None else method(c.low2[c.keep], parameter) for c in cases]


def tuning_cases(cases: Sequence[Case], per_series: int | None) -> list[Case]:
    """At most ``per_series`` scored slices of each series (all when None), for the grid search."""
    if per_series is None:
        return list(cases)
    left: dict[str, int] = defaultdict(lambda: per_series)
    chosen = []
    for case in cases:
        k = min(left[case.series], case.keep.stop - case.keep.start)
        if k > 0:
            chosen.append(dataclasses.replace(case, keep=slice(case.keep.start, case.keep.start + k)))
            left[case.series] -= k
    return chosen


def tune(
    name: str, cases: Sequence[Case], *, tuning: Sequence[Case], grid: Sequence[float]
) -> dict[str, Any]:
    """Grid-search a method's parameter on ``tuning`` slices (best mean abdomen PSNR); score ``cases``."""
    method, label, _ = CLASSICAL[name]
    tried = {}
    for parameter in grid:
        outputs, seconds = _apply(method, parameter, tuning)
        tried[parameter] = summarise(outputs, tuning, seconds)["mean"]["abdomen_psnr_db"]
        logger.info("%s %s=%g: abdomen PSNR %.3f dB", name, label, parameter, tried[parameter])
    best = max(tried, key=lambda p: tried[p])
    outputs, seconds = _apply(method, best, cases)
    result = summarise(outputs, cases, seconds, _apply_twins(method, best, cases))
    edge = best in (min(grid), max(grid))
    return {
        "parameter": {label: best},
        "tried": {str(p): round(v, 3) for p, v in tried.items()},
        "best_on_grid_edge": edge,
        "tuned_on_slices": sum(c.keep.stop - c.keep.start for c in tuning),
        **result,
    }


def _grids(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
    grids = {name: grid for name, (_, _, grid) in CLASSICAL.items()}
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in grids or not values:
            raise SystemExit(f"--grid {spec!r}: expected NAME=v1,v2,... with NAME in {', '.join(grids)}")
        grids[name] = tuple(float(v) for v in values.split(","))
    return grids


def run_model(name_or_path: str, cases: Sequence[Case], *, strength: float = 1.0) -> dict[str, Any]:
    """A checkpoint through the product's inference on whole runs; scored on the kept slices."""
    from meddenoise.inference import InferenceSettings, denoise_volume
    from meddenoise.models import load_model

    model = load_model(name_or_path)
    settings = InferenceSettings(device="cpu", strength=strength)
    started = time.perf_counter()
    outputs = [denoise_volume(case.low, model=model, settings=settings)[case.keep] for case in cases]
    seconds = time.perf_counter() - started
    twins = [
        None if c.low2 is None else denoise_volume(c.low2, model=model, settings=settings)[c.keep]
        for c in cases
    ]
    result = summarise(outputs, cases, seconds, twins)
    card = model.card
    parameter = {"model": f"{card.name} {card.version} ({card.architecture})"}
    if strength != 1.0:
        parameter["strength"] = f"{strength:g}"
    return {"name": card.name, "parameter": parameter, **result}


def _row(name: str, result: dict[str, Any]) -> str:
    m = result["mean"]

    def fmt(key: str, digits: int, signed: bool = False) -> str:
        if key not in m:
            return "n/a"
        return f"{m[key]:+.{digits}f}" if signed else f"{m[key]:.{digits}f}"

    params = ", ".join(f"{k}={v}" for k, v in result["parameter"].items())
    return (
        f"| {name} | {params} | {fmt('abdomen_psnr_db', 2)} | {fmt('abdomen_ssim', 4)} | "
        f"{fmt('chest-ldct_psnr_db', 2)} | {fmt('chest-ldct_ssim', 4)} | "
        f"{fmt('full_psnr_db', 2)} | {fmt('hu_bias', 2, True)} | "
        f"{fmt('nps_peak_shift_percent', 1, True)} | {fmt('nps_mean_shift_percent', 1, True)} | "
        f"{result['seconds_per_slice']:.2f} |"
    )


def markdown(results: dict[str, dict[str, Any]], context: dict[str, Any]) -> str:
    """The comparison table (means of per-series means) and its protocol line."""
    lines = [
        f"Validation sets at simulated {context['dose']:.0%} dose, {context['n_slices']} slices of "
        f"{context['n_series']} series ({', '.join(context['series'])}); per-slice scores averaged per "
        "series, then over series. HU bias vs full dose in uniform 25 mm ROIs; NPS peak shift of "
        "each method's noise (from two independent realisations, 40 mm ROIs pooled per series) against "
        "FBP's texture.",
        "",
        "| method | parameter (tuned on validation) | abdomen PSNR dB | abdomen SSIM | lung PSNR dB | "
        "lung SSIM | full PSNR dB | HU bias | NPS peak shift % | NPS mean-frequency shift % | s/slice |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(name, result) for name, result in results.items()]
    return "\n".join(lines)


def _relative(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train_default.toml")
    parser.add_argument("--cache-dir", help="pair cache (default: the recipe's data.cache_dir)")
    parser.add_argument("--slices", type=int, help="score only this many central slices of each run")
    parser.add_argument("--model", action="append", default=[], help="checkpoint name or path (repeatable)")
    parser.add_argument(
        "--strength",
        type=float,
        action="append",
        help="blend each model's output with the input (1 = none; repeatable: one row per strength)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=sorted(CLASSICAL))
    parser.add_argument("--tune-slices", type=int, help="tune on this many slices per series (default all)")
    parser.add_argument(
        "--bm3d-tune-slices", type=int, default=2, help="BM3D (~10-30 s/slice) tunes on this many per series"
    )
    parser.add_argument("--grid", action="append", default=[], help="override a grid: NAME=v1,v2,...")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cases = load_cases(args.config, cache_dir=args.cache_dir, slices=args.slices)
    results: dict[str, dict[str, Any]] = {}
    no_op: Filter = lambda hu, _: hu  # noqa: E731
    outputs, seconds = _apply(no_op, 0.0, cases)
    twins = _apply_twins(no_op, 0.0, cases)
    results["low-dose input"] = {"parameter": {}, **summarise(outputs, cases, seconds, twins)}
    grids = _grids(args.grid)
    for name in CLASSICAL:
        if name not in args.skip:
            per_series = args.bm3d_tune_slices if name == "bm3d" else args.tune_slices
            tuning = tuning_cases(cases, per_series)
            results[name] = tune(name, cases, tuning=tuning, grid=grids[name])
    for model in args.model:
        # Keyed by the card's name: every training run's file is model.pt.
        for strength in args.strength or [1.0]:
            result = run_model(model, cases, strength=strength)
            name = result.pop("name")
            results[name if strength == 1.0 else f"{name} (strength {strength:g})"] = result
    from meddenoise.training import load_recipe

    recipe = load_recipe(args.config)
    context = {
        "config": _relative(args.config),  # no machine paths in a committed result
        "dose": recipe.data.validation_dose,
        "protocols": list(PROTOCOLS),
        "series": sorted({c.series for c in cases}),
        "n_series": len({c.series for c in cases}),
        "n_slices": sum(c.keep.stop - c.keep.start for c in cases),
        "slices_per_run": args.slices,
        "aggregation": "per-slice scores -> mean per series -> mean over series",
        "roi_mm": ROI_MM,
        "nps_roi_mm": NPS_ROI_MM,
        "nps_protocol": "NPS of a method's noise = 0.5 x NPS(output(realisation 1) - output(realisation 2)); "
        "shift against the NPS of the input's (FBP) noise, measured the same way; ROIs pooled per series "
        "before the peak and mean frequency are found",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"context": context, "results": results}, indent=2) + "\n")
    print(markdown(results, context))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
