"""How many wrong credentials one client address may send: a sliding window per address.

After ``max_failures`` wrong tokens (on the login page or as ``Authorization: Bearer``)
within ``window`` seconds, every credential from that address is answered 429 until the
oldest of those failures is ``window`` seconds old; a right one is refused too meanwhile,
so guessing gains nothing from being fast. Kept in the memory of the web process (one
limiter per process): it slows a guesser down, it is no account lock-out.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, max_failures: int, window: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is not None:
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[client]
                return None
        return failures

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again; None when it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(client, now)
            if failures is None or len(failures) < self.max_failures:
                return None
            return max(1, math.ceil(failures[-self.max_failures] + self.window - now))

    def fail(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            failures = self._recent(client, now)
            if failures is None:
                if len(self._failures) >= self.max_clients:
                    self._forget_stale(now)
                failures = self._failures[client] = deque(maxlen=self.max_failures)
            failures.append(now)

    def _forget_stale(self, now: float) -> None:
        """Memory stays bounded under many addresses: old ones go, then the longest known."""
        for client in list(self._failures):
            self._recent(client, now)
        while len(self._failures) >= self.max_clients:
            del self._failures[next(iter(self._failures))]
