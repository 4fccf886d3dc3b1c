"""Distributed execution: plan, queue packs for Celery workers, follow until done.

``arena run`` with ``ARENA_BROKER_URL`` set runs this loop instead of the in-process
executor. Each turn reaps expired leases (dead workers, lost messages), plans what is
missing (defense jobs appear as attack jobs finish), queues new packs, and reports
progress from the database, which is the single source of truth.
"""

import time
from collections import Counter

from arena.config import Settings
from arena.data.dataset import find_dataset
from arena.db import transaction
from arena.execution import planning
from arena.execution.broker import enqueue
from arena.execution.local import Progress, RunSummary, silent
from arena.execution.packing import plan_packs
from arena.models import AttackJob, DefenseJob, JobStatus
from arena.results.progress import job_statuses

POLL_SECONDS = 1.0


def _turn(settings: Settings, dataset_name: str | None) -> tuple[Counter, Counter, int]:
    """One pass: reap, plan, queue; return attack and defense status counts and packs queued."""
    with transaction(settings) as session:
        dataset = find_dataset(session, dataset_name)
        planning.reap(session)
        packs = plan_packs(session, settings, dataset, max_attempts=settings.max_attempts)
        counts = job_statuses(session, dataset, AttackJob), job_statuses(session, dataset, DefenseJob)
    if packs:
        enqueue(settings, packs)
    return *counts, len(packs)


def dispatch(
    settings: Settings,
    dataset_name: str | None = None,
    progress: Progress = silent,
    wait: bool = True,
    timeout: float | None = None,
) -> RunSummary:
    """Queue the missing work; with ``wait``, follow until every job is done (or failed for good),
    or raise TimeoutError after ``timeout`` seconds."""
    before = None
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not finish within {timeout} s")
        attacks, defenses, queued = _turn(settings, dataset_name)
        if before is None:
            before = attacks[JobStatus.DONE], defenses[JobStatus.DONE]
        done = attacks[JobStatus.DONE] + defenses[JobStatus.DONE]
        total = sum(attacks.values()) + sum(defenses.values())
        progress(done, total, f"{queued} pack(s) queued" if queued else "following the workers")
        open_jobs = sum(c[s] for c in (attacks, defenses) for s in (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING))
        if not wait or (open_jobs == 0 and not queued):
            failed = attacks[JobStatus.ERROR] + defenses[JobStatus.ERROR]
            return RunSummary(
                attack_jobs=attacks[JobStatus.DONE] - before[0],
                defense_jobs=defenses[JobStatus.DONE] - before[1],
                platform_errors=[f"{failed} job(s) failed {settings.max_attempts} times on the platform"] if failed else [],
            )
        time.sleep(POLL_SECONDS)
