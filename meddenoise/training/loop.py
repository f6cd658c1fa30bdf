"""The training loop: simulated pairs → patches → AdamW with warm-up and cosine decay.

Validation uses the same sliding-window inference as the product, on whole slices of the
``validation`` sets at a fixed simulated dose, and keeps the best checkpoint by abdomen PSNR.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from meddenoise.inference import InferenceSettings, denoise_volume, resolve_device
from meddenoise.metrics import score_volume
from meddenoise.models import LoadedModel, ModelCard, build_network, save_checkpoint
from meddenoise.models.card import MetricRecord, TrainingData
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.training.config import TrainingRecipe
from meddenoise.training.data import prepare_data
from meddenoise.training.losses import make_loss
from meddenoise.training.pairs import PairRun
from meddenoise.training.patches import PatchSampler
from meddenoise.windowing import NetworkRange

logger = logging.getLogger(__name__)

VALIDATION_PROTOCOLS = ("abdomen", "full")


@dataclass(frozen=True)
class TrainingResult:
    """Where the run wrote its checkpoint, and the validation scores of the kept model."""

    checkpoint: Path
    log_csv: Path
    best_iteration: int
    scores: dict[str, float]
    input_scores: dict[str, float]
    seconds: float


def network_range(recipe: TrainingRecipe) -> NetworkRange:
    """The HU range and scale the network is trained in (it goes into the model card)."""
    m = recipe.model
    return NetworkRange(lower_hu=m.lower_hu, upper_hu=m.upper_hu, offset_hu=0.0, scale_hu=m.scale_hu)


def lr_factor(iteration: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.01."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = (iteration - warmup) / max(total - warmup, 1)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def validate(model: LoadedModel, runs: list[PairRun], settings: InferenceSettings) -> dict[str, float]:
    """Mean per-slice PSNR/SSIM over all validation runs, per protocol."""
    per_protocol: dict[str, list[tuple[float, float]]] = {p: [] for p in VALIDATION_PROTOCOLS}
    for run in runs:
        denoised = denoise_volume(run.low_hu.astype(np.float32), model=model, settings=settings)
        scores = score_volume(
            denoised=denoised, reference=run.full_hu.astype(np.float32), protocols=VALIDATION_PROTOCOLS
        )
        for protocol, series in scores.items():
            per_protocol[protocol].extend((s.psnr, s.ssim) for s in series.per_slice)
    return _summarise(per_protocol)


def input_scores(runs: list[PairRun]) -> dict[str, float]:
    """The same scores for the low-dose input itself (the baseline every model must beat)."""
    per_protocol: dict[str, list[tuple[float, float]]] = {p: [] for p in VALIDATION_PROTOCOLS}
    for run in runs:
        scores = score_volume(
            denoised=run.low_hu.astype(np.float32),
            reference=run.full_hu.astype(np.float32),
            protocols=VALIDATION_PROTOCOLS,
        )
        for protocol, series in scores.items():
            per_protocol[protocol].extend((s.psnr, s.ssim) for s in series.per_slice)
    return _summarise(per_protocol)


def _summarise(per_protocol: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    out = {}
    for protocol, values in per_protocol.items():
        psnrs = [p for p, _ in values if math.isfinite(p)]
        out[f"{protocol}_psnr_db"] = round(float(np.mean(psnrs)), 3)
        out[f"{protocol}_ssim"] = round(float(np.mean([s for _, s in values])), 4)
    return out


def make_card(
    recipe: TrainingRecipe,
    *,
    scores: dict[str, float],
    baseline: dict[str, float],
    provenance: list[dict[str, str]],
) -> ModelCard:
    """The model card: architecture, input range, data and licences, config and metrics with protocols."""
    m, d = recipe.model, recipe.data
    dataset = f"validation sets {', '.join(d.validation_sets)} ({d.validation_slices_per_series} slices each)"
    dose = f"simulated {d.validation_dose:.0%} (projection-domain, I0=1.5e5, hann)"
    metrics = []
    for key, value in scores.items():
        protocol, name = key.split("_", 1)
        metrics.append(MetricRecord(name=name, value=value, protocol=protocol, dataset=dataset, dose=dose))
        metrics.append(
            MetricRecord(
                name=f"{name} (low-dose input)",
                value=baseline[key],
                protocol=protocol,
                dataset=dataset,
                dose=dose,
            )
        )
    return ModelCard(
        name=m.name,
        version=m.version,
        architecture=m.architecture,
        architecture_kwargs=dict(m.kwargs),
        network_range=network_range(recipe),
        context_slices=m.context_slices,
        training_data=tuple(TrainingData(**p) for p in provenance),
        training_config=json.loads(
            json.dumps({"data": asdict(d), "model": asdict(m), "train": asdict(recipe.train)})
        ),
        metrics=tuple(metrics),
        description=m.description,
    )


def train(recipe: TrainingRecipe, *, progress: ProgressFactory = no_progress) -> TrainingResult:
    """Run a recipe end to end; writes model.pt, its card, log.csv and config.toml to the output dir."""
    started = time.perf_counter()
    t = recipe.train
    torch.manual_seed(t.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(t.threads)
    try:
        device = resolve_device(t.device)
        data = prepare_data(recipe, progress=progress)
        out_dir = Path(recipe.output.dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if recipe.source is not None:
            shutil.copyfile(recipe.source, out_dir / "config.toml")
        nrange = network_range(recipe)
        sampler = PatchSampler(
            data.train_runs,
            patch_size=t.patch_size,
            context=recipe.model.context_slices,
            network_range=nrange,
            body_threshold_hu=t.body_threshold_hu,
            seed=t.seed,
        )
        network = build_network(
            recipe.model.architecture, in_channels=recipe.model.context_slices, **recipe.model.kwargs
        ).to(device)
        baseline = input_scores(data.validation_runs)
        logger.info("low-dose input scores: %s", baseline)
        best = _optimise(recipe, network, sampler, data.validation_runs, out_dir, device, progress)
        card = make_card(recipe, scores=best.scores, baseline=baseline, provenance=data.provenance)
        network.load_state_dict(best.state)
        checkpoint = out_dir / "model.pt"
        save_checkpoint(network=network.cpu(), card=card, path=checkpoint)
    finally:
        torch.set_num_threads(previous_threads)
    return TrainingResult(
        checkpoint=checkpoint,
        log_csv=out_dir / "log.csv",
        best_iteration=best.iteration,
        scores=best.scores,
        input_scores=baseline,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _Best:
    iteration: int
    scores: dict[str, float]
    state: dict[str, torch.Tensor]


def _optimise(
    recipe: TrainingRecipe,
    network: torch.nn.Module,
    sampler: PatchSampler,
    validation_runs: list[PairRun],
    out_dir: Path,
    device: torch.device,
    progress: ProgressFactory,
) -> _Best:
    t = recipe.train
    optimiser = torch.optim.AdamW(network.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: lr_factor(i, warmup=t.warmup_iterations, total=t.iterations)
    )
    loss_fn = make_loss(t.loss)
    settings = InferenceSettings(device=str(device), amp=False)
    card = ModelCard(
        name=recipe.model.name,
        version=recipe.model.version,
        architecture=recipe.model.architecture,
        network_range=network_range(recipe),
        context_slices=recipe.model.context_slices,
    )
    best = _Best(-1, {}, {})
    deadline = time.monotonic() + t.time_limit_minutes * 60
    log_path = out_dir / "log.csv"
    with (
        log_path.open("w", newline="") as log_file,
        progress(description="train", total=t.iterations) as advance,
    ):
        log = csv.writer(log_file)
        log.writerow(
            [
                "iteration",
                "train_loss",
                "lr",
                "abdomen_psnr_db",
                "abdomen_ssim",
                "full_psnr_db",
                "full_ssim",
                "seconds",
            ]
        )
        running, started = 0.0, time.perf_counter()
        for iteration in range(t.iterations):
            network.train()
            batch = sampler.batch(t.batch_size)
            inputs = torch.from_numpy(batch.inputs).to(device)
            targets = torch.from_numpy(batch.targets).to(device)
            loss = loss_fn(network(inputs), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), t.grad_clip)
            optimiser.step()
            schedule.step()
            running += float(loss.detach())
            advance(1)
            last = iteration == t.iterations - 1 or time.monotonic() > deadline
            if (iteration + 1) % t.validate_every == 0 or last:
                network.eval()
                scores = validate(LoadedModel(network=network, card=card), validation_runs, settings)
                mean_loss = running / ((iteration % t.validate_every) + 1)
                log.writerow(
                    [
                        iteration + 1,
                        f"{mean_loss:.6f}",
                        f"{schedule.get_last_lr()[0]:.3e}",
                        scores["abdomen_psnr_db"],
                        scores["abdomen_ssim"],
                        scores["full_psnr_db"],
                        scores["full_ssim"],
                        f"{time.perf_counter() - started:.1f}",
                    ]
                )
                log_file.flush()
                running = 0.0
                logger.info("iteration %d: %s", iteration + 1, scores)
                if scores["abdomen_psnr_db"] > best.scores.get("abdomen_psnr_db", -math.inf):
                    best = _Best(
                        iteration + 1,
                        scores,
                        {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
                    )
            if last:
                break
    return best
