"""The in-process executor: plan, pack, run on a thread pool, repeat until nothing is missing.

Container runs wait on the Docker engine, not on Python, so threads are enough to keep
``concurrency`` containers busy. Defense jobs over an attack's output can only be planned
once that attack job is done, hence the rounds: each round plans, packs and runs
everything runnable (and the smaller packs a failed pack is split into); the loop ends
when a round finds nothing to run.
"""

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from arena import sandbox, scheduler
from arena.config import Settings
from arena.dataset import find_dataset
from arena.db import transaction
from arena.jobs import Pack, PackResult, run_pack
from arena.models import AttackJob, DefenseJob
from arena.packing import make_packs

#: Called with (jobs finished so far, jobs known in all, a line about the last run).
Progress = Callable[[int, int, str], None]


def silent(_done: int, _total: int, _message: str) -> None:
    return None


@dataclass
class RunSummary:
    attack_jobs: int = 0
    defense_jobs: int = 0
    container_runs: int = 0
    platform_errors: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return self.attack_jobs + self.defense_jobs


def _round(settings: Settings, dataset_name: str | None, failed: set[tuple[str, int]]) -> tuple[list[Pack], int]:
    """This round's packs, and how many defense jobs unfinished attacks will still bring."""
    with transaction(settings) as session:
        dataset = find_dataset(session, dataset_name)
        scheduler.plan(session, dataset, settings.epsilons)
        packs = []
        for kind, job_class in (("attack", AttackJob), ("defense", DefenseJob)):
            runnable = [j for j in scheduler.runnable(session, dataset, job_class) if (kind, j) not in failed]
            packs += make_packs(session, settings, kind, runnable) if runnable else []
        return packs, scheduler.expected_defense_jobs(session, dataset)


def run_missing(settings: Settings, dataset_name: str | None = None, progress: Progress = silent) -> RunSummary:
    """Run every missing job of the dataset's tournament; return what ran.

    A job the platform failed (no engine, missing image) waits for the next call."""
    with transaction(settings) as session:
        scheduler.release_interrupted(session)
    sandbox.sweep()
    pool = ThreadPoolExecutor(max_workers=settings.concurrency)
    try:
        return _rounds(settings, dataset_name, progress, pool)
    finally:
        # On Ctrl-C: the runs under way finish and are stored; nothing queued starts.
        pool.shutdown(wait=True, cancel_futures=True)


def _rounds(settings: Settings, dataset_name: str | None, progress: Progress, pool: ThreadPoolExecutor) -> RunSummary:
    summary, failed = RunSummary(), set()
    while True:
        packs, to_come = _round(settings, dataset_name, failed)
        if not packs:
            return summary
        total = summary.jobs + sum(len(p.job_ids) for p in packs) + to_come
        running: dict[Future, Pack] = {pool.submit(run_pack, settings, p): p for p in packs}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                pack = running.pop(future)
                for smaller in _record(summary, pack, future.result(), failed):
                    running[pool.submit(run_pack, settings, smaller)] = smaller
                progress(summary.jobs, max(total, summary.jobs), f"{pack.kind} run of {len(pack.job_ids)} job(s)")


def _record(summary: RunSummary, pack: Pack, result: PackResult, failed: set[tuple[str, int]]) -> list[Pack]:
    """Count what a run finished; return the smaller packs it left to run."""
    summary.container_runs += 1
    setattr(summary, f"{pack.kind}_jobs", getattr(summary, f"{pack.kind}_jobs") + result.finished)
    if result.platform_error:
        failed.update((pack.kind, j) for j in pack.job_ids)
        summary.platform_errors.append(result.platform_error)
    return result.again
