"""The one device resolver: ``auto``/``cpu``/``cuda``/``cuda:N`` into a device this machine has."""

from __future__ import annotations

import re

import torch

from meddenoise.errors import DeviceError

__all__ = ["DEVICE_PATTERN", "resolve_device"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(requested: str | torch.device | None) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` (or a torch.device; None means cpu) into a device.

    Raises
    ------
    ValueError
        If ``requested`` is not one of those forms.
    DeviceError
        If a CUDA device is requested that this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if requested is None:
        return torch.device("cpu")
    text = str(requested)
    if not DEVICE_PATTERN.match(text):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {text!r}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {text} requested but no CUDA GPU is available; use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {text} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    return device
