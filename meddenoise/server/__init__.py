"""The REST server (FastAPI, the ``server`` extra): jobs on the ledger, the model pool with hot reload.

A thin face like the CLI and the DICOM node: every job goes through the pipeline's one series
runner, its state lives in the ledger's SQLite file (:class:`JobLedger`), and its model comes from
the :class:`ModelPool`. Run it with ``meddenoise server`` or :func:`serve`.

Examples
--------
>>> from pathlib import Path
>>> from meddenoise.server import ServerSettings
>>> try:
...     ServerSettings(storage=Path("/tmp/x"), host="0.0.0.0")
... except Exception as err:
...     print(str(err).split(":")[0])
refusing to listen on 0.0.0.0 without a bearer token
"""

from meddenoise.server.app import create_app, serve
from meddenoise.server.jobs import JobLedger, JobRecord, JobState
from meddenoise.server.pool import ModelPool, PoolEntry
from meddenoise.server.settings import ServerSettings, is_loopback, read_token

__all__ = [
    "JobLedger",
    "JobRecord",
    "JobState",
    "ModelPool",
    "PoolEntry",
    "ServerSettings",
    "create_app",
    "is_loopback",
    "read_token",
    "serve",
]
