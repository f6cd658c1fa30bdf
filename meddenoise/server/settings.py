"""The server's configuration, checked once before anything listens.

Binding anywhere but loopback needs a bearer token (``--token-file``); without one the server
refuses to start. Server-side paths and DICOMweb servers a job may name are limited to configured
roots (``input_roots``, ``dicomweb_roots``); none are allowed by default.
"""

from __future__ import annotations

import ipaddress
import logging
import stat
from dataclasses import dataclass, field
from pathlib import Path

from meddenoise.errors import ConfigError

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped); ConfigError when empty.

    Warns when the file is readable by group or others.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the token file ({err.strerror or err})") from err
    if len(text) < 16:
        raise ConfigError(f"{path}: the token must have at least 16 characters")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("token file %s is readable by others; chmod 600 it", path)
    return text


@dataclass(frozen=True)
class ServerSettings:
    """What ``meddenoise server`` was asked to do (flags), validated.

    Parameters
    ----------
    storage
        Folder for the job ledger, uploads and results (created).
    host, port
        Where to listen; anything but loopback needs ``token``.
    models_dir
        Folder of checkpoints (``.pt``/``.onnx``) served by file stem and watched; None: the
        shipped models.
    token
        The bearer token every request but ``GET /health`` must carry; None: no token (loopback only).
    max_upload_mb
        Largest request body, in MiB (and the largest unpacked zip).
    workers_per_device
        Jobs run at once per device.
    max_queued
        Unfinished jobs (queued or running) accepted at once; more get 429 with Retry-After.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    input_roots
        Folders whose contents a job may name by server-side path.
    dicomweb_roots
        DICOMweb URL prefixes a job may pull from or push to.
    default_model
        The model a job gets when it names none (None: the first one loaded).
    poll_s
        How often the models folder is checked for new or changed checkpoints.
    """

    storage: Path
    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path | None = None
    token: str | None = field(default=None, repr=False)
    max_upload_mb: int = 1024
    workers_per_device: int = 1
    max_queued: int = 32
    device: str = "auto"
    input_roots: tuple[Path, ...] = ()
    dicomweb_roots: tuple[str, ...] = ()
    default_model: str | None = None
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {self.host} without a bearer token: give --token-file "
                "(or bind to 127.0.0.1)"
            )
        for name in ("max_upload_mb", "workers_per_device", "max_queued"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must lie in 1..65535, got {self.port}")
        if self.models_dir is not None and not self.models_dir.is_dir():
            raise ConfigError(f"--models-dir {self.models_dir} is not a folder")
        object.__setattr__(self, "input_roots", tuple(Path(p).resolve() for p in self.input_roots))

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return self.max_upload_mb * MIB
