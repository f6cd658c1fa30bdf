"""The DICOM node: receive CT series, denoise each once complete, send the result back.

Everything the node knows lives on disk (``meddenoise.pacs.queue``), so after a crash a restart
picks up where it stopped: received but unprocessed series are denoised, and derived series not
yet delivered are re-sent from disk with their original UIDs.

Examples
--------
>>> node = Node(NodeSettings(storage=Path("/var/lib/meddenoise")))  # doctest: +SKIP
>>> node.run(stop=threading.Event())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from meddenoise.batch.ledger import LEDGER_NAME, Ledger, SeriesRecord
from meddenoise.config import build_config, read_toml
from meddenoise.errors import ConfigError, MeddenoiseError
from meddenoise.pacs.queue import due_series, incoming_folder, uid_tag
from meddenoise.pacs.scp import StoreHandler, start_scp
from meddenoise.pacs.sender import Destination, SendPolicy, parse_destination, send_folder
from meddenoise.pipeline import (
    InferenceSettings,
    OutputPolicy,
    RunRequest,
    SeriesResult,
    denoise_step,
    error_line,
    run_path,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSettings:
    """The node's configuration (flags or a TOML file with these keys)."""

    storage: Path
    ae_title: str = "MEDDENOISE"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aes: tuple[str, ...] = ()
    destination: str | None = None
    return_port: int = 104
    idle_timeout_s: float = 10.0
    incomplete_timeout_s: float = 3600.0
    max_associations: int = 4
    max_pdu: int = 16382
    send_attempts: int = 5
    send_backoff_s: float = 2.0
    send_interval_s: float = 0.0
    model: str | None = None
    device: str = "auto"
    threads: int | None = None
    strength: float = 1.0
    roi: int = 512
    overlap: float = 0.25
    batch_size: int | None = None
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < len(self.ae_title) <= 16:
            raise ConfigError(f"ae_title {self.ae_title!r} must have 1 to 16 characters")
        if self.destination is not None:
            parse_destination(self.destination)
        try:
            self.request()
        except ValueError as err:
            raise ConfigError(f"node settings: {err}") from err

    def request(self) -> RunRequest:
        """The run every received series goes through (the same knobs as ``denoise``)."""
        settings = InferenceSettings(
            roi=(self.roi, self.roi),
            overlap=self.overlap,
            batch_size=self.batch_size,
            device=self.device,
            threads=self.threads,
            strength=self.strength,
        )
        return RunRequest(model=self.model, settings=settings, output=OutputPolicy(overwrite=True))


def load_node_settings(path: Path | None, **overrides: Any) -> NodeSettings:
    """Read a node config (TOML), apply non-None ``overrides`` (flags win); unknown keys refused."""
    raw: dict[str, Any] = read_toml(path, what="the node config") if path else {}
    raw.update({key: value for key, value in overrides.items() if value is not None})
    if "storage" not in raw:
        raise ConfigError(f"{path or 'flags'}: no storage folder (key 'storage' or --storage)")
    raw["storage"] = str(raw["storage"])
    try:
        return build_config(NodeSettings, raw)
    except ConfigError as err:
        raise ConfigError(f"{path or 'flags'}: {err}") from err


class Node:
    """The SCP plus a worker that completes, denoises and sends series (one at a time)."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.storage = settings.storage
        self.denoiser = denoise_step(settings.request())  # the model is loaded once
        self.manifest = Ledger(self.storage / LEDGER_NAME)
        self.policy = SendPolicy(
            attempts=settings.send_attempts,
            backoff_s=settings.send_backoff_s,
            interval_s=settings.send_interval_s,
        )

    def run(self, *, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (SIGTERM in the CLI), then shut down cleanly."""
        settings = self.settings
        if not settings.allowed_aes:
            logger.warning("no allowed_aes configured: any calling AE title is accepted")
        server = start_scp(
            handler=StoreHandler(storage=self.storage, manifest=self.manifest),
            ae_title=settings.ae_title,
            address=(settings.host, settings.port),
            allowed_aes=settings.allowed_aes,
            max_associations=settings.max_associations,
            max_pdu=settings.max_pdu,
        )
        logger.warning("listening as %s on %s:%d", settings.ae_title, settings.host, settings.port)
        try:
            while not stop.wait(settings.poll_s):
                self.step(stop=stop)
        finally:
            server.shutdown()
            self.manifest.close()
            logger.warning("stopped")

    def step(self, *, stop: threading.Event) -> None:
        """One pass: complete idle series, denoise received ones, send denoised ones."""
        for record in due_series(
            self.manifest,
            idle_s=self.settings.idle_timeout_s,
            incomplete_s=self.settings.incomplete_timeout_s,
        ):
            self._commit(record, replace(record, state="received"))
        for record in self.manifest.records("received"):
            if stop.is_set():
                return
            self._denoise(record)
        for record in self.manifest.records("denoised"):
            if stop.is_set() or time.time() < record.retry_at:
                continue
            self._send(record, stop)

    def _commit(self, seen: SeriesRecord, new: SeriesRecord) -> bool:
        """Store ``new`` unless the series changed since ``seen`` (a new instance arrived)."""
        with self.manifest.lock:
            current = self.manifest.get(seen.series_uid)
            if current is None or (current.state, current.last_received) != (seen.state, seen.last_received):
                return False
            self.manifest.put(new)
            return True

    def _denoise(self, record: SeriesRecord) -> None:
        tag = uid_tag(record.series_uid)
        folder = incoming_folder(self.storage, study_uid=record.study_uid, series_uid=record.series_uid)
        results: tuple[SeriesResult, ...] = ()
        try:
            summary = run_path(
                input_path=folder,
                out_dir=self.storage / "derived",
                make_step=lambda: self.denoiser,
                policy=self.settings.request().output,
            )
            results = summary.results
        except MeddenoiseError as err:
            error = error_line(err)
        else:
            error = "; ".join(r.error for r in results if not r.ok) or ("" if results else "no CT series")
        if error:
            logger.error("series %s failed to denoise", tag)
            self._commit(record, replace(record, state="failed", error=error))
            return
        (result,) = results
        card = self.denoiser.card
        logger.warning(
            "series %s denoised (%d instances, %.1f s)", tag, result.instances, result.total_seconds
        )
        self._commit(
            record,
            replace(
                record,
                state="denoised",
                output_folder=str(result.output_folder),
                output_series_uid=result.output_series_uid,
                output_instances=result.instances,
                model=f"{card.name} v{card.version}",
                seconds=result.total_seconds,
                attempts=0,
                error="",
            ),
        )

    def destination_for(self, record: SeriesRecord) -> Destination:
        """The configured destination, or the sender's AE at its address on ``return_port``."""
        if self.settings.destination:
            return parse_destination(self.settings.destination)
        return Destination(record.origin_ae, record.origin_host, self.settings.return_port)

    def _send(self, record: SeriesRecord, stop: threading.Event) -> None:
        tag, destination = uid_tag(record.series_uid), self.destination_for(record)
        try:
            sent = send_folder(
                Path(record.output_folder),
                destination=destination,
                calling_ae=self.settings.ae_title,
                policy=self.policy,
                stop=stop,
            )
        except MeddenoiseError as err:
            attempts = record.attempts + 1
            retry_at = time.time() + min(self.policy.max_backoff_s * attempts, 3600.0)
            logger.error(
                "series %s not delivered to %s (round %d): %s", tag, destination, attempts, type(err).__name__
            )
            self._commit(
                record,
                replace(record, attempts=attempts, retry_at=retry_at, error=" ".join(str(err).split())),
            )
            return
        logger.warning("series %s sent to %s (%d instances)", tag, destination, sent)
        self._commit(record, replace(record, state="sent", error=""))
