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

``--levels`` is the validation across the range (issue 15): input noise of about 15, 30 and 60 HU SD
in soft tissue, each with a smooth (Hann) and a sharp (Ram-Lak) kernel, and every network both on
the series (2.5D neighbours present) and on single slices (each alone, its neighbours copies of
itself). Each level is a simulated 25 % dose whose full-dose photon count I0 is calibrated per run
and kernel, so that the inserted noise has the target SD in soft tissue (measured and printed).
The runs sit at 1/3 and 2/3 of each series, away from the training's validation runs at the ends;
median and BM3D are tuned per setting on a separate tune slice per series. The pairs are cached
outside the project (``/tmp/meddenoise-quality-cache`` unless ``--cache-dir``)::

    python benchmarks/quality.py --levels --model unet-pu-v1 --model runs/unet-pu-v5/model.pt
    python benchmarks/quality.py --levels --level 30 --kernel hann --runs-per-series 1 \
        --scored-per-run 1 --skip bm3d --model unet-pu-v1                # a smoke test

It writes ``benchmarks/results/quality_levels.json`` (after every setting) and Markdown to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
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
    from meddenoise.dicom import SeriesInfo
    from meddenoise.metrics import RadialNPS, Roi
    from meddenoise.simulate import SimulationSettings
    from meddenoise.simulate.fbp import FilterName
    from meddenoise.training.pairs import PairRun

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


# ---------------------------------------------------------------------------------------------
# --levels: noise levels x kernels, series and single slices (issue 15, section 6)
# ---------------------------------------------------------------------------------------------

LEVELS_HU = (15.0, 30.0, 60.0)  # target soft-tissue SD of the simulated (added) input noise
KERNELS: tuple[FilterName, ...] = ("hann", "ram-lak")
LEVEL_DOSE = 0.25  # every level is a 25 % dose; the full-dose photon count I0 sets the noise
CALIBRATION_I0 = (1.5e5, 6.0e5)  # two points fit sd^2 = A / I0 + B / I0^2 (electronic noise)
RUN_POSITIONS = (1 / 3, 2 / 3)  # scored runs, as fractions of the series (off the training's
TUNE_POSITION = 0.5  # validation runs at the series ends); the tune split sits between them
LEVEL_CACHE = "/tmp/meddenoise-quality-cache"
SOFT_TISSUE_HU = (-150.0, 200.0)
MEDIAN_GRID = (3.0, 5.0, 7.0)
BM3D_RATIOS = (1.0, 1.6, 2.5, 4.0)  # BM3D's sigma_psd grid, in multiples of the measured input SD
LEVEL_SEED = 700_000


@dataclass(frozen=True)
class LevelSeries:
    """One validation series: its name, scan and where its runs start."""

    name: str
    index: int
    info: SeriesInfo
    scored: tuple[int, ...]  # first slice of each scored run (length scored_per_run + 2)
    tune: int  # the tune slice


def level_series(config: Path, *, runs: int, length: int) -> list[LevelSeries]:
    """The recipe's validation series ('validation' role only) and the runs taken from each."""
    from meddenoise.training import load_recipe
    from meddenoise.training.catalogue import load_sets
    from meddenoise.training.pairs import series_under

    recipe = load_recipe(config)
    sets = load_sets(
        shared_root=Path(recipe.data.shared_root), names=recipe.data.validation_sets, role="validation"
    )
    found = []
    index = 0
    for data_set in sets:
        for info in series_under(data_set.folders):
            n = len(info.slices)
            positions = RUN_POSITIONS if runs == len(RUN_POSITIONS) else np.linspace(0.2, 0.8, runs)
            starts = sorted({int(np.clip(round(f * n) - length // 2, 0, n - length)) for f in positions})
            tune = int(np.clip(round(TUNE_POSITION * n), 0, n - 1))
            if any(s <= tune < s + length for s in starts):  # short series: tune after the last run
                tune = min(n - 1, starts[-1] + length)
            found.append(LevelSeries(data_set.name, index, info, tuple(starts), tune))
            index += 1
    return found


def soft_tissue_sd(low: Volume, full: Volume) -> float:
    """The SD of the simulated noise (low - full) over soft tissue, mean over slices.

    Soft tissue: full-dose pixels whose smoothed HU lie in [-150, 200], 3 px in from any edge.
    The difference holds only the inserted noise (anatomy cancels), so no uniform ROI is needed.
    """
    from scipy import ndimage

    sds = []
    for lo, fu in zip(low, full, strict=True):
        smooth = ndimage.gaussian_filter(fu.astype(np.float64), 2.0)
        mask = (smooth >= SOFT_TISSUE_HU[0]) & (smooth <= SOFT_TISSUE_HU[1])
        mask = ndimage.binary_erosion(mask, iterations=3)
        if mask.sum() > 100:
            sds.append(float(np.std((lo - fu)[mask], ddof=1)))
    return float(np.mean(sds)) if sds else math.nan


def _settings(kernel: FilterName, i0: float) -> SimulationSettings:
    from meddenoise.simulate import SimulationSettings

    return SimulationSettings(dose_fraction=LEVEL_DOSE, i0=float(f"{i0:.3g}"), sigma_e2=10.0, filter=kernel)


def _request(series: LevelSeries, start: int, length: int, settings: SimulationSettings, seed: int) -> Any:
    from meddenoise.training.pairs import RunRequest

    return RunRequest(info=series.info, start=start, length=length, settings=settings, seed=seed)


def _seed(series: LevelSeries, start: int, kernel: FilterName, realisation: int = 0) -> int:
    return LEVEL_SEED + 10_000 * series.index + 10 * start + KERNELS.index(kernel) + 100_000 * realisation


def calibrate(
    series: LevelSeries, slices: Sequence[int], cache: Path, kernels: Sequence[FilterName] = KERNELS
) -> dict[tuple[int, str], tuple[float, float]]:
    """Per calibration slice and kernel, (A, B) of sd^2 = A / I0 + B / I0^2, from two I0 values.

    Soft-tissue noise differs a lot along a series (shoulders against mid-lung), so every scored run
    is calibrated on its own central slice, and the tune slice on itself. Both I0 values use the
    same seed, so the two measurements share their random draws and the fit has no sampling noise.
    """
    from meddenoise.training.pairs import build_runs

    requests = [
        _request(series, index, 1, _settings(kernel, i0), _seed(series, index, kernel))
        for index in slices
        for kernel in kernels
        for i0 in CALIBRATION_I0
    ]
    runs = iter(build_runs(requests, cache_dir=cache, description=f"calibrate {series.name}"))
    fits = {}
    for index in slices:
        for kernel in kernels:
            (i1, i2), (r1, r2) = CALIBRATION_I0, (next(runs), next(runs))
            v1, v2 = (
                soft_tissue_sd(r.low_hu.astype(np.float32), r.full_hu.astype(np.float32)) ** 2
                for r in (r1, r2)
            )
            # v * I0 = A + B / I0: a line in 1 / I0 through the two points.
            b = (v1 * i1 - v2 * i2) / (1.0 / i1 - 1.0 / i2)
            a = v1 * i1 - b / i1
            if not (a > 0 and b >= 0):  # not the expected shape: fall back to sd^2 = A / I0
                a, b = v1 * i1, 0.0
            fits[(index, kernel)] = (float(a), float(b))
            logger.info(
                "%s slice %d %s: sd %.1f HU at I0 %.2g, %.1f at %.2g",
                *(series.name, index, kernel, v1**0.5, i1, v2**0.5, i2),
            )
    return fits


def i0_for(target_sd: float, fit: tuple[float, float]) -> float:
    """The I0 whose fitted soft-tissue noise SD is ``target_sd``: A x + B x^2 = sd^2, x = 1 / I0."""
    a, b = fit
    v = target_sd**2
    x = v / a if b == 0 else (-a + math.sqrt(a * a + 4 * b * v)) / (2 * b)
    return float(f"{1.0 / x:.3g}")


@dataclass
class Setting:
    """One noise level and kernel: its simulated cases, tune cases and measured input noise."""

    level: float
    kernel: FilterName
    cases: list[Case]
    tuning: list[Case]
    i0: dict[str, list[float]]  # per series: the tune slice's, then each scored run's
    input_sd: dict[str, float]  # simulated noise SD in soft tissue, per series
    estimated_sd: dict[str, float]  # the noise estimator on the low-dose input (what v5 is told)

    @property
    def key(self) -> str:
        return f"{self.level:g} HU {self.kernel}"


def _blocks(s: LevelSeries, length: int) -> list[tuple[int, int, int]]:
    """(first slice, length, slice calibrated on) of the tune slice and of each scored run."""
    return [(s.tune, 1, s.tune)] + [(start, length, start + length // 2) for start in s.scored]


def calibrate_all(
    series: Sequence[LevelSeries], *, kernels: Sequence[FilterName], scored_per_run: int, cache: Path
) -> dict[str, dict[tuple[int, str], tuple[float, float]]]:
    """Each series' noise fits, per calibrated slice and kernel."""
    length = scored_per_run + 2
    return {s.name: calibrate(s, [b[2] for b in _blocks(s, length)], cache, kernels) for s in series}


def simulate_setting(
    series: Sequence[LevelSeries],
    fits: dict[str, dict[tuple[int, str], tuple[float, float]]],
    *,
    level: float,
    kernel: FilterName,
    scored_per_run: int,
    cache: Path,
    texture: bool,
) -> Setting:
    """Simulate (or load) the tune slice and every scored run of one noise level and kernel."""
    from meddenoise.metrics.noise_level import estimate_noise_sd
    from meddenoise.training.pairs import build_runs

    length = scored_per_run + 2
    setting = Setting(level, kernel, [], [], {}, {}, {})
    for s in series:
        requests, i0s = [], []
        for first, n, calibrated in _blocks(s, length):
            i0 = i0_for(level, fits[s.name][(calibrated, kernel)])
            i0s.append(i0)
            requests.append(_request(s, first, n, _settings(kernel, i0), _seed(s, first, kernel)))
            if texture and n > 1:
                requests.append(_request(s, first, n, _settings(kernel, i0), _seed(s, first, kernel, 1)))
        setting.i0[s.name] = i0s
        tune_run, *scored = build_runs(requests, cache_dir=cache, description=f"simulate {s.name}")
        setting.tuning.append(_case(tune_run, s.name, slice(0, 1)))
        step = 2 if texture else 1
        for k in range(0, len(scored), step):
            twin = scored[k + 1].low_hu.astype(np.float32) if texture else None
            setting.cases.append(_case(scored[k], s.name, slice(1, 1 + scored_per_run), twin))
        kept = [(c.low[c.keep], c.full[c.keep]) for c in setting.cases if c.series == s.name]
        setting.input_sd[s.name] = float(np.mean([soft_tissue_sd(lo, fu) for lo, fu in kept]))
        setting.estimated_sd[s.name] = float(
            np.mean([estimate_noise_sd(x).sd_hu for lo, _ in kept for x in lo])
        )
    return setting


def _case(run: PairRun, name: str, keep: slice, low2: Volume | None = None) -> Case:
    return Case(
        low=run.low_hu.astype(np.float32),
        full=run.full_hu.astype(np.float32),
        pixel_mm=float(run.pixel_mm[0]),
        series=name,
        keep=keep,
        low2=low2,
    )


def _denoised(
    model: Any, cases: Sequence[Case], *, single: bool, twins: bool
) -> tuple[list[Volume], float, list[Volume | None]]:
    """A model's outputs on each case's kept slices: from the whole run, or each slice alone."""
    from meddenoise.inference import InferenceSettings, denoise_volume

    settings = InferenceSettings(device="cpu")

    def run(volume: Volume, keep: slice) -> Volume:
        if not single:
            return denoise_volume(volume, model=model, settings=settings)[keep]
        alone = [
            denoise_volume(volume[i : i + 1], model=model, settings=settings)
            for i in range(keep.start, keep.stop)
        ]
        return np.concatenate(alone)

    started = time.perf_counter()
    outputs = [run(c.low, c.keep) for c in cases]
    seconds = time.perf_counter() - started
    second = [None if (c.low2 is None or not twins) else run(c.low2, c.keep) for c in cases]
    return outputs, seconds, second


def _subset(cases: Sequence[Case], first: int) -> list[Case]:
    """The first ``first`` kept slices of every case (BM3D's share)."""
    return [dataclasses.replace(c, keep=slice(c.keep.start, c.keep.start + first)) for c in cases]


def run_setting(
    setting: Setting, models: dict[str, Any], *, bm3d_slices: int, skip: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Every row of one noise level and kernel."""
    cases, tuning = setting.cases, setting.tuning
    rows: dict[str, dict[str, Any]] = {}
    no_op: Filter = lambda hu, _: hu  # noqa: E731
    outputs, seconds = _apply(no_op, 0.0, cases)
    rows["low-dose input"] = {
        "input": "-",
        "parameter": {},
        **summarise(outputs, cases, seconds, _apply_twins(no_op, 0.0, cases)),
    }
    if "median" not in skip:
        rows["median"] = {"input": "2D", **tune("median", cases, tuning=tuning, grid=MEDIAN_GRID)}
    model_outputs: dict[str, list[Volume]] = {}
    for name, model in models.items():
        for mode in ("series", "single"):
            outs, secs, twins = _denoised(model, cases, single=mode == "single", twins=True)
            label = f"{name} ({mode})"
            model_outputs[label] = outs
            rows[label] = {
                "input": mode,
                "parameter": {"model": f"{model.card.name} {model.card.version}"},
                **summarise(outs, cases, secs, twins),
            }
    if "bm3d" not in skip:
        sd = float(np.mean(list(setting.input_sd.values())))
        grid = tuple(round(r * sd) for r in BM3D_RATIOS)
        few = _subset(cases, bm3d_slices)
        found = tune("bm3d", few, tuning=tuning, grid=grid)
        # The other rows on BM3D's slices, for a like-for-like comparison.
        same = {"low-dose input": summarise([c.low[c.keep] for c in few], few, 0.0)["mean"]}
        for label, outs in model_outputs.items():
            same[label] = summarise([o[:bm3d_slices] for o in outs], few, 0.0)["mean"]
        rows["BM3D"] = {"input": "2D", **found, "others_on_same_slices": same}
    first = [k for k in ("low-dose input", "median", "BM3D") if k in rows]
    return {k: rows[k] for k in first + [k for k in rows if k not in first]}


def levels_markdown(
    settings: Sequence[Setting], results: dict[str, dict[str, Any]], context: dict[str, Any]
) -> str:
    """The levels table: one block of rows per noise level and kernel."""
    lines = [
        f"{context['n_series']} validation series ({', '.join(context['series'])}), simulated 25 % dose with "
        "I0 calibrated per run and kernel so that the inserted noise has the target SD in soft tissue; "
        f"{context['scored_per_series']} scored slices per series and setting "
        f"(BM3D: {context['bm3d_slices_per_series']}); per-slice scores averaged per series, "
        "then over series.",
        "",
        "| input noise SD, target → measured (estimator) | kernel | method | input | parameter | "
        "abdomen PSNR dB | abdomen SSIM | lung PSNR dB | lung SSIM | HU bias | NPS mean-freq. shift % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in settings:
        measured = np.mean(list(setting.input_sd.values()))
        estimated = np.mean(list(setting.estimated_sd.values()))
        noise = f"{setting.level:g} → {measured:.1f} ({estimated:.1f})"
        for name, row in results[setting.key].items():
            m = row["mean"]

            def fmt(key: str, digits: int, signed: bool = False, m: dict[str, float] = m) -> str:
                if key not in m or not math.isfinite(m[key]):
                    return "n/a"
                return f"{m[key]:+.{digits}f}" if signed else f"{m[key]:.{digits}f}"

            params = ", ".join(f"{k}={v:g}" for k, v in row["parameter"].items() if k != "model")
            if name == "BM3D":
                params += f" ({context['bm3d_slices_per_series']} slices/series)"
            lines.append(
                f"| {noise} | {setting.kernel} | {name.split(' (')[0]} | {row['input']} | {params} | "
                f"{fmt('abdomen_psnr_db', 2)} | {fmt('abdomen_ssim', 4)} | {fmt('chest-ldct_psnr_db', 2)} | "
                f"{fmt('chest-ldct_ssim', 4)} | {fmt('hu_bias', 2, True)} | "
                f"{fmt('nps_mean_shift_percent', 1, True)} |"
            )
    return "\n".join(lines)


def settings_markdown(settings: Sequence[Setting]) -> str:
    """Per setting and series: I0 of the tune slice and scored runs, measured and estimated noise."""
    lines = [
        "| setting | series | I0 (tune slice; scored runs) | inserted noise SD in soft tissue, HU | "
        "estimator on the input, HU |",
        "|---|---|---|---|---|",
    ]
    for setting in settings:
        for name, i0s in setting.i0.items():
            runs = ", ".join(f"{i:.3g}" for i in i0s[1:])
            lines.append(
                f"| {setting.key} | {name} | {i0s[0]:.3g}; {runs} | {setting.input_sd[name]:.1f} | "
                f"{setting.estimated_sd[name]:.1f} |"
            )
    return "\n".join(lines)


def gains_markdown(
    settings: Sequence[Setting], results: dict[str, dict[str, Any]], names: Sequence[str]
) -> str:
    """Gain over the input (abdomen / lung PSNR dB) of each model and input mode, per setting."""
    rows = [f"{n} ({mode})" for n in names for mode in ("series", "single")]
    lines = [
        "| setting | " + " | ".join(rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for setting in settings:
        found = results[setting.key]
        base = found["low-dose input"]["mean"]
        cells = []
        for row in rows:
            m = found[row]["mean"]
            cells.append(
                f"{m['abdomen_psnr_db'] - base['abdomen_psnr_db']:+.2f} / "
                f"{m['chest-ldct_psnr_db'] - base['chest-ldct_psnr_db']:+.2f}"
            )
        lines.append(f"| {setting.key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def delta_markdown(
    settings: Sequence[Setting], results: dict[str, dict[str, Any]], new: str, old: str
) -> str:
    """``new`` minus ``old`` per setting: abdomen / lung PSNR dB and SSIM, series and single slices."""
    lines = [
        "| setting | series: abdomen PSNR / SSIM | series: lung PSNR / SSIM | single: abdomen PSNR / SSIM | "
        "single: lung PSNR / SSIM |",
        "|---|---|---|---|---|",
    ]
    for setting in settings:
        found = results[setting.key]
        cells = []
        for mode in ("series", "single"):
            a, b = found[f"{new} ({mode})"]["mean"], found[f"{old} ({mode})"]["mean"]
            for protocol in ("abdomen", "chest-ldct"):
                psnr = a[f"{protocol}_psnr_db"] - b[f"{protocol}_psnr_db"]
                ssim = a[f"{protocol}_ssim"] - b[f"{protocol}_ssim"]
                cells.append(f"{psnr:+.2f} / {ssim:+.4f}")
        lines.append(f"| {setting.key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_levels(args: argparse.Namespace) -> int:
    """``--levels``: the table across noise levels and kernels, series and single slices.

    The JSON is rewritten after every setting, so an interrupted run keeps what it finished.
    """
    from meddenoise.models import load_model

    started = time.perf_counter()
    cache = Path(args.cache_dir or LEVEL_CACHE)
    series = level_series(args.config, runs=args.runs_per_series, length=args.scored_per_run + 2)
    kernels = args.kernel or KERNELS
    fits = calibrate_all(series, kernels=kernels, scored_per_run=args.scored_per_run, cache=cache)
    logger.info("calibrated in %.0f s", time.perf_counter() - started)
    models = {}
    for spec in args.model:
        model = load_model(spec)
        models[model.card.name] = model
    context = {
        "command": "python benchmarks/quality.py " + " ".join(args.argv),
        "config": _relative(args.config),
        "series": [s.name for s in series],
        "n_series": len(series),
        "dose_fraction": LEVEL_DOSE,
        "sigma_e2": 10.0,
        "calibration": "I0 per kernel for every scored run (on its central slice) and for the tune slice, "
        "from the soft-tissue SD of the inserted noise at I0 = "
        f"{CALIBRATION_I0[0]:.2g} and {CALIBRATION_I0[1]:.2g} with one seed (sd^2 = A/I0 + B/I0^2)",
        "input_sd_protocol": "SD of (low - full) over soft tissue (smoothed full dose in [-150, 200] "
        "HU, eroded 3 px), mean over scored slices, then over series; 'estimator' is "
        "meddenoise.metrics.noise_level on the low-dose input (total noise, including the full-dose "
        "scan's own), as a noise-conditioned model is told it",
        "runs": {
            s.name: {
                "scored_run_starts": list(s.scored),
                "run_length": args.scored_per_run + 2,
                "scored_slices_per_run": "all but the first and last (each has both neighbours)",
                "tune_slice": s.tune,
                "n_slices": len(s.info.slices),
            }
            for s in series
        },
        "scored_per_series": args.scored_per_run * len(series[0].scored),
        "bm3d_slices_per_series": args.bm3d_slices * len(series[0].scored),
        "inputs": "series: the whole run goes through the model (2.5D neighbours present); single: each "
        "scored slice alone as a one-slice volume (its neighbours are copies of itself); 2D methods "
        "have one row for both",
        "tuning": "median and BM3D tuned per setting on the tune split (1 slice per series, not scored), "
        "best mean abdomen PSNR; BM3D's grid is multiples "
        f"{', '.join(f'{r:g}' for r in BM3D_RATIOS)} of the setting's measured input SD",
        "texture": bool(args.texture),
        "protocols": list(PROTOCOLS),
        "aggregation": "per-slice scores -> mean per series -> mean over series",
    }
    results: dict[str, dict[str, Any]] = {}
    settings: list[Setting] = []
    settings_json: dict[str, Any] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plan = [(level, kernel) for level in args.level or LEVELS_HU for kernel in kernels]
    for level, kernel in plan:
        # Simulated and scored one setting at a time: an interrupted run keeps whole settings.
        setting = simulate_setting(
            series,
            fits,
            level=level,
            kernel=kernel,
            scored_per_run=args.scored_per_run,
            cache=cache,
            texture=args.texture,
        )
        settings.append(setting)
        settings_json[setting.key] = {
            "level_hu": setting.level,
            "kernel": setting.kernel,
            "i0_tune_then_runs": setting.i0,
            "input_sd_hu": setting.input_sd,
            "estimated_sd_hu": setting.estimated_sd,
        }
        logger.info(
            "%s: I0 %s, input SD %s HU (%.0f s)",
            setting.key,
            setting.i0,
            {k: round(v, 1) for k, v in setting.input_sd.items()},
            time.perf_counter() - started,
        )
        results[setting.key] = run_setting(setting, models, bm3d_slices=args.bm3d_slices, skip=args.skip)
        context["seconds"] = round(time.perf_counter() - started, 1)
        context["complete"] = len(results) == len(plan)
        found = {"context": context, "settings": settings_json, "results": results}
        args.out.write_text(json.dumps(found, indent=2) + "\n")
    print_levels(settings, results, context, list(models))
    print(f"\nwritten {args.out} in {context['seconds']:.0f} s")
    return 0


def print_levels(
    settings: Sequence[Setting],
    results: dict[str, dict[str, Any]],
    context: dict[str, Any],
    models: list[str],
) -> None:
    """Every Markdown table of ``--levels``, for the settings that have results."""
    done = [s for s in settings if s.key in results]
    print(levels_markdown(done, results, context))
    print("\nNoise settings (25 % dose; I0 calibrated per run):\n")
    print(settings_markdown(done))
    if models:
        print("\nPSNR gain over the input, abdomen / lung (dB):\n")
        print(gains_markdown(done, results, models))
    if len(models) >= 2:
        print(f"\n{models[-1]} minus {models[0]}:\n")
        print(delta_markdown(done, results, models[-1], models[0]))
    table = bm3d_markdown(done, results)
    if table:
        print("\nBM3D against the other rows on BM3D's slices, abdomen / lung PSNR dB:\n")
        print(table)


def render_levels(path: Path) -> int:
    """``--render``: the tables of a saved (possibly partial) ``--levels`` JSON, without rerunning."""
    found = json.loads(path.read_text())
    settings = [
        Setting(
            v["level_hu"], v["kernel"], [], [], v["i0_tune_then_runs"], v["input_sd_hu"], v["estimated_sd_hu"]
        )
        for v in found["settings"].values()
    ]
    rows = next(iter(found["results"].values()), {})
    models = list(dict.fromkeys(k.rsplit(" (", 1)[0] for k in rows if k.endswith((" (series)", " (single)"))))
    print_levels(settings, found["results"], found["context"], models)
    return 0


def bm3d_markdown(settings: Sequence[Setting], results: dict[str, dict[str, Any]]) -> str:
    """BM3D against the other rows on BM3D's own slices (abdomen / lung PSNR dB)."""
    first = next((results[s.key]["BM3D"] for s in settings if "BM3D" in results[s.key]), None)
    if first is None:
        return ""
    others = list(first["others_on_same_slices"])
    lines = [
        "| setting | BM3D | " + " | ".join(others) + " |",
        "|---|---|" + "---|" * len(others),
    ]
    for setting in settings:
        row = results[setting.key].get("BM3D")
        if row is None:
            continue
        cells = [row["mean"]] + [row["others_on_same_slices"][o] for o in others]
        text = [f"{m['abdomen_psnr_db']:.2f} / {m['chest-ldct_psnr_db']:.2f}" for m in cells]
        lines.append(f"| {setting.key} | " + " | ".join(text) + " |")
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
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON result (default results/quality.json, --levels: results/quality_levels.json)",
    )
    levels = parser.add_argument_group("--levels: noise levels x kernels, series and single slices")
    levels.add_argument("--levels", action="store_true", help="the table across noise levels and kernels")
    levels.add_argument(
        "--level",
        type=float,
        action="append",
        help="target input noise SD in HU (repeatable; default 15, 30, 60)",
    )
    levels.add_argument(
        "--kernel", action="append", choices=KERNELS, help="FBP kernel (repeatable; default both)"
    )
    levels.add_argument("--runs-per-series", type=int, default=2, help="scored runs per series (default 2)")
    levels.add_argument(
        "--scored-per-run",
        type=int,
        default=2,
        help="scored slices per run, each with a neighbour on either side (default 2)",
    )
    levels.add_argument(
        "--bm3d-slices", type=int, default=1, help="BM3D scores this many slices per run (default 1)"
    )
    levels.add_argument("--render", type=Path, help="print the tables of a saved --levels JSON and exit")
    levels.add_argument(
        "--texture",
        action="store_true",
        help="also the NPS mean-frequency shift (simulates a "
        "second realisation of every scored run: about twice the simulation time)",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results_dir = REPO / "benchmarks" / "results"
    if args.render:
        return render_levels(args.render)
    if args.levels:
        args.out = args.out or results_dir / "quality_levels.json"
        return main_levels(args)
    args.out = args.out or results_dir / "quality.json"
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
