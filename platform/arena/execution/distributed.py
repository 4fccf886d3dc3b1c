"""Distributed execution: plan, queue packs for Celery workers, follow until done.

``arena run`` with ``ARENA_BROKER_URL`` set runs this loop instead of the in-process one.
Each turn is the same as the in-process executor's (``packing.next_packs``: reap expired
leases, plan what is missing, pack the runnable jobs under the same retry cap), then
queues the packs and the query track's jobs (``query_jobs``), and reports progress from
the database, the single source of truth.
"""

import time
from collections import Counter

from arena import job_states
from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.execution import checking, query_jobs
from arena.execution.broker import celery_app, enqueue, enqueue_dry_runs, enqueue_query_jobs
from arena.execution.pack_run import Pack
from arena.execution.packing import next_packs
from arena.execution.summary import Progress, RunSummary, silent
from arena.models import Dataset, JobKind, JobStatus
from arena.results.progress import job_statuses, query_job_statuses

POLL_SECONDS = 1.0


#: The status counts' key for the query track's jobs, beside the job kinds'.
QUERY = "query"


@retry_while_unreachable
def _turn(settings: Settings, dataset_id: int) -> tuple[list[Pack], list[int], dict[JobKind | str, Counter]]:
    """One pass: reap, plan, pack; return the packs, the query jobs to queue and the job
    status counts by kind (``QUERY`` for query jobs)."""
    with transaction(settings) as session:
        dataset = session.get_one(Dataset, dataset_id)
        packs = next_packs(session, settings, dataset)
        queries = query_jobs.runnable(session, settings, dataset)
        counts = {kind: job_statuses(session, dataset, kind) for kind in JobKind}
        return packs, queries, {**counts, QUERY: query_job_statuses(session, dataset)}


def dispatch(
    settings: Settings, dataset_id: int, progress: Progress = silent, wait: bool = True, timeout: float | None = None
) -> RunSummary:
    """Queue the missing work; with ``wait``, follow until every job is done (or failed for good),
    or raise TimeoutError after ``timeout`` seconds."""
    app = celery_app(settings)
    done_before: dict[JobKind, int] | None = None
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not finish within {timeout} s")
        enqueue_dry_runs(settings, app, checking.waiting(settings))  # uploads are checked first
        packs, queries, counts = _turn(settings, dataset_id)
        enqueue(settings, app, packs)
        enqueue_query_jobs(settings, app, queries)
        done_before = done_before or {kind: c[JobStatus.DONE] for kind, c in counts.items()}
        done = sum(c[JobStatus.DONE] for c in counts.values())
        progress(done, sum(sum(c.values()) for c in counts.values()),
                 f"{len(packs) + len(queries)} pack(s) queued" if packs or queries else "following the workers")
        open_jobs = sum(c[status] for c in counts.values() for status in job_states.UNSETTLED)
        if not wait or (open_jobs == 0 and not packs and not queries):
            return _summary(settings, counts, done_before)
        time.sleep(POLL_SECONDS)


def _summary(settings: Settings, counts: dict[JobKind | str, Counter], done_before: dict[JobKind | str, int]
             ) -> RunSummary:
    summary = RunSummary(where="on the Celery workers")
    for kind in JobKind:
        summary.finished[kind] = counts[kind][JobStatus.DONE] - done_before[kind]
    summary.query_jobs = counts[QUERY][JobStatus.DONE] - done_before[QUERY]
    failed = sum(c[JobStatus.ERROR] for c in counts.values())
    if failed:
        summary.platform_errors.append(f"{failed} job(s) failed {settings.max_attempts} times on the platform")
    return summary
