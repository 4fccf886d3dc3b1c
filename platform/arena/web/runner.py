"""A tournament run started from the organizer page, in a background thread of the web process.

Only one run at a time: a second click while one runs is refused, not queued. What the
run did is kept for the page; how far the tournament has got is read from the database
(arena.progress), so progress also shows for runs started from the CLI or on workers.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from arena.config import Settings
from arena.execution.run import run
from arena.execution.summary import RunSummary
from arena.models import utcnow


@dataclass
class RunState:
    running: bool = False
    dataset: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    outcome: str = ""
    errors: list[str] = field(default_factory=list)


class TournamentRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.has_engine = settings.broker_url is None  # with a broker, the workers run every container
        self.state = RunState()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, dataset_name: str | None, first: Callable[[], None] | None = None) -> bool:
        """Start a run of the missing jobs; False when one is already under way. ``first``
        (forgetting a submission's results, for a re-run) is done before the run starts,
        under the same lock, so no other run can start in between."""
        with self._lock:
            if self.state.running:
                return False
            if first is not None:
                first()
            self.state = RunState(running=True, dataset=dataset_name, started_at=utcnow(), message="planning")
            self._thread = threading.Thread(target=self._run, args=(dataset_name,), name="tournament-run", daemon=True)
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _progress(self, done: int, total: int, message: str) -> None:
        """What this run has done, said apart from the dataset's whole count beside it on the
        page ("40 of 51 jobs done — 2/13 jobs" read as one count gone wrong)."""
        self.state.message = f"this run on {self.state.dataset or 'the newest dataset'}: {done} of its {total} jobs; " \
                             f"last: {message}"

    def _run(self, dataset_name: str | None) -> None:
        try:
            summary = self._execute(dataset_name)
            self.state.outcome = summary.describe()
            self.state.errors = list(summary.platform_errors)
        except Exception as exc:  # the page must say what stopped the run, whatever it was
            self.state.outcome = "the run stopped"
            self.state.errors = [f"{exc.__class__.__name__}: {exc}"]
        finally:
            self.state.running = False
            self.state.finished_at = utcnow()

    def _execute(self, dataset_name: str | None) -> RunSummary:
        return run(self.settings, dataset_name, self._progress)
