"""Distributed execution: plan, queue packs for Celery workers, follow until done.

``arena run`` with ``ARENA_BROKER_URL`` set runs this loop instead of the in-process one.
Each turn is the same as the in-process executor's (``packing.next_packs``: reap expired
leases, plan what is missing, pack the runnable jobs under the same retry cap), then
queues the packs, and reports progress from the database, the single source of truth.
"""

import time
from collections import Counter

from arena import job_states
from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.execution import checking
from arena.execution.broker import celery_app, enqueue, enqueue_dry_runs
from arena.execution.pack_run import Pack
from arena.execution.packing import next_packs
from arena.execution.summary import Progress, RunSummary, silent
from arena.models import Dataset, JobKind, JobStatus
from arena.results.progress import job_statuses

POLL_SECONDS = 1.0


@retry_while_unreachable
def _turn(settings: Settings, dataset_id: int) -> tuple[list[Pack], dict[JobKind, Counter]]:
    """One pass: reap, plan, pack; return the packs and the job status counts by kind."""
    with transaction(settings) as session:
        dataset = session.get_one(Dataset, dataset_id)
        packs = next_packs(session, settings, dataset)
        return packs, {kind: job_statuses(session, dataset, kind) for kind in JobKind}


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
        packs, counts = _turn(settings, dataset_id)
        enqueue(settings, app, packs)
        done_before = done_before or {kind: counts[kind][JobStatus.DONE] for kind in JobKind}
        done = sum(c[JobStatus.DONE] for c in counts.values())
        progress(done, sum(sum(c.values()) for c in counts.values()),
                 f"{len(packs)} pack(s) queued" if packs else "following the workers")
        open_jobs = sum(c[status] for c in counts.values() for status in job_states.UNSETTLED)
        if not wait or (open_jobs == 0 and not packs):
            return _summary(settings, counts, done_before)
        time.sleep(POLL_SECONDS)


def _summary(settings: Settings, counts: dict[JobKind, Counter], done_before: dict[JobKind, int]) -> RunSummary:
    summary = RunSummary(where="on the Celery workers")
    for kind in JobKind:
        summary.finished[kind] = counts[kind][JobStatus.DONE] - done_before[kind]
    failed = sum(c[JobStatus.ERROR] for c in counts.values())
    if failed:
        summary.platform_errors.append(f"{failed} job(s) failed {settings.max_attempts} times on the platform")
    return summary
