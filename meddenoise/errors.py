"""The few exception types meddenoise raises for bad data.

Bad *arguments* raise builtins (ValueError, TypeError). Bad *data* (a broken DICOM file, a
checkpoint that fails its checksum, a config with an unknown key) raises a MeddenoiseError
subclass whose message is one line that names the file and the problem. The CLI prints that line
and exits non-zero. Optional dependencies are imported through :func:`require_extra`, so a missing
extra is one such line too, naming what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MeddenoiseError(Exception):
    """Base class: a problem with the user's data or environment, explained in one line."""


class SeriesError(MeddenoiseError):
    """A DICOM series or volume cannot be read, validated or written."""


class CheckpointError(MeddenoiseError):
    """A model checkpoint is missing, unknown, corrupt or fails its checksum."""


class ConfigError(MeddenoiseError):
    """A configuration file is malformed or has unknown or invalid keys."""


class OutputError(MeddenoiseError):
    """An output location is unsafe (inside the input, or would overwrite) or cannot be written."""


class DeviceError(MeddenoiseError):
    """A compute device was requested that this machine does not have."""


class MissingExtraError(MeddenoiseError):
    """A feature needs an optional dependency (an "extra") that is not installed."""


def require_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise MissingExtraError naming the extra to install.

    Examples
    --------
    >>> require_extra("json", extra="core", feature="reading JSON").__name__
    'json'
    >>> try:
    ...     require_extra("no_such_module_xyz", extra="pacs", feature="the DICOM node")
    ... except MissingExtraError as err:
    ...     print(str(err).split("; ")[1])
    install it with: pip install "meddenoise[pacs]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".", maxsplit=1)[0]
        raise MissingExtraError(
            f"{feature} needs the optional package {package}; install it with: "
            f'pip install "meddenoise[{extra}]"'
        ) from err
