"""Batch jobs on Dask: each series a task, on a LocalCluster (``local:N``) or a scheduler's workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meddenoise.batch.runner import BatchJob, JobResult, run_job
from meddenoise.errors import require_extra
from meddenoise.pipeline import error_line


def run_on_dask(jobs: Sequence[BatchJob], *, address: str, on_result: Callable[[JobResult], None]) -> None:
    """Farm ``jobs`` out to Dask workers (``local:N`` starts a LocalCluster) and report each result."""
    distributed = require_extra("dask.distributed", extra="dask", feature="batch --dask")
    Client, LocalCluster, as_completed = (
        distributed.Client,
        distributed.LocalCluster,
        distributed.as_completed,
    )

    cluster = None
    if address.startswith("local:"):
        workers = int(address.removeprefix("local:") or "1")
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        )
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = {client.submit(run_job, job, pure=False): job for job in jobs}
        for future in as_completed(futures):
            try:
                on_result(future.result())
            except Exception as err:  # a worker died (KilledWorker) or the scheduler failed
                uid = futures[future].info.series_uid
                on_result(JobResult(uid, 0.0, error=error_line(err)))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
