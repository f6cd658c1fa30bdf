"""Put a benchmark's measured figures into a checkpoint's model card (weights unchanged).

The training loop writes the validation scores into the card. The physicist's figures come from
benchmarks that run after training: low-contrast detectability (``benchmarks/detectability.py``)
and noise texture (``benchmarks/quality.py``). This script adds them to the card as metric records,
each with its protocol, data and dose. The checkpoint is re-saved because it carries its card. Its
weights and their sha256 stay the same; the file's sha256 changes. ``<checkpoint>.card.json`` and
the Markdown card ``<name>.md`` beside it are rewritten. Running it again replaces the records it
wrote before.

    python benchmarks/card_metrics.py meddenoise/models/weights/unet-pu-v6.pt \\
        --detectability benchmarks/results/detectability_v6.json \\
        --reference-detectability benchmarks/results/detectability.json \\
        --texture benchmarks/results/quality_v6.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from meddenoise.models import MetricRecord, card_markdown, load_model, save_checkpoint

FIXTURE = "fixtures/lcd-ct-phantom-3doses (FDA LCD phantom, 4 inserts; CC0)"
OURS = ("cho_dprime_ratio", "nps_mean_frequency_shift_percent")  # name prefixes of the records written here


def detectability_records(path: Path, model: str, *, label: str = "") -> list[MetricRecord]:
    """Pooled and lowest-insert d' ratios (output / input) of ``model`` at each dose in ``path``."""
    data = json.loads(path.read_text())
    context = data["context"]
    observer = context["observer"].split(";")[0]
    protocol = (
        f"{observer}; d'(output)/d'(input) pooled over the inserts ({context['pooled']}), "
        f"+/- jackknife SD; each realisation denoised alone; bar: >= 0.9 ({path.as_posix()})"
    )
    suffix = f" ({label}, for comparison)" if label else ""
    records = []
    for dose, level in data["levels"].items():
        if model not in level["ratio"]:
            raise SystemExit(f"error: {path}: no detectability of {model!r} at {dose}")
        ratios = level["ratio"][model]
        pooled, pooled_sd = ratios[-1]
        # Inserts the input itself does not show (verdict n/a) have no meaningful ratio.
        shown = [
            pair
            for pair, row in zip(ratios[:-1], level["rows"], strict=False)
            if row["models"][model]["verdict"] != "n/a"
        ]
        lowest, lowest_sd = min(shown, key=lambda pair: pair[0]) if shown else (float("nan"), float("nan"))
        realisations = f"{FIXTURE}, {context['realisations']}"
        records.append(
            MetricRecord(
                f"cho_dprime_ratio{suffix}",
                round(pooled, 4),
                f"{protocol}; SD {pooled_sd:.3f}",
                realisations,
                f"{dose} (simulated)",
            )
        )
        records.append(
            MetricRecord(
                f"cho_dprime_ratio_lowest_insert{suffix}",
                round(lowest, 4),
                f"the insert with the lowest d' ratio, among those the input shows; SD {lowest_sd:.3f}",
                realisations,
                f"{dose} (simulated)",
            )
        )
    return records


def texture_records(path: Path, model: str) -> list[MetricRecord]:
    """The NPS mean-frequency shift of ``model``'s noise against the input's, from a quality run."""
    data = json.loads(path.read_text())
    if model not in data["results"]:
        raise SystemExit(f"error: {path}: no row for {model!r} (rows: {', '.join(data['results'])})")
    mean = data["results"][model]["mean"]
    if "nps_mean_shift_percent" not in mean:
        raise SystemExit(f"error: {path}: the row for {model!r} has no NPS figures")
    context = data["context"]
    series = ", ".join(context["series"])
    return [
        MetricRecord(
            "nps_mean_frequency_shift_percent",
            round(mean["nps_mean_shift_percent"], 2),
            f"{context['nps_protocol']}; {context['nps_roi_mm']:.0f} mm soft-tissue ROIs; mean over "
            f"series; texture is the user's to set with --strength ({path.as_posix()})",
            f"validation sets {series} ({context['n_slices']} slices)",
            f"simulated {context['dose']:.0%} (projection-domain, I0=1.5e5, hann)",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a .pt checkpoint (its card is rewritten)")
    parser.add_argument(
        "--detectability", type=Path, help="benchmarks/detectability.py's JSON for this model"
    )
    parser.add_argument("--reference-detectability", type=Path, help="the same for a model to show beside it")
    parser.add_argument("--reference", default="unet-pu-v1", help="the reference model's row name")
    parser.add_argument("--texture", type=Path, help="benchmarks/quality.py's JSON with a row for this model")
    parser.add_argument("--row", help="this model's row name in the JSONs (default: the card's name)")
    args = parser.parse_args()
    if not args.checkpoint.is_file() or args.checkpoint.suffix != ".pt":
        sys.exit(f"error: {args.checkpoint}: not a .pt checkpoint")
    loaded = load_model(args.checkpoint)
    row = args.row or loaded.card.name
    added: list[MetricRecord] = []
    if args.detectability:
        added += detectability_records(args.detectability, row)
    if args.reference_detectability:
        added += detectability_records(args.reference_detectability, args.reference, label=args.reference)
    if args.texture:
        added += texture_records(args.texture, row)
    if not added:
        sys.exit("error: nothing to add; give --detectability, --reference-detectability or --texture")
    kept = [m for m in loaded.card.metrics if not m.name.startswith(OURS)]
    card = replace(loaded.card, metrics=(*kept, *added))
    card = save_checkpoint(network=loaded.network, card=card, path=args.checkpoint)
    markdown = args.checkpoint.with_name(f"{card.name}.md")
    markdown.write_text(card_markdown(card), encoding="utf-8")
    print(f"{args.checkpoint}: {len(added)} records added; {markdown} rewritten")


if __name__ == "__main__":
    main()
