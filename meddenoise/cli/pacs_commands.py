"""Commands for unattended operation: batch, serve (a DICOM node), pull and push (DICOMweb)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from meddenoise.cli.app import STATE, DeviceOption, ModelOption, app, echo
from meddenoise.cli.request import NoiseLevelOption, build_request


@app.command(rich_help_panel="Unattended operation")
def batch(
    in_tree: Annotated[Path, typer.Argument(metavar="IN_TREE", help="Folder tree of studies.")],
    out_tree: Annotated[
        Path, typer.Argument(metavar="OUT_TREE", help="Folder for derived series + manifest.")
    ],
    model: ModelOption = None,
    rules: Annotated[Path | None, typer.Option(help="Selection rules (TOML); default: axial CT.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Manifest file (default OUT_TREE/meddenoise-manifest.sqlite).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry series that failed before.")
    ] = False,
    num_parts: Annotated[int, typer.Option(min=1, help="Split the series into N parts...")] = 1,
    part_id: Annotated[int, typer.Option(min=0, help="...and run part K (0-based).")] = 0,
    dask: Annotated[
        str | None, typer.Option(help="Dask scheduler address, or local:N for N local workers.")
    ] = None,
    strength: Annotated[float, typer.Option(min=0.0, max=1.0, help="Blend: 0 = input, 1 = network.")] = 1.0,
    noise_level: NoiseLevelOption = "auto",
    device: DeviceOption = "auto",
    tile: Annotated[int, typer.Option("--tile", "--roi", help="Sliding-window tile in pixels.")] = 512,
    overlap: Annotated[float, typer.Option(min=0.0, max=0.95, help="Sliding-window overlap.")] = 0.25,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Tiles per forward pass (default: 4 on CPU, fitted on GPU).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per worker.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Write <series>.report/ for each series.")] = False,
    also_save: Annotated[
        list[str] | None, typer.Option("--also-save", help="Also save as a volume: nifti or mha.")
    ] = None,
) -> None:
    """Denoise every selected series under IN_TREE, resumably; prints a summary table."""
    from meddenoise.batch import (
        LEDGER_NAME,
        BatchOptions,
        Ledger,
        SelectionRules,
        exclusion_reason,
        load_rules,
        run_batch,
    )

    request = build_request(
        model=model,
        strength=strength,
        noise_level=noise_level,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        threads=threads,
        report=report,
        also_save=also_save,
    )
    options = BatchOptions(retry_failed=retry_failed, num_parts=num_parts, part_id=part_id, dask=dask)
    chosen = load_rules(rules) if rules is not None else SelectionRules()
    with Ledger(manifest or out_tree / LEDGER_NAME) as ledger:
        summary = run_batch(
            in_tree=in_tree,
            out_tree=out_tree,
            ledger=ledger,
            select=lambda info: exclusion_reason(info, chosen),
            request=request,
            options=options,
            on_result=lambda r: echo(f"{'failed' if r.error else 'done'} {r.series_uid} ({r.seconds:.1f} s)"),
        )
    for uid, error in summary.failed:
        typer.echo(f"failed {uid}: {error}", err=True)
    for uid, reason in summary.skipped:
        echo(f"skipped {uid}: {reason}")
    for path, reason in summary.unreadable_files:
        echo(f"unreadable {path}: {reason}")
    typer.echo(
        f"succeeded {len(summary.succeeded)}  skipped {len(summary.skipped)}  failed {len(summary.failed)}"
    )
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command(rich_help_panel="Unattended operation")
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Node settings (TOML).")] = None,
    storage: Annotated[Path | None, typer.Option(help="Folder for the durable queue and results.")] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", help="This node's AE title.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (default 11112).")] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Allowed calling AE title (repeatable).")
    ] = None,
    destination: Annotated[
        str | None, typer.Option(help="AE@host:port for results (default: back to the sender).")
    ] = None,
    return_port: Annotated[int | None, typer.Option(help="Sender's port when sending back.")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds of quiet that complete a series.")
    ] = None,
    max_associations: Annotated[int | None, typer.Option(min=1)] = None,
    max_pdu: Annotated[int | None, typer.Option(min=0)] = None,
    send_interval: Annotated[float | None, typer.Option(help="Pause between sent instances (s).")] = None,
    model: ModelOption = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    strength: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Blend: 0 = input.")] = None,
    tile: Annotated[int | None, typer.Option("--tile", "--roi", help="Sliding-window tile (px).")] = None,
    overlap: Annotated[float | None, typer.Option(min=0.0, max=0.95, help="Window overlap.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
) -> None:
    """Run the DICOM node: receive CT series, denoise them, send the derived series on."""
    import signal
    import threading

    from meddenoise.pacs.node import Node, load_node_settings

    overrides = {
        "storage": storage, "ae_title": ae_title, "host": host, "port": port,
        "allowed_aes": allow or None, "destination": destination, "return_port": return_port,
        "idle_timeout_s": idle_timeout, "max_associations": max_associations, "max_pdu": max_pdu,
        "send_interval_s": send_interval, "model": model, "device": device,
        "strength": strength, "roi": tile, "overlap": overlap, "threads": threads,
    }  # fmt: skip
    settings = load_node_settings(config, **overrides)
    logging.getLogger("meddenoise").setLevel(logging.DEBUG if STATE["debug"] else logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Node(settings).run(stop=stop)


@app.command(rich_help_panel="Unattended operation")
def pull(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder for the retrieved series.")],
    dicomweb: Annotated[str, typer.Option("--dicomweb", help="DICOMweb root URL.")],
    study: Annotated[str | None, typer.Option("--study", help="StudyInstanceUID to retrieve.")] = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID to retrieve.")] = None,
) -> None:
    """Retrieve a study or series with DICOMweb (WADO-RS) into OUT/<study>/<series>/."""
    from meddenoise.pacs.dicomweb import pull as pull_series

    if (study is None) == (series is None):
        raise typer.BadParameter("give exactly one of --study and --series")
    for folder in pull_series(url=dicomweb, out_dir=out_dir, study_uid=study, series_uid=series):
        echo(f"pulled {folder}")


@app.command(rich_help_panel="Unattended operation")
def push(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="A (derived) series folder.")],
    dicomweb: Annotated[str, typer.Option("--dicomweb", help="DICOMweb root URL.")],
) -> None:
    """Store every .dcm file under FOLDER with DICOMweb (STOW-RS)."""
    from meddenoise.pacs.dicomweb import push as push_folder

    echo(f"pushed {push_folder(url=dicomweb, folder=folder)} instances from {folder}")
