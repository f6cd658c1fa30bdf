"""Send a derived series from disk with C-STORE, retrying with exponential backoff.

The files are sent as written, so a retry after a crash re-sends the same SOP Instance UIDs and
the destination stores each instance once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from meddenoise.errors import ConfigError, MeddenoiseError, require_extra

logger = logging.getLogger(__name__)

_DESTINATION = re.compile(r"^(?P<ae>[^@\\]{1,16})@(?P<host>[A-Za-z0-9.:\-\[\]]+):(?P<port>\d{1,5})$")


class SendError(MeddenoiseError):
    """A series could not be delivered (association refused, store failed, network down)."""


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """Parse ``AE@host:port``; ConfigError naming the text when malformed.

    Examples
    --------
    >>> parse_destination("PACS@10.0.0.5:104")
    Destination(ae_title='PACS', host='10.0.0.5', port=104)
    """
    match = _DESTINATION.match(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"destination {text!r} is not AE@host:port (e.g. PACS@10.0.0.5:104)")
    return Destination(match["ae"].strip(), match["host"].strip("[]"), int(match["port"]))


@dataclass(frozen=True)
class SendPolicy:
    """How hard to try: attempts, first backoff (doubled each time, capped), pause between instances."""

    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    interval_s: float = 0.0
    timeout_s: float = 30.0


def send_folder(
    folder: Path,
    *,
    destination: Destination,
    calling_ae: str,
    policy: SendPolicy = SendPolicy(),
    stop: threading.Event | None = None,
) -> int:
    """C-STORE every ``*.dcm`` in ``folder`` to ``destination``; returns the instances sent.

    Raises
    ------
    SendError
        After ``policy.attempts`` failed attempts (or when ``stop`` is set while waiting).
    """
    files = sorted(folder.glob("*.dcm"))
    if not files:
        raise SendError(f"{folder}: no instances to send")
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            _send_once(files, destination=destination, calling_ae=calling_ae, policy=policy)
            return len(files)
        except (SendError, OSError) as err:
            logger.warning(
                "send to %s failed (attempt %d/%d): %s", destination, attempt, policy.attempts, err
            )
            if attempt == policy.attempts or (stop is not None and stop.wait(delay)):
                raise SendError(f"{folder.name}: not delivered to {destination}: {err}") from err
            if stop is None:
                time.sleep(delay)
            delay = min(delay * 2, policy.max_backoff_s)
    raise AssertionError("unreachable")


def _send_once(files: list[Path], *, destination: Destination, calling_ae: str, policy: SendPolicy) -> None:
    require_extra("pynetdicom", extra="pacs", feature="sending DICOM (C-STORE)")
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage  # type: ignore[attr-defined]

    first = dcmread(files[0], stop_before_pixels=True)
    syntaxes = list(
        dict.fromkeys([str(first.file_meta.TransferSyntaxUID), "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    )
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = policy.timeout_s
    for sop_class in (CTImageStorage, EnhancedCTImageStorage):
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendError(f"association with {destination} refused or failed")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = getattr(status, "Status", None)
            if code is None or (code != 0x0000 and not 0xB000 <= code <= 0xBFFF):
                raise SendError(f"C-STORE of {path.name} answered {code if code is None else hex(code)}")
            if policy.interval_s:
                time.sleep(policy.interval_s)
    finally:
        if assoc.is_established:
            assoc.release()
