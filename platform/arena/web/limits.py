"""How often one client address may do something: a sliding window per address.

Two things are counted so. Wrong credentials: after ``login_max_events`` wrong tokens (on
the login page or as ``Authorization: Bearer``) within the window, every credential from
that address is answered 429 until the oldest of them is a window old; a right one is
refused too meanwhile, so guessing gains nothing from being fast. And teams signing
themselves up: ``registrations_per_hour`` from one address. Kept in the memory of the web
process (one limiter each per process): it slows a guesser or a flood down, it is no
account lock-out.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class AddressLimiter:
    def __init__(self, max_events: int, window: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.max_events = max_events
        self.window = window
        self.clock = clock
        self.max_clients = max_clients
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        events = self._events.get(client)
        if events is not None:
            while events and events[0] <= now - self.window:
                events.popleft()
            if not events:
                del self._events[client]
                return None
        return events

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again; None when it may now."""
        with self._lock:
            now = self.clock()
            events = self._recent(client, now)
            if events is None or len(events) < self.max_events:
                return None
            return max(1, math.ceil(events[-self.max_events] + self.window - now))

    def count(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            events = self._recent(client, now)
            if events is None:
                if len(self._events) >= self.max_clients:
                    self._forget_stale(now)
                events = self._events[client] = deque(maxlen=self.max_events)
            events.append(now)

    def _forget_stale(self, now: float) -> None:
        """Memory stays bounded under many addresses: old ones go, then the longest known."""
        for client in list(self._events):
            self._recent(client, now)
        while len(self._events) >= self.max_clients:
            del self._events[next(iter(self._events))]
