"""The few exception types meddenoise raises for bad data.

Bad *arguments* raise builtins (ValueError, TypeError). Bad *data* (a broken DICOM file, a
checkpoint that fails its checksum, a config with an unknown key) raises a MeddenoiseError
subclass whose message is one line that names the file and the problem. The CLI prints that line
and exits non-zero.
"""

from __future__ import annotations


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
