"""Unattended batch work: selection rules, the ledger (SQLite, shared by batch, node and server), Dask.

* :mod:`meddenoise.batch.rules`: which series a site denoises (a TOML file);
* :mod:`meddenoise.batch.ledger`: one record per series, durable before ``put`` returns;
* :mod:`meddenoise.batch.runner`: select, shard, resume and denoise a tree through the series runner;
* :mod:`meddenoise.batch.dask`: the same jobs on Dask workers (the ``dask`` extra).
"""

from meddenoise.batch.ledger import LEDGER_NAME, Ledger, RecordState, SeriesRecord
from meddenoise.batch.rules import SelectionRules, exclusion_reason, load_rules
from meddenoise.batch.runner import (
    BatchJob,
    BatchOptions,
    BatchSummary,
    JobResult,
    input_checksum,
    plan_batch,
    run_batch,
    run_job,
    shard_of,
)

__all__ = [
    "LEDGER_NAME",
    "BatchJob",
    "BatchOptions",
    "BatchSummary",
    "JobResult",
    "Ledger",
    "RecordState",
    "SelectionRules",
    "SeriesRecord",
    "exclusion_reason",
    "input_checksum",
    "load_rules",
    "plan_batch",
    "run_batch",
    "run_job",
    "shard_of",
]
