"""What a run reports, the same whichever executor ran it, and how it reports progress."""

from collections.abc import Callable
from dataclasses import dataclass, field

from arena.models import JobKind

#: Called with (jobs finished so far, jobs known in all, a line about the last step).
Progress = Callable[[int, int, str], None]


def silent(_done: int, _total: int, _message: str) -> None:
    return None


@dataclass
class RunSummary:
    """Jobs this run finished, by kind, and query jobs; container runs where this process made them."""

    where: str  # "in-process" or "on the Celery workers"
    finished: dict[JobKind, int] = field(default_factory=lambda: dict.fromkeys(JobKind, 0))
    query_jobs: int = 0  # the query track's (``query_jobs``), each one run of two containers
    container_runs: int | None = None  # the workers' runs are theirs to count
    platform_errors: list[str] = field(default_factory=list)
    drained: bool = False  # an organizer had it stop taking new work before everything was done

    @property
    def attack_jobs(self) -> int:
        return self.finished[JobKind.ATTACK]

    @property
    def defense_jobs(self) -> int:
        return self.finished[JobKind.DEFENSE]

    @property
    def jobs(self) -> int:
        return sum(self.finished.values()) + self.query_jobs

    def describe(self) -> str:
        runs = f" in {self.container_runs} container runs" if self.container_runs is not None else ""
        drained = "; drained by an organizer before the end" if self.drained else ""
        queries = f", {self.query_jobs} query jobs" if self.query_jobs else ""
        return (f"ran {self.attack_jobs} attack jobs{queries} and {self.defense_jobs} defense jobs {self.where}{runs}"
                f"{drained}")
