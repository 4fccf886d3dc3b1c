"""The in-process executor: plan, run what is missing on a thread pool, repeat until done.

Container runs wait on the Docker engine, not on Python, so threads are enough to keep
``concurrency`` containers busy. Defense jobs over an attack's output can only be planned
once that attack job is done, hence the rounds: each round plans, then runs everything
runnable; the loop ends when a round finds nothing to run.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from arena import jobs, scheduler
from arena.config import Settings
from arena.dataset import find_dataset
from arena.db import transaction
from arena.models import AttackJob, DefenseJob

#: Called with (jobs finished so far, jobs known in all, a line about the last job).
Progress = Callable[[int, int, str], None]


def _silent(_done: int, _total: int, _message: str) -> None:
    return None


@dataclass
class RunSummary:
    attack_jobs: int = 0
    defense_jobs: int = 0
    platform_errors: list[str] = field(default_factory=list)

    @property
    def container_runs(self) -> int:
        return self.attack_jobs + self.defense_jobs


def _round(settings: Settings, dataset_name: str | None) -> tuple[list[int], list[int], int]:
    with transaction(settings) as session:
        dataset = find_dataset(session, dataset_name)
        scheduler.plan(session, dataset, settings.epsilons)
        attacks = scheduler.runnable(session, dataset, AttackJob)
        defenses = scheduler.runnable(session, dataset, DefenseJob)
        still_to_come = scheduler.expected_defense_jobs(session, dataset)
    return attacks, defenses, still_to_come


def run_missing(settings: Settings, dataset_name: str | None = None, progress: Progress = _silent) -> RunSummary:
    """Run every missing job of the dataset's tournament; return what ran."""
    with transaction(settings) as session:
        scheduler.release_interrupted(session)
    summary = RunSummary()
    done = 0
    retried: set[tuple[str, int]] = set()
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        while True:
            attacks, defenses, to_come = _round(settings, dataset_name)
            work = [("attack", j) for j in attacks] + [("defense", j) for j in defenses]
            work = [w for w in work if w not in retried]  # a job the platform failed waits for the next call
            if not work:
                return summary
            total = done + len(work) + to_come
            futures = {pool.submit(_run_one, settings, kind, job_id): (kind, job_id) for kind, job_id in work}
            for future in as_completed(futures):
                kind, job_id = futures[future]
                message = future.result()
                if message is None:
                    done += 1
                    setattr(summary, f"{kind}_jobs", getattr(summary, f"{kind}_jobs") + 1)
                else:
                    retried.add((kind, job_id))
                    summary.platform_errors.append(message)
                progress(done, max(total, done), f"{kind} job {job_id}")


def _run_one(settings: Settings, kind: str, job_id: int) -> str | None:
    """Run one job; None when it finished, else the platform error that stopped it."""
    run = jobs.run_attack_job if kind == "attack" else jobs.run_defense_job
    outcome = run(settings, job_id)
    if outcome is None:
        return f"{kind} job {job_id}: platform error (see its attempt), will be retried"
    return None
