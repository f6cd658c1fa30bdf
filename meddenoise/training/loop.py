"""The training loop: simulated pairs → patches → AdamW with warm-up and cosine decay.

Validation uses the same sliding-window inference as the product, on whole slices of the
``validation`` sets at a fixed simulated dose, and keeps the best checkpoint by abdomen PSNR.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meddenoise.errors import ConfigError, DeviceError
from meddenoise.inference import InferenceSettings, denoise_volume, resolve_device
from meddenoise.metrics import protocol_by_name, score_volume
from meddenoise.models import LoadedModel, ModelCard, build_network, load_model, save_checkpoint
from meddenoise.models.card import MetricRecord, TrainingData
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.training.config import TrainingRecipe, frozen
from meddenoise.training.data import prepare_data
from meddenoise.training.log import TrainingLog
from meddenoise.training.losses import Loss, make_loss
from meddenoise.training.pairs import PairRun
from meddenoise.training.patches import PatchSampler
from meddenoise.training.state import TrainingState, load_state, run_identity, save_state
from meddenoise.training.teacher import Teacher, load_teacher
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


def lr_factor(iteration: int, *, warmup: int, total: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to 0.01.

    The decay follows whichever runs out first, iterations or the time limit (``time_fraction`` is
    the share of ``train.time_limit_minutes`` used), so a network too slow to reach
    ``train.iterations`` within the budget still anneals instead of stopping at its peak rate.
    """
    if iteration < warmup:
        return (iteration + 1) / warmup
    progress = max((iteration - warmup) / max(total - warmup, 1), time_fraction)
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


def validation_description(recipe: TrainingRecipe) -> tuple[str, str]:
    """The model card's words for the validation data and its dose (simulated and/or real)."""
    d = recipe.data
    datasets, doses = [], []
    if d.validation_sets:
        datasets.append(f"validation sets {', '.join(d.validation_sets)}")
        doses.append(f"simulated {d.validation_dose:.0%} (projection-domain, I0=1.5e5, hann)")
    if d.aapm_validation_patients:
        datasets.append(f"AAPM/Mayo 2016 {d.aapm_thickness} patients {', '.join(d.aapm_validation_patients)}")
        doses.append("real quarter dose (25 %)")
    if d.tcia_validation_patients:
        datasets.append(f"TCIA LDCT-and-Projection-data patients {', '.join(d.tcia_validation_patients)}")
        doses.append("real low dose (10 % chest, 25 % abdomen/head)")
    dataset = f"{'; '.join(datasets)} ({d.validation_slices_per_series} slices each)"
    return dataset, "; ".join(doses)


def make_card(
    recipe: TrainingRecipe,
    *,
    scores: dict[str, float],
    baseline: dict[str, float],
    provenance: list[dict[str, str]],
    pixel_mm_range: tuple[float, float] | None = None,
) -> ModelCard:
    """The model card: architecture, input range, data and licences, config and metrics with protocols.

    ``pixel_mm_range`` (the training pairs' in-plane pixel sizes) lets inference warn about series
    whose pixels the model has never seen.
    """
    m, d = recipe.model, recipe.data
    dataset, dose = validation_description(recipe)
    metrics = []
    for key, value in scores.items():
        protocol_id, name = key.split("_", 1)
        protocol = protocol_by_name(protocol_id).describe()  # the card states the window and data_range
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
    return replace(
        _bare_card(recipe),
        training_data=tuple(TrainingData(**p) for p in provenance),
        training_config=json.loads(
            json.dumps({"data": asdict(d), "model": asdict(m), "train": asdict(recipe.train)})
        ),
        metrics=tuple(metrics),
        description=m.description,
        pixel_mm_range=pixel_mm_range,
    )


def pixel_range(runs: Sequence[PairRun]) -> tuple[float, float] | None:
    """The smallest and largest in-plane pixel size (mm) among ``runs``; None when there are none."""
    sizes = [size for run in runs for size in run.pixel_mm]
    return (min(sizes), max(sizes)) if sizes else None


def train(
    recipe: TrainingRecipe, *, resume: bool = False, progress: ProgressFactory = no_progress
) -> TrainingResult:
    """Run a recipe end to end; writes model.pt, its card, last.pt, the logs and config.toml.

    With ``resume``, continues from ``output.dir/last.pt`` (saved at every validation) and appends
    to the logs.

    Raises
    ------
    DeviceError
        ``train.device`` names a GPU this machine does not have.
    ConfigError
        Bad data sources, an ``init_checkpoint`` that does not match ``[model]``, or nothing to resume.
    """
    started = time.perf_counter()
    t = recipe.train
    torch.manual_seed(t.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(t.threads)
    try:
        device = _device(recipe)
        out_dir = Path(recipe.output.dir)
        state = load_state(out_dir, recipe=recipe) if resume else None
        teacher = load_teacher(recipe, device)  # before the data, so a bad teacher fails at once
        data = prepare_data(recipe, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        if recipe.source is not None:
            shutil.copyfile(recipe.source, out_dir / "config.toml")
        sampler = PatchSampler(
            data.train_runs,
            patch_size=t.patch_size,
            context=recipe.model.context_slices,
            network_range=network_range(recipe),
            body_threshold_hu=t.body_threshold_hu,
            seed=t.seed,
            noise_channel=bool(recipe.model.kwargs.get("noise_channel", False)),
            context_dropout=t.context_dropout,
        )
        network = initial_network(recipe).to(device)
        baseline = input_scores(data.validation_runs)
        logger.info("low-dose input scores: %s", baseline)
        best = _optimise(
            _Run(recipe, network, sampler, data.validation_runs, out_dir, device, teacher), state, progress
        )
        card = make_card(
            recipe,
            scores=best.scores,
            baseline=baseline,
            provenance=data.provenance,
            pixel_mm_range=pixel_range(data.train_runs),
        )
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


def _device(recipe: TrainingRecipe) -> torch.device:
    try:
        return resolve_device(recipe.train.device)
    except DeviceError as err:
        where = f"{recipe.source}: " if recipe.source else ""
        raise DeviceError(
            f"{where}train.device = {recipe.train.device!r} but this machine has "
            f'{torch.cuda.device_count()} CUDA GPU(s); set train.device = "cpu" or "auto"'
        ) from err


def _architecture_of(card: ModelCard) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {
                "architecture": card.architecture,
                "kwargs": dict(card.architecture_kwargs),
                "context_slices": card.context_slices,
                "network_range": asdict(card.network_range),
            },
            default=list,
        )
    )


def initial_network(recipe: TrainingRecipe) -> torch.nn.Module:
    """The network to train: fresh, or ``model.init_checkpoint``'s weights, with ``train.freeze`` applied.

    Raises
    ------
    ConfigError
        When the checkpoint's card describes another architecture, kwargs, context or input range.
    """
    m = recipe.model
    network = build_network(m.architecture, in_channels=m.context_slices, **m.kwargs)
    if m.init_checkpoint:
        loaded = load_model(m.init_checkpoint)
        wanted = _architecture_of(_bare_card(recipe))
        got = _architecture_of(loaded.card)
        adds_noise_map = _adds_noise_channel(got, wanted)
        if got != wanted and not adds_noise_map:
            differ = sorted(k for k in wanted if wanted[k] != got[k])
            raise ConfigError(
                f"model.init_checkpoint {m.init_checkpoint!r} is a {got['architecture']} with "
                f"{', '.join(f'{k}={got[k]}' for k in differ)}, but [model] asks for "
                f"{', '.join(f'{k}={wanted[k]}' for k in differ)}; make [model] match its card"
            )
        if adds_noise_map:
            network.load_state_dict(_with_noise_channel(loaded.network.state_dict(), network.state_dict()))
        else:
            network.load_state_dict(loaded.network.state_dict())
        logger.info("fine-tuning from %s (%s %s)", m.init_checkpoint, loaded.card.name, loaded.card.version)
    for name, parameter in network.named_parameters():
        if frozen(name, recipe.train.freeze):
            parameter.requires_grad_(False)
    return network


def _adds_noise_channel(got: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` is ``got`` plus a noise-level map input (``noise_channel = true``)."""
    plain = {**wanted, "kwargs": {k: v for k, v in wanted["kwargs"].items() if k != "noise_channel"}}
    return (
        bool(wanted["kwargs"].get("noise_channel"))
        and not got["kwargs"].get("noise_channel")
        and (plain == got)
    )


def _with_noise_channel(
    old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``old``'s weights in ``new``'s shapes: a weight that takes the noise map as extra input
    channels keeps the old ones and gets zeros for the new, so the network starts out computing
    exactly what the checkpoint did and learns to use the map."""
    merged = {}
    for key, target in new.items():
        source = old[key]
        if source.shape == target.shape:
            merged[key] = source.clone()
        elif source.ndim == target.ndim and source.shape[0] == target.shape[0] and source.ndim > 1:
            grown = torch.zeros_like(target)
            grown[:, : source.shape[1]] = source
            merged[key] = grown
        else:
            raise ConfigError(f"cannot grow weight {key} from {tuple(source.shape)} to {tuple(target.shape)}")
    return merged


def _bare_card(recipe: TrainingRecipe) -> ModelCard:
    m = recipe.model
    return ModelCard(
        name=m.name,
        version=m.version,
        architecture=m.architecture,
        architecture_kwargs=dict(m.kwargs),
        network_range=network_range(recipe),
        context_slices=m.context_slices,
        noise_level_cap_hu=m.noise_level_cap_hu or None,
    )


@dataclass
class _Best:
    iteration: int
    scores: dict[str, float]
    state: dict[str, torch.Tensor]


@dataclass
class _Run:
    """What the optimisation loop works on."""

    recipe: TrainingRecipe
    network: torch.nn.Module
    sampler: PatchSampler
    validation_runs: list[PairRun]
    out_dir: Path
    device: torch.device
    teacher: Teacher | None = None


@dataclass
class _Trainer:
    """The optimiser, schedule, loss and (on CUDA) gradient scaler of a run."""

    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Loss
    scaler: torch.amp.GradScaler | None
    parameters: list[torch.nn.Parameter]


def _trainer(run: _Run, time_fraction: Callable[[], float]) -> _Trainer:
    t = run.recipe.train
    parameters = [p for p in run.network.parameters() if p.requires_grad]
    optimiser: torch.optim.Optimizer
    if t.optimizer == "adam":
        optimiser = torch.optim.Adam(parameters, lr=t.learning_rate, weight_decay=t.weight_decay)
    else:
        optimiser = torch.optim.AdamW(parameters, lr=t.learning_rate, weight_decay=t.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda i: lr_factor(i, warmup=t.warmup_iterations, total=t.iterations, time_fraction=time_fraction()),
    )
    use_amp = t.amp and run.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    return _Trainer(optimiser, schedule, make_loss(t.loss, ssim_weight=t.ssim_weight), scaler, parameters)


def _step(run: _Run, trainer: _Trainer) -> float:
    """One optimisation step on a fresh batch; returns the loss."""
    t = run.recipe.train
    run.network.train()
    batch = run.sampler.batch(t.batch_size)
    inputs = torch.from_numpy(batch.inputs).to(run.device)
    targets = torch.from_numpy(batch.targets).to(run.device)
    amp = (
        torch.autocast(device_type="cuda", dtype=torch.float16)
        if trainer.scaler is not None
        else contextlib.nullcontext()
    )
    with amp:
        prediction = run.network(inputs).float()
    loss = trainer.loss_fn(prediction, targets)
    if run.teacher is not None:
        with amp:
            taught = run.teacher.predict(inputs)
        w = run.teacher.weight
        loss = (1 - w) * loss + w * trainer.loss_fn(prediction, taught)
    trainer.optimiser.zero_grad(set_to_none=True)
    if trainer.scaler is not None:
        trainer.scaler.scale(loss).backward()
        trainer.scaler.unscale_(trainer.optimiser)
        torch.nn.utils.clip_grad_norm_(trainer.parameters, t.grad_clip)
        trainer.scaler.step(trainer.optimiser)
        trainer.scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.parameters, t.grad_clip)
        trainer.optimiser.step()
    trainer.schedule.step()
    return float(loss.detach())


def _restore(run: _Run, trainer: _Trainer, state: TrainingState) -> _Best:
    run.network.load_state_dict(state.network)
    try:
        trainer.optimiser.load_state_dict(state.optimizer)
    except ValueError as err:
        raise ConfigError(f"--resume: the saved optimiser state does not fit this run: {err}") from err
    trainer.schedule.load_state_dict(state.scheduler)
    if trainer.scaler is not None and state.scaler:
        trainer.scaler.load_state_dict(state.scaler)
    run.sampler.rng.bit_generator.state = state.sampler_rng
    torch.set_rng_state(state.torch_rng)
    logger.info("resuming at iteration %d (best %d)", state.iteration, state.best_iteration)
    return _Best(state.best_iteration, dict(state.best_scores), dict(state.best_state))


def _snapshot(run: _Run, trainer: _Trainer, **fields: Any) -> TrainingState:
    return TrainingState(
        network={k: v.detach().cpu().clone() for k, v in run.network.state_dict().items()},
        optimizer=trainer.optimiser.state_dict(),
        scheduler=trainer.schedule.state_dict(),
        sampler_rng=dict(run.sampler.rng.bit_generator.state),
        torch_rng=torch.get_rng_state(),
        scaler=trainer.scaler.state_dict() if trainer.scaler is not None else {},
        identity=run_identity(run.recipe),
        **fields,
    )


def _optimise(run: _Run, state: TrainingState | None, progress: ProgressFactory) -> _Best:
    t = run.recipe.train
    previous_seconds = state.seconds if state is not None else 0.0
    clock_start = time.perf_counter()

    def time_fraction() -> float:
        return (previous_seconds + time.perf_counter() - clock_start) / (t.time_limit_minutes * 60)

    trainer = _trainer(run, time_fraction)
    best = _restore(run, trainer, state) if state is not None else _Best(-1, {}, {})
    start = state.iteration if state is not None else 0
    bad = state.bad_validations if state is not None else 0
    model = LoadedModel(network=run.network, card=_bare_card(run.recipe))
    settings = InferenceSettings(device=str(run.device), amp=False)
    # The time limit is the whole run's budget, so a resumed run only gets what is left of it.
    deadline = time.monotonic() + t.time_limit_minutes * 60 - previous_seconds
    stopped = t.early_stopping_patience > 0 and bad >= t.early_stopping_patience
    running, count, started = 0.0, 0, time.perf_counter()
    with (
        TrainingLog(run.out_dir, resume_from=start if state is not None else None) as log,
        progress(description="train", total=t.iterations - min(start, t.iterations)) as advance,
    ):
        for iteration in range(start, t.iterations if not stopped else start):
            running += _step(run, trainer)
            count += 1
            advance(1)
            last = iteration == t.iterations - 1 or time.monotonic() > deadline
            if (iteration + 1) % t.validate_every != 0 and not last:
                continue
            run.network.eval()
            scores = validate(model, run.validation_runs, settings)
            improved = scores["abdomen_psnr_db"] > best.scores.get("abdomen_psnr_db", -math.inf)
            if improved:
                weights = {k: v.detach().cpu().clone() for k, v in run.network.state_dict().items()}
                best = _Best(iteration + 1, scores, weights)
            bad = 0 if improved else bad + 1
            seconds = previous_seconds + time.perf_counter() - started
            log.write(
                {
                    "iteration": iteration + 1,
                    "train_loss": round(running / count, 6),
                    "lr": float(f"{trainer.schedule.get_last_lr()[0]:.3e}"),
                    **scores,
                    "seconds": round(seconds, 1),
                    "best_iteration": best.iteration,
                }
            )
            logger.info("iteration %d: %s", iteration + 1, scores)
            fields = {"iteration": iteration + 1, "bad_validations": bad, "seconds": seconds}
            best_fields = {"best_iteration": best.iteration, "best_scores": best.scores}
            save_state(_snapshot(run, trainer, **fields, **best_fields, best_state=best.state), run.out_dir)
            running, count = 0.0, 0
            if t.early_stopping_patience and bad >= t.early_stopping_patience:
                logger.info("early stop: %d validations without improvement", bad)
                break
            if last:
                break
    if best.iteration < 0:
        raise ConfigError(
            f"{run.out_dir}: nothing was trained (already at train.iterations = {t.iterations})"
        )
    return best
