"""Uploads handed on to be checked: the web takes an upload and answers at once, and never
runs a container itself when workers do.

With a broker (``ARENA_BROKER_URL``), the waiting dry runs are sent to the workers' ``dryrun``
queue: the web process talks to Redis, never to a Docker engine. Without one (the embedded
mode, everything on one host), a background thread of the web process checks them, one
after another, as ``arena run`` would.
"""

import logging
import threading

from arena.config import Settings
from arena.execution import checking, workers

logger = logging.getLogger(__name__)


class UploadChecker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._again = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Have the waiting uploads checked: queued for the workers, or checked here in the
        background (a wake while the thread works makes it look again when it is done)."""
        if self.settings.broker_url:
            from arena.execution.broker import celery_app, enqueue_dry_runs  # Celery only where it is used

            enqueue_dry_runs(self.settings, celery_app(self.settings), checking.waiting(self.settings))
            return
        with self._lock:
            self._again.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._check, name="upload-checker", daemon=True)
                self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _check(self) -> None:
        while True:
            with self._lock:
                if not self._again.is_set():
                    self._thread = None  # under the lock: a wake from now on starts another
                    return
                self._again.clear()
            try:
                with workers.registered(self.settings, "checker", self.settings.concurrency) as me:
                    checking.check_waiting(self.settings, me.id)
            except Exception:  # the next upload wakes it again; the organizers have the log
                logger.exception("checking the waiting uploads failed")
