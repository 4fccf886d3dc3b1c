"""The in-process executor: plan, pack, run on a thread pool, repeat until nothing is missing.

Container runs wait on the Docker engine, not on Python, so threads are enough to keep
``concurrency`` containers busy. Defense jobs over an attack's output can only be planned
once that attack job is done, so planning runs again whenever a slot of the pool is free
and the defense packs it finds join at once; the run ends when nothing is running and
planning finds nothing more.
"""

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from arena.config import Settings
from arena.data.dataset import find_dataset
from arena.db import retry_while_unreachable, transaction
from arena.execution import planning
from arena.execution.pack_run import Pack, PackResult, run_pack
from arena.execution.packing import plan_packs
from arena.sandbox import containers

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

    def describe(self) -> str:
        runs = f" in {self.container_runs} container runs" if self.container_runs else " on the workers"
        return f"ran {self.attack_jobs} attack jobs and {self.defense_jobs} defense jobs{runs}"


@retry_while_unreachable
def _new_packs(settings: Settings, dataset_name: str | None, skip: set[tuple[str, int]]) -> tuple[list[Pack], int]:
    """Plan, then pack the runnable jobs not in ``skip`` (already handed out, or failed on the
    platform); also return how many defense jobs unfinished attacks will still bring."""
    with transaction(settings) as session:
        dataset = find_dataset(session, dataset_name)
        packs = plan_packs(session, settings, dataset, frozenset(skip))
        return packs, planning.expected_defense_jobs(session, dataset)


def run_missing(settings: Settings, dataset_name: str | None = None, progress: Progress = silent) -> RunSummary:
    """Run every missing job of the dataset's tournament; return what ran.

    A job the platform failed (no engine, missing image) waits for the next call."""
    with transaction(settings) as session:
        find_dataset(session, dataset_name)  # a wrong name is said before anything runs
        planning.release_interrupted(session)
    containers.sweep()
    pool = ThreadPoolExecutor(max_workers=settings.concurrency)
    try:
        return _rounds(settings, dataset_name, progress, pool)
    finally:
        # On Ctrl-C: the runs under way finish and are stored; nothing queued starts.
        pool.shutdown(wait=True, cancel_futures=True)


def _rounds(settings: Settings, dataset_name: str | None, progress: Progress, pool: ThreadPoolExecutor) -> RunSummary:
    """Hand out packs; whenever a slot of the pool is free, plan again, so that defenses start
    on finished attacks' output while other attacks still run. Waiting for a free slot
    (rather than planning after every attack pack) lets defense jobs pile up into fuller packs."""
    summary, failed, handed_out = RunSummary(), set(), set()
    running: dict[Future, Pack] = {}

    def hand_out() -> int:
        packs, to_come = _new_packs(settings, dataset_name, failed | handed_out)
        for pack in packs:
            handed_out.update((pack.kind, j) for j in pack.job_ids)
            running[pool.submit(run_pack, settings, pack)] = pack
        return to_come

    to_come = hand_out()
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            pack = running.pop(future)
            for smaller in _record(summary, pack, future.result(), failed):
                running[pool.submit(run_pack, settings, smaller)] = smaller
            if len(running) < settings.concurrency:
                to_come = hand_out()
            total = summary.jobs + sum(len(p.job_ids) for p in running.values()) + to_come
            progress(summary.jobs, max(total, summary.jobs), f"{pack.kind} run of {len(pack.job_ids)} job(s)")
    return summary


def _record(summary: RunSummary, pack: Pack, result: PackResult, failed: set[tuple[str, int]]) -> list[Pack]:
    """Count what a run finished; return the smaller packs it left to run."""
    summary.container_runs += 1
    setattr(summary, f"{pack.kind}_jobs", getattr(summary, f"{pack.kind}_jobs") + result.finished)
    if result.platform_error:
        failed.update((pack.kind, j) for j in pack.job_ids)
        summary.platform_errors.append(result.platform_error)
    return result.again
