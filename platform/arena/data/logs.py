"""Container runs' full logs, kept for the submission's team and organizers to download.

A job attempt and a dry run keep the last lines of their log in the database (the tail the
submission page shows); the whole log, as the engine kept it, is an object of the store
(``objects.store(settings).logs``) under its content hash, which the attempt or dry-run row
names (``log_sha256``, ``log_size``). So the logs of a pack's jobs, all one container run's,
are one object, and every empty log is the same one. A log past ``ARENA_FULL_LOG_BYTES`` is
cut there, with a line saying so. An object is written before the row that names it, as
every object is (``operations/backup.py`` relies on it), and is never changed; a re-run
deletes the rows that named the old logs, so nothing reaches them any more.
"""

import hashlib
from dataclasses import dataclass

from arena.config import Settings
from arena.data.objects import ObjectCorrupted, ObjectMissing, store


@dataclass(frozen=True)
class KeptLog:
    """A full log in the store: the hash of its bytes and their count."""

    sha256: str
    size: int


def key(sha256: str) -> str:
    """A log's key in the store: its hash, under a folder of its first two digits."""
    return f"{sha256[:2]}/{sha256}.log"


def capped(log: bytes, limit: int) -> bytes:
    """``log`` whole when it fits ``limit`` bytes; else its first ``limit`` bytes and a line
    saying how much was left out."""
    if len(log) <= limit:
        return log
    return log[:limit] + (f"\n[arena] the log is cut here: its first {limit} of {len(log)} bytes are kept "
                          "(ARENA_FULL_LOG_BYTES)\n").encode()


def keep(settings: Settings, log: bytes | None) -> KeptLog | None:
    """Store a run's full log; None for a run whose full log is not collected (``log`` None)."""
    if log is None:
        return None
    body = capped(log, settings.full_log_bytes)
    sha256 = hashlib.sha256(body).hexdigest()
    store(settings).logs.put(key(sha256), body)
    return KeptLog(sha256, len(body))


def read(settings: Settings, sha256: str) -> bytes:
    """A kept log's bytes, checked against its hash: a missing or damaged one is the
    platform's failure (``StoreError``), never shown as some other log."""
    path = store(settings).logs.path(key(sha256), sha256)
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise ObjectMissing(f"the store has no log {key(sha256)}, which the database references: the store is "
                            "damaged (restore it from a backup)") from None
    if hashlib.sha256(body).hexdigest() != sha256:
        raise ObjectCorrupted(f"the log {key(sha256)} is damaged: its bytes do not hash to its name")
    return body
