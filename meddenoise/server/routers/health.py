"""``GET /health``: the server is up, with its models and queue (no token needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from meddenoise.server.routers import server_of

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Whether the server runs, how many models it serves and how many jobs wait or run."""
    server = server_of(request)
    return {
        "status": "ok",
        "models": len(server.pool.names()),
        "queued": len(server.ledger.jobs("queued")),
        "running": len(server.ledger.jobs("running")),
    }
