"""The FastAPI application: one :class:`Server` (ledger, model pool, job runner) behind thin routers.

``create_app(settings)`` builds it; ``serve(settings)`` runs it under uvicorn. Two small ASGI
middlewares guard every request before a route sees it: the bearer token (all but
``GET /health``) and the body size limit (``Content-Length`` and the bytes actually received).

Examples
--------
>>> from meddenoise.server import ServerSettings, serve  # doctest: +SKIP
>>> serve(ServerSettings(storage=Path("/var/lib/meddenoise-server")))  # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from meddenoise.batch.ledger import LEDGER_NAME
from meddenoise.errors import require_extra
from meddenoise.server.intake import Refused, discard
from meddenoise.server.jobs import JobLedger
from meddenoise.server.pool import ModelPool
from meddenoise.server.settings import ServerSettings
from meddenoise.server.worker import JOBS_FOLDER, JobRunner

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
OPEN_PATHS = frozenset({"/health"})

Scope = dict[str, Any]


@dataclass
class Server:
    """What the routers share: settings, the job ledger, the model pool and the runner."""

    settings: ServerSettings
    ledger: JobLedger
    pool: ModelPool
    runner: JobRunner
    stop: threading.Event


def open_server(settings: ServerSettings) -> Server:
    """Open the ledger, load the models, drop never-acknowledged uploads and start the workers."""
    storage = settings.storage
    (storage / JOBS_FOLDER).mkdir(parents=True, exist_ok=True)
    ledger = JobLedger(storage / LEDGER_NAME)
    known = {record.job_id for record in ledger.jobs()}
    for folder in (storage / JOBS_FOLDER).iterdir():
        if folder.name not in known:  # staged, or published but never acknowledged
            discard(folder)
    pool = ModelPool(models_dir=settings.models_dir, device=_device(settings.device))
    runner = JobRunner(storage=storage, ledger=ledger, pool=pool, workers=settings.workers_per_device)
    stop = threading.Event()
    runner.start()
    if settings.models_dir is not None:
        pool.watch(stop=stop, poll_s=settings.poll_s)
    logger.warning(
        "serving models %s; %d job(s) waiting", ", ".join(pool.names()) or "none", ledger.unfinished()
    )
    return Server(settings=settings, ledger=ledger, pool=pool, runner=runner, stop=stop)


def close_server(server: Server) -> None:
    """Stop watching and working (running jobs go back to the queue), close the ledger."""
    server.stop.set()
    server.runner.stop()
    server.ledger.close()


def _device(requested: str) -> str:
    from meddenoise.pipeline import resolve_device

    return str(resolve_device(requested))


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    pairs += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": raw})


class BearerToken:
    """ASGI middleware: every path but ``/health`` needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, *, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                detail = "a bearer token is required" if not given else "wrong bearer token"
                await _send_json(send, 401, {"detail": detail}, {"www-authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (declared or actually sent)."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, {"detail": self._detail()}, {"connection": "close"})
            return
        seen, started = 0, False

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, {"detail": self._detail()}, {"connection": "close"})

    def _detail(self) -> str:
        return f"the request is larger than the limit ({self.max_bytes // (1024 * 1024)} MiB)"


def create_app(settings: ServerSettings) -> Any:
    """The FastAPI app for ``settings`` (its lifespan opens and closes the :class:`Server`)."""
    require_extra("fastapi", extra="server", feature="the REST server")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from meddenoise import __version__
    from meddenoise.server.routers import health, jobs, models

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        app.state.server = await run_in_threadpool(open_server, settings)
        try:
            yield
        finally:
            await run_in_threadpool(close_server, app.state.server)

    app = FastAPI(title="meddenoise", version=__version__, lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(jobs.router)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 429 else None
        return JSONResponse({"detail": str(error)}, status_code=error.status, headers=headers)

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    if settings.token:
        app.add_middleware(BearerToken, token=settings.token)
    return app


def serve(settings: ServerSettings, *, log_level: str = "warning") -> None:
    """Run the server under uvicorn until SIGINT/SIGTERM (running jobs resume at the next start)."""
    require_extra("uvicorn", extra="server", feature="the REST server")
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )
