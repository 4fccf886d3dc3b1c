"""Who runs a sandbox container: labels that let a later sweep on the same engine tell for
certain whether the process that started a container still lives.

A runner killed with SIGKILL (or a worker's process lost while the engine lives) can neither
stop nor remove its container, and the container's deadline, the sweep's backstop, may be
hours away (a query-track job's time limit grows with its images). So every container names
its runner: the host's boot id, the runner's PID namespace, its user, its pid and that pid's
start time. A process can judge only the runners it can see: on the same boot (pids start
over after a reboot), in the same PID namespace (workers in separate containers against one
host engine see other pid numbers, or none of each other's), and of the same user (``/proc``
mounted with ``hidepid`` hides other users' processes). Among those, a runner whose pid is
gone, or is now another process (another start time: pids are recycled), is dead. Any doubt
(labels missing or unreadable, another boot, namespace or user) leaves the container to its
deadline.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

BOOT = "arena.runner.boot"
PID_NAMESPACE = "arena.runner.pidns"
USER = "arena.runner.uid"
PID = "arena.runner.pid"
STARTED = "arena.runner.started"

#: How long a container is left alone after its creation whatever its labels say: a margin, so
#: that no sweep ever judges a container while its runner is still creating and starting it.
CREATION_GRACE_SECONDS = 10

#: ``/proc/PID/stat``'s fields from the state on (the third), and the start time's place among
#: them (the 22nd field): the command name before them is in parentheses and may hold spaces.
_START_FIELD = 22 - 3


@dataclass(frozen=True)
class Runner:
    """A process, named so that no other process (now, or after a reboot) is taken for it."""

    boot: str
    #: The device and inode of ``/proc/PID/ns/pid``: equal exactly for processes of one namespace.
    pid_namespace: str
    user: int
    pid: int
    #: When the process started, in clock ticks after boot (``/proc/PID/stat``'s field 22).
    started: int

    def labels(self) -> dict[str, str]:
        return {BOOT: self.boot, PID_NAMESPACE: self.pid_namespace, USER: str(self.user),
                PID: str(self.pid), STARTED: str(self.started)}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> "Runner | None":
        """The runner a container's labels name; None where they name none (a container made
        before runners were labelled, or by a host without ``/proc``) or are malformed."""
        try:
            return cls(boot=labels[BOOT], pid_namespace=labels[PID_NAMESPACE], user=int(labels[USER]),
                       pid=int(labels[PID]), started=int(labels[STARTED]))
        except (KeyError, ValueError):
            return None

    def sees(self, other: "Runner") -> bool:
        """Whether this process can tell from its own ``/proc`` whether ``other`` lives."""
        return (self.boot, self.pid_namespace, self.user) == (other.boot, other.pid_namespace, other.user)


def process_start(pid: int) -> int | None:
    """When process ``pid`` of this PID namespace started (clock ticks after boot); None when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # no such pid, or it ended while being read
        return None
    return int(stat[stat.rindex(")") + 1:].split()[_START_FIELD])


def this_runner() -> Runner | None:
    """This process as a runner; None where ``/proc`` cannot say (not Linux): its containers
    then carry no runner labels, and are left to their deadline."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return None
    pid = os.getpid()
    started = process_start(pid)
    if started is None:
        return None
    return Runner(boot=boot, pid_namespace=f"{namespace.st_dev}:{namespace.st_ino}", user=os.getuid(),
                  pid=pid, started=started)


def orphaned(labels: Mapping[str, str], created: float, now: float, me: Runner | None,
             start_of: Callable[[int], int | None] = process_start) -> bool:
    """Whether a running container with ``labels``, created at ``created`` (epoch seconds), has
    lost its runner for certain, as this process (``me``) sees it at ``now``: its runner is
    one this process can see, and its pid is gone or names another process. Such a container
    is killed at once: nobody will stop it before its deadline, or record what it does.

    ``start_of`` tells when a pid started (``process_start``; the tests give their own)."""
    if me is None or now < created + CREATION_GRACE_SECONDS:
        return False
    runner = Runner.from_labels(labels)
    if runner is None or not me.sees(runner):
        return False
    return start_of(runner.pid) != runner.started
