"""Low-contrast detectability (CHO d′) of the CCT189 inserts before and after denoising.

Two ensembles of the FDA low-contrast phantom (``fixtures/lcd-ct-phantom-3doses`` in
``../shared/data``, CC0; 256 x 256, 1 mm pixels as its realisations declare):

``--simulate [N]`` (N = 100 per class if omitted; the one that can judge the bar)
    N signal-present and N signal-absent realisations per dose level, made by meddenoise's own
    projection-domain simulator from the noise-free ``ground_truth.mhd`` (HU = stored - 1000; the
    signal-absent truth has its inserts, found by ``find_inserts``, set to the 0 HU background):
    pre-log Poisson + electronic noise (Zeng 2015) in the Siemens-like fan beam, Hann FBP of the
    noise, views binned by 4 before the FBP. ``I0`` per level is calibrated so that the 100/55/10 %
    levels have the fixture's noise SD (see :data:`I0_FULL`); the 200 % and 5 % levels
    (``--dose 200 --dose 5``) extend the range. Seeds are fixed, so the run is reproducible; the
    stacks are cached in ``/tmp/meddenoise-lcd-cache``.
no ``--simulate``
    The fixture's own 10 + 10 realisations per dose (another simulator's noise). Per-insert d′ is
    uncertain by about ±0.7-1.2 there, too much to judge a 10 % bar.

Every realisation is denoised on its own, as a one-slice series (as in ``phantom_texture.py``).
For each insert found in the noise-free ground truth, a Laguerre–Gauss channelized Hotelling
observer gives d′ of the FBP input and of each model's output
(:mod:`meddenoise.metrics.detectability`: 5 channels, unbiased d′² over all N + N images, with a
jackknife SD; the two-fold held-out d′ is reported alongside in the JSON). The table shows
d′ ± SD and the ratio output/input ± its paired jackknife SD (each realisation left out of the
input and of its own output together, so their shared noise cancels); the last row of each dose
pools the inserts as ``sqrt(sum d′²)``. A ratio above 1 means the observer sees the insert better
after denoising.

Verdict against the bar of issue 15 (a model may lose at most 10 % of the input's d′ at any dose
and insert size): PASS if ratio - 2 SD >= 0.9, FAIL if ratio + 2 SD < 0.9, otherwise ``open``
(more realisations needed); ``n/a`` where the insert is not reliably seen in the input
(input d′ - 2 SD <= 0). A model passes overall when every insert row passes.

    python benchmarks/detectability.py --simulate --model unet-pu-v1
    python benchmarks/detectability.py --simulate 100 --dose 200 --dose 100 --dose 55 --dose 10 \
        --dose 5 --model unet-pu-v1 --model runs/unet-pu-v5/model.pt
    python benchmarks/detectability.py --model unet-pu-v1      # the fixture's 10 + 10

Writes a Markdown table to stdout and ``benchmarks/results/detectability.json`` (simulated) or
``benchmarks/results/detectability_fixture.json`` (fixture).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from phantom_texture import DOSES, FIXTURE, Volume, denoise_each, read_ground_truth, read_realisations

REPO = Path(__file__).resolve().parents[1]
INPUT = "FBP input"
POOLED = "all (pooled)"
PIXEL_MM = 1.0
"""The fixture's declared pixel size (its realisations' ElementSpacing; ground_truth.mhd has none)."""
I0_FULL = 3.7e4
"""Photons per ray at the 100 % level, calibrated so that the simulated 100 % noise SD (central
64 px disc) matches the fixture's 100 % dose; pre-log noise depends on dose x I0 only."""
SIGMA_E2 = 10.0
VIEW_BINNING = 4
SIM_DOSES = ("100", "55", "10")
SEED = 15
BAR = 0.9
NOISE_RADIUS_PX = 64
CACHE = Path("/tmp/meddenoise-lcd-cache")

logger = logging.getLogger("detectability")


# --- the simulated ensemble -------------------------------------------------------------------


def level_settings(percent: float) -> Any:
    """Pre-log simulation settings for ``percent`` of the fixture's full dose (above 100 %: more I0)."""
    from meddenoise.simulate import SimulationSettings

    fraction = percent / 100.0
    return SimulationSettings(
        dose_fraction=min(fraction, 1.0),
        i0=I0_FULL * max(fraction, 1.0),
        sigma_e2=SIGMA_E2,
        mode="pre-log",
        view_binning=VIEW_BINNING,
    )


def absent_truth(truth_hu: Volume, background_hu: float = 0.0) -> Volume:
    """The noise-free phantom with every insert (``find_inserts``) set to the background."""
    from meddenoise.metrics import find_inserts

    absent = np.array(truth_hu, dtype=np.float32, copy=True)
    for insert in find_inserts(truth=truth_hu, background_hu=background_hu):
        absent[insert.mask] = background_hu
    return absent


def simulate_realisations(
    truth_hu: Volume, *, n: int, settings: Any, pixel_mm: float, seed: int, batch_size: int = 4
) -> Volume:
    """``n`` noisy realisations of one noise-free (rows, cols) slice, in HU.

    Equal, seed for seed, to ``simulate_from_settings(np.repeat(truth_hu[None], n, 0), ...)`` with
    the same ``batch_size``: the same steps as its ``_noise_hu``, except that the noise-free
    sinogram, identical for every realisation, is projected once instead of once per slice.
    """
    import torch

    from meddenoise.simulate import MU_WATER_PER_MM, fbp, hu_to_mu
    from meddenoise.simulate.lowdose import PADDING_BELOW_HU, _bin_views
    from meddenoise.simulate.noise import bowtie_profile, noise_free_sinogram, noise_sinogram

    g = settings.geometry
    full = torch.from_numpy(np.asarray(truth_hu, dtype=np.float32)[None])
    pad = full < PADDING_BELOW_HU
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((n, *full.shape[1:]), dtype=np.float32)
    with torch.no_grad():
        p = noise_free_sinogram(hu_to_mu(full, padding=pad), pixel_mm=(pixel_mm, pixel_mm), geometry=g)
        i0 = settings.i0 * bowtie_profile(g, edge_fraction=settings.bowtie_edge_fraction, device=p.device)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            delta = noise_sinogram(
                p.expand(stop - start, -1, -1),
                dose_fraction=settings.dose_fraction,
                i0=i0,
                sigma_e2=settings.sigma_e2,
                mode=settings.mode,
                generator=generator,
            )
            delta, recon = _bin_views(delta, g, settings.view_binning)
            shape = (full.shape[1], full.shape[2])
            noise = fbp(
                delta, pixel_mm=(pixel_mm, pixel_mm), shape=shape, geometry=recon, filter=settings.filter
            )
            noisy = full + noise * (1000.0 / MU_WATER_PER_MM)
            out[start:stop] = torch.where(pad, full, noisy).numpy()
    return out


def cached_realisations(truth_hu: Volume, *, n: int, settings: Any, seed: int, cache: Path) -> Volume:
    """:func:`simulate_realisations`, cached as .npy under ``cache`` by everything that sets them."""
    key = hashlib.sha256(np.ascontiguousarray(truth_hu, dtype=np.float32).tobytes())
    key.update(f"{settings!r}|n={n}|seed={seed}|pixel={PIXEL_MM}|batch=4".encode())
    path = cache / f"lcd-{key.hexdigest()[:20]}.npy"
    if path.is_file():
        return np.load(path)
    stack = simulate_realisations(truth_hu, n=n, settings=settings, pixel_mm=PIXEL_MM, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, stack)
    partial.replace(path)
    return stack


def noise_sd(stack: Volume) -> float:
    """Noise SD (HU) within :data:`NOISE_RADIUS_PX` of the centre: each image minus the ensemble
    mean, variance scaled by n/(n-1)."""
    rows, cols = stack.shape[1:]
    yy, xx = np.mgrid[0:rows, 0:cols]
    disc = (yy - (rows - 1) / 2) ** 2 + (xx - (cols - 1) / 2) ** 2 <= NOISE_RADIUS_PX**2
    noise = stack[:, disc] - stack[:, disc].mean(axis=0)
    return float(np.sqrt(noise.var() * len(stack) / (len(stack) - 1)))


# --- scoring --------------------------------------------------------------------------------------


def score(present: Volume, absent: Volume, truth_hu: Volume) -> list[dict[str, Any]]:
    """CHO results per insert (largest contrast first), as plain dicts for the JSON."""
    from meddenoise.metrics.detectability import detectability_by_insert

    results = detectability_by_insert(present=present, absent=absent, truth_hu=truth_hu)
    return [dataclasses.asdict(r) for r in results]


def pooled(results: list[dict[str, Any]]) -> tuple[float, float]:
    """``sqrt(sum d′²)`` over inserts, and its SD by error propagation (inserts independent)."""
    d2 = sum(max(r["dprime_squared"], 0.0) for r in results)
    if d2 == 0.0:
        return 0.0, float("nan")
    return math.sqrt(d2), math.sqrt(sum((r["dprime"] * r["dprime_sd"]) ** 2 for r in results) / d2)


def channels(stacks: tuple[Volume, Volume], truth_hu: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(present, absent) channel vectors, shape (n, inserts, channels), inserts as in :func:`score`."""
    from meddenoise.metrics import find_inserts
    from meddenoise.metrics.detectability import channel_outputs

    inserts = find_inserts(truth=truth_hu, background_hu=0.0)
    p, a = (np.stack([channel_outputs(images=s, insert=i) for i in inserts], axis=1) for s in stacks)
    return p, a


def ratios(
    inputs: tuple[Volume, Volume], outputs: tuple[Volume, Volume], truth_hu: Volume
) -> list[tuple[float, float]]:
    """d′(output)/d′(input) with its paired jackknife SD, per insert then pooled."""
    from meddenoise.metrics.detectability import dprime_ratio

    v_in, v_out = channels(inputs, truth_hu), channels(outputs, truth_hu)
    rows = [
        dprime_ratio(inputs=(v_in[0][:, k], v_in[1][:, k]), outputs=(v_out[0][:, k], v_out[1][:, k]))
        for k in range(v_in[0].shape[1])
    ]
    return [*rows, dprime_ratio(inputs=v_in, outputs=v_out)]


def verdict(found: float, sd: float, d_in: float, sd_in: float) -> str:
    """PASS / FAIL / open against :data:`BAR` at 2 SD; n/a when the input barely shows the insert."""
    if not d_in - 2.0 * sd_in > 0.0 or not np.isfinite(found) or not np.isfinite(sd):
        return "n/a"
    if found - 2.0 * sd >= BAR:
        return "PASS"
    return "FAIL" if found + 2.0 * sd < BAR else "open"


def insert_label(r: dict[str, Any]) -> str:
    return f"r {r['radius_px']:.1f} px, {r['contrast_hu']:+.1f} HU"


def table_rows(level: dict[str, Any], models: Sequence[str]) -> list[dict[str, Any]]:
    """Per insert then pooled: the input's and each model's d′ ± SD, ratio ± SD and verdict."""
    methods = level["dprime"]
    labels = [insert_label(r) for r in methods[INPUT]] + [POOLED]
    rows = []
    for k, label in enumerate(labels):
        values = {
            name: (m[k]["dprime"], m[k]["dprime_sd"]) if k < len(m) else pooled(m)
            for name, m in methods.items()
        }
        row: dict[str, Any] = {"insert": label, "input": values[INPUT], "models": {}}
        for name in models:
            found, sd = level["ratio"][name][k]
            row["models"][name] = {
                "dprime": values[name],
                "ratio": found,
                "ratio_sd": sd,
                "held_out_ratio": _held_out_ratio(methods, name, k),
                "verdict": verdict(found, sd, *values[INPUT]),
            }
        rows.append(row)
    return rows


def _held_out_ratio(methods: dict[str, list[dict[str, Any]]], name: str, k: int) -> float:
    if k >= len(methods[INPUT]):
        d_in = math.sqrt(sum(max(r["dprime_held_out"], 0.0) ** 2 for r in methods[INPUT]))
        d_out = math.sqrt(sum(max(r["dprime_held_out"], 0.0) ** 2 for r in methods[name]))
    else:
        d_in, d_out = methods[INPUT][k]["dprime_held_out"], methods[name][k]["dprime_held_out"]
    return d_out / d_in if d_in > 0 else float("nan")


def _cells(row: dict[str, Any]) -> str:
    """Each model's d′ ± SD, ratio ± SD and verdict (in brackets for the pooled row)."""
    cells = []
    for c in row["models"].values():
        finite = np.isfinite(c["ratio"]) and np.isfinite(c["ratio_sd"])
        found = f"{c['ratio']:.3f} ± {c['ratio_sd']:.3f}" if finite else "n/a"
        mark = f"({c['verdict']})" if row["insert"] == POOLED else c["verdict"]
        cells.append(f" {c['dprime'][0]:.2f} ± {c['dprime'][1]:.2f} | {found} | {mark} |")
    return "".join(cells)


def markdown(levels: dict[str, dict[str, Any]], models: Sequence[str]) -> str:
    head = "| dose | noise SD HU, input → model | insert | input d′ |" + "".join(
        f" {m} d′ | ratio ± SD | verdict |" for m in models
    )
    lines = [head, "|---" * (4 + 3 * len(models)) + "|"]
    for dose, level in levels.items():
        outputs = " / ".join(f"{level['output_noise_sd_hu'][m]:.1f}" for m in models)
        noise = f"{level['noise_sd_hu']:.1f} → {outputs}" if models else f"{level['noise_sd_hu']:.1f}"
        for row in level["rows"]:
            d_in, sd_in = row["input"]
            lines.append(f"| {dose} | {noise} | {row['insert']} | {d_in:.2f} ± {sd_in:.2f} |{_cells(row)}")
    lines.append("")
    lines.extend(f"overall {m}: {overall_verdict(levels, m)}" for m in models)
    return "\n".join(lines)


def overall_verdict(levels: dict[str, dict[str, Any]], model: str) -> str:
    """FAIL if any insert row fails, PASS if every insert row that applies passes, else open."""
    found = [
        row["models"][model]["verdict"]
        for level in levels.values()
        for row in level["rows"]
        if row["insert"] != POOLED
    ]
    if "FAIL" in found:
        return "FAIL"
    return "PASS" if all(v in ("PASS", "n/a") for v in found) else "open"


# --- the two modes --------------------------------------------------------------------------------


def evaluate(
    inputs: tuple[Volume, Volume], truth: Volume, models: dict[str, Any], label: str
) -> dict[str, Any]:
    """d′ of the input and of each model's output, and the ratios, for one dose level."""
    level: dict[str, Any] = {
        "dprime": {INPUT: score(*inputs, truth)},
        "ratio": {},
        "noise_sd_hu": noise_sd(inputs[1]),
        "output_noise_sd_hu": {},
    }
    for name, model in models.items():
        started = time.perf_counter()
        outputs = (denoise_each(inputs[0], model, 1.0), denoise_each(inputs[1], model, 1.0))
        level["dprime"][name] = score(*outputs, truth)
        level["ratio"][name] = ratios(inputs, outputs, truth)
        level["output_noise_sd_hu"][name] = noise_sd(outputs[1])
        logger.info(
            "%s %s: noise SD %.1f -> %.1f HU, pooled d' %.2f -> %.2f (denoised in %.0f s)",
            label,
            name,
            level["noise_sd_hu"],
            level["output_noise_sd_hu"][name],
            pooled(level["dprime"][INPUT])[0],
            pooled(level["dprime"][name])[0],
            time.perf_counter() - started,
        )
    level["rows"] = table_rows(level, list(models))
    return level


def run_simulated(args: argparse.Namespace, root: Path, models: dict[str, Any]) -> dict[str, Any]:
    truth = read_ground_truth(root)[0]
    truths = (truth, absent_truth(truth))
    fixture_sd = {d.removeprefix("dose_").lstrip("0"): noise_sd(read_realisations(root, d)[0]) for d in DOSES}
    levels: dict[str, Any] = {}
    for dose in args.dose or list(SIM_DOSES):
        percent = float(dose)
        settings = level_settings(percent)
        started = time.perf_counter()
        inputs = tuple(
            cached_realisations(
                t,
                n=args.simulate,
                settings=settings,
                seed=SEED + 2 * round(100 * percent) + c,
                cache=args.cache,
            )
            for c, t in enumerate(truths)
        )
        label = f"{percent:g} %"
        logger.info("%s: %s (%.0f s)", label, settings.describe(), time.perf_counter() - started)
        levels[label] = evaluate((inputs[0], inputs[1]), truth, models, label)
        levels[label] |= {
            "fixture_noise_sd_hu": fixture_sd.get(f"{percent:g}"),
            "simulation": settings.describe(),
            "i0": settings.i0,
            "dose_fraction": settings.dose_fraction,
        }
    return levels


def run_fixture(args: argparse.Namespace, root: Path, models: dict[str, Any]) -> dict[str, Any]:
    truth = read_ground_truth(root)[0]
    levels: dict[str, Any] = {}
    for dose in args.dose or list(DOSES):
        dose_name = dose if dose.startswith("dose_") else f"dose_{int(float(dose)):03d}"
        present, _ = read_realisations(root, dose_name, "present")
        absent, _ = read_realisations(root, dose_name, "absent")
        levels[dose_name] = evaluate((present, absent), truth, models, dose_name)
    return levels


def context(args: argparse.Namespace) -> dict[str, Any]:
    from meddenoise.metrics.detectability import CHANNELS, ROI_PER_DIAMETER, WIDTH_PER_RADIUS

    found = {
        "fixture": FIXTURE,
        "pixel_mm": PIXEL_MM,
        "observer": f"CHO, {CHANNELS} Laguerre-Gauss channels, width {WIDTH_PER_RADIUS} x insert radius, "
        f"ROI {ROI_PER_DIAMETER} x insert diameter; pooled within-class covariance; dprime: unbiased d'^2 "
        "(Wunderlich et al., IEEE TMI 2015) over all images; dprime_sd: two-sample jackknife; "
        "dprime_held_out: two-fold split (alternate images), mean of the folds",
        "pooled": "sqrt(sum over inserts of max(d'^2, 0))",
        "ratio_sd": "paired two-sample jackknife of d'(output)/d'(input), per insert then pooled",
        "verdict": f"bar: ratio >= {BAR}; PASS if ratio - 2 SD >= {BAR}, FAIL if ratio + 2 SD < {BAR}, "
        "else open; n/a if input d' - 2 SD <= 0; overall over insert rows (not pooled)",
        "noise_sd_hu": f"signal-absent images minus their mean within {NOISE_RADIUS_PX} px of the centre",
        "denoising": "each realisation alone, as a one-slice series, strength 1, CPU",
    }
    if args.simulate:
        found["realisations"] = f"{args.simulate} signal-present + {args.simulate} signal-absent per dose"
        found["simulation"] = (
            "meddenoise.simulate pre-log (Zeng 2015) from ground_truth.mhd (HU = stored - 1000; absent: "
            f"inserts set to 0 HU); I0 = {I0_FULL:g} x max(dose, 1), dose fraction min(dose, 1), "
            f"sigma_e^2 = {SIGMA_E2:g}, Siemens-like fan beam (1152 views, 736 channels), views binned "
            f"by {VIEW_BINNING}, hann FBP of the noise; seed {SEED} + 2 x round(100 x percent) "
            "+ (0 present, 1 absent), batches of 4"
        )
    else:
        found["realisations"] = "the fixture's 10 signal-present + 10 signal-absent per dose"
    return found


def main(argv: Sequence[str] | None = None) -> int:
    from meddenoise.models import load_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", action="append", default=[], help="checkpoint name or path (repeatable)")
    parser.add_argument(
        "--simulate",
        type=int,
        nargs="?",
        const=100,
        metavar="N",
        help="N + N simulated realisations per dose",
    )
    parser.add_argument(
        "--dose", action="append", help="per cent (simulated: default 100, 55, 10) or dose_010 etc. (fixture)"
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where simulated stacks are kept")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/detectability[_fixture].json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.simulate is not None and args.simulate < 10:
        parser.error(f"--simulate {args.simulate}: need at least 10 realisations per class")
    root = args.shared / FIXTURE
    if not root.is_dir():
        raise SystemExit(f"{root}: the LCD phantom fixture is missing (see ../shared/data/README.md)")
    models = {name: load_model(name) for name in args.model}
    levels = (run_simulated if args.simulate else run_fixture)(args, root, models)
    name = "detectability.json" if args.simulate else "detectability_fixture.json"
    out = args.out or REPO / "benchmarks" / "results" / name
    summary = {m: overall_verdict(levels, m) for m in models}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"context": context(args), "overall": summary, "levels": levels}, indent=2) + "\n"
    )
    print(markdown(levels, list(models)))
    print(f"\nwritten {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
