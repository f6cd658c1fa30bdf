"""One router per resource: ``health``, ``models``, ``jobs``; each thin over the :class:`Server`."""

from __future__ import annotations

from typing import Any


def server_of(request: Any) -> Any:
    """The :class:`~meddenoise.server.app.Server` of the app that got ``request``."""
    return request.app.state.server
