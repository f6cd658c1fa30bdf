"""``GET /models``: the models loaded now, by serving name, with their card's name and version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from meddenoise.server.routers import server_of

router = APIRouter(tags=["models"])


@router.get("/models")
def list_models(request: Request) -> list[dict[str, Any]]:
    """Every model served, with its version, architecture, runtime, sha256 and load time."""
    return [entry.describe() for entry in server_of(request).pool.entries()]
