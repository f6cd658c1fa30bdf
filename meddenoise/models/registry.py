"""The architecture registry: names → network constructors."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from meddenoise.models.dncnn import DnCNN
from meddenoise.models.redcnn import RedCNN
from meddenoise.models.unet_pu import UNetPU

__all__ = ["ARCHITECTURES", "build_network"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "dncnn": DnCNN,
    "redcnn": RedCNN,
    "unet_pu": UNetPU,
}


def build_network(architecture: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``architecture`` with keyword arguments ``kwargs``.

    Raises
    ------
    ValueError
        If ``architecture`` is not registered (the message names the valid ones).

    Examples
    --------
    >>> type(build_network("unet_pu", in_channels=3)).__name__
    'UNetPU'
    """
    try:
        constructor = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(unknown_architecture_message(architecture)) from None
    return constructor(**kwargs)


def unknown_architecture_message(architecture: str) -> str:
    """One line naming an unknown architecture, a close match and the valid names."""
    close = difflib.get_close_matches(architecture, ARCHITECTURES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown architecture {architecture!r}; valid architectures: {', '.join(ARCHITECTURES)}{hint}"
