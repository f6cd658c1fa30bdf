"""``meddenoise server``: the REST service (the ``server`` extra)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from meddenoise.cli.app import STATE, DeviceOption, app


@app.command(rich_help_panel="Unattended operation")
def server(
    host: Annotated[str, typer.Option(help="Address to listen on; not loopback needs --token-file.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    models_dir: Annotated[
        Path | None,
        typer.Option("--models-dir", help="Watched folder of .pt/.onnx checkpoints (default: shipped)."),
    ] = None,
    storage: Annotated[Path, typer.Option(help="Folder for the job ledger, uploads and results.")] = Path(
        "meddenoise-server"
    ),
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding the bearer token clients must send.")
    ] = None,
    max_upload_mb: Annotated[
        int, typer.Option("--max-upload-mb", min=1, help="Largest upload (MiB).")
    ] = 1024,
    workers_per_device: Annotated[
        int, typer.Option("--workers-per-device", min=1, help="Jobs run at once per device.")
    ] = 1,
    max_queued: Annotated[
        int, typer.Option("--max-queued", min=1, help="Unfinished jobs accepted before 429.")
    ] = 32,
    device: DeviceOption = "auto",
    input_root: Annotated[
        list[Path] | None, typer.Option("--input-root", help="Folder jobs may name by path (repeatable).")
    ] = None,
    dicomweb_root: Annotated[
        list[str] | None,
        typer.Option(
            "--dicomweb-root", help="DICOMweb URL prefix jobs may pull from / push to (repeatable)."
        ),
    ] = None,
    default_model: Annotated[
        str | None, typer.Option("--default-model", help="Model for jobs that name none.")
    ] = None,
) -> None:
    """Run the REST service: POST /jobs, GET /jobs/{id}, GET /models, GET /health (docs at /docs)."""
    from meddenoise.server import ServerSettings, read_token, serve

    settings = ServerSettings(
        storage=storage.resolve(),
        host=host,
        port=port,
        models_dir=models_dir,
        token=read_token(token_file) if token_file else None,
        max_upload_mb=max_upload_mb,
        workers_per_device=workers_per_device,
        max_queued=max_queued,
        device=device,
        input_roots=tuple(input_root or ()),
        dicomweb_roots=tuple(dicomweb_root or ()),
        default_model=default_model,
    )
    logging.getLogger("meddenoise").setLevel(logging.DEBUG if STATE["debug"] else logging.WARNING)
    serve(settings, log_level="debug" if STATE["debug"] else "warning")
