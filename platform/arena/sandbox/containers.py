"""Running submitted code in a locked-down container, through the docker SDK.

Every run gets: no network, memory = memory+swap (no swap), CPU and pids limits, a
read-only root, read-only ``/code`` and input, a non-root user, no capabilities,
no-new-privileges, a size-limited tmpfs ``/tmp``, a capped log, and a watchdog that
kills the container on time-out or when its output grows past the limits. The
container is removed whatever happens.
"""

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig

from arena.config import SandboxLimits
from arena.errors import PlatformError
from arena.sandbox import runners

WATCH_INTERVAL = 0.25
#: The tail of a run's log kept in the database: at most its last lines, and of them these bytes.
LOG_EXCERPT_LINES = 200
LOG_EXCERPT_BYTES = 4000


class SandboxError(PlatformError):
    """The platform could not run the container (engine down, image missing): not the submission's fault."""


#: What the SDK raises when the engine is gone: it does not wrap the transport's errors.
ENGINE_ERRORS = (DockerException, requests.exceptions.RequestException)


class EngineLost(SandboxError):
    """The engine stopped answering while a container ran (dockerd stopped or restarted):
    the run's outcome is unknown, so it is the platform's failure and the job runs again."""


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    writable: bool = False


@dataclass
class RunResult:
    exit_code: int | None
    timed_out: bool
    killed_reason: str | None
    seconds: float
    log_tail: str
    #: The whole log, as the engine kept it (a query-track container: its stderr, as Arena
    #: kept it), which ``data/logs.py`` stores; None where none was collected.
    log: bytes | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.killed_reason is None

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out after {self.seconds:.1f} s"
        if self.killed_reason:
            return f"killed: {self.killed_reason}"
        return f"exit code {self.exit_code}"


@lru_cache
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        raise SandboxError(f"no Docker engine answers ({exc}); start dockerd or set DOCKER_HOST") from None
    return client


def _output_usage(directory: Path) -> tuple[int, int]:
    """Bytes and files under the output dir; links are counted, never followed."""
    total = files = 0
    for folder, subfolders, names in os.walk(directory, followlinks=False):
        for name in names + subfolders:
            files += 1
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total, files


def over_limit(output: Path, limits: SandboxLimits) -> str | None:
    size, files = _output_usage(output)
    if size > limits.max_output_bytes:
        return f"output grew past {limits.max_output_bytes} bytes"
    if files > limits.max_output_files:
        return f"output holds more than {limits.max_output_files} files"
    return None


def engine_info(client: docker.DockerClient) -> dict:
    """What ``docker info`` says: the runtimes the engine has registered, and how."""
    try:
        return client.info()
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot ask the Docker engine for its runtimes: {exc}") from None


def check_runtime(client: docker.DockerClient, limits: SandboxLimits, info: dict | None = None) -> None:
    """A runtime the engine lacks (gVisor's runsc not installed) is named, with what is there;
    ``info``, the engine's, where the caller has it already."""
    if not limits.runtime:
        return
    runtimes = (info if info is not None else engine_info(client)).get("Runtimes", {})
    if limits.runtime not in runtimes:
        raise SandboxError(
            f"the Docker engine has no runtime {limits.runtime!r} (it has {', '.join(sorted(runtimes))}): register it "
            "in /etc/docker/daemon.json (docs/security.md) or unset ARENA_SANDBOX_RUNTIME"
        )


def check_room(output: Path, limits: SandboxLimits) -> None:
    """Refuse to start unless the output's filesystem has room for all a run may write: on a
    full disk the submission's writes would fail and its missing outputs be blamed on it."""
    free = shutil.disk_usage(output).free
    if free < limits.max_output_bytes:
        raise SandboxError(
            f"the output storage is full: {free} bytes free under {output.parent}, a run may write "
            f"{limits.max_output_bytes} (free space, or lower ARENA_SANDBOX_MAX_OUTPUT_BYTES)"
        )


#: When a container's time is up, in epoch seconds: every Arena container carries it, and the
#: labels of its runner (``runners``) where the host tells them.
LABEL = "arena.deadline"
#: How long past its deadline a running container is left to its own runner, which kills it
#: at the deadline and records the time-out: a sweep by another runner on the host that killed
#: it first would have the owner record a plain exit 137 instead. Still running after this,
#: it has no runner left.
ORPHAN_GRACE_SECONDS = 60
#: How long a finished container of a dead runner is left for inspection before sweep removes it.
SWEEP_GRACE_SECONDS = 300


def run_options(limits: SandboxLimits, mounts: list[Mount], time_limit: float) -> dict:
    """Every limit, and the labels ``sweep`` reads should the runner (this process) die
    before it removes the container: its deadline, and who runs it."""
    runner = runners.this_runner()
    options = dict(
        labels={LABEL: str(int(time.time() + time_limit)), **(runner.labels() if runner else {})},
        network_mode="none",
        mem_limit=limits.memory,
        memswap_limit=limits.memory,
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids,
        read_only=True,
        user=limits.user,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        tmpfs={"/tmp": f"rw,noexec,nosuid,size={limits.tmpfs_size}"},
        volumes={str(m.host.resolve()): {"bind": m.container, "mode": "rw" if m.writable else "ro"} for m in mounts},
        working_dir="/code",
        log_config=LogConfig(type="json-file", config={"max-size": str(limits.max_log_bytes), "max-file": "1"}),
        environment={"HOME": "/tmp"},
        detach=True,
    )
    if limits.runtime:
        options["runtime"] = limits.runtime
    if limits.gpu:
        options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return options


def run(
    image: str,
    command: list[str],
    mounts: list[Mount],
    output: Path,
    time_limit: float,
    limits: SandboxLimits,
) -> RunResult:
    """Run ``command`` in ``image`` and wait, at most ``time_limit`` seconds."""
    client = docker_client()
    check_runtime(client, limits)
    check_room(output, limits)
    output.chmod(0o777)  # the non-root user inside must be able to write here
    try:
        container = client.containers.create(image, command, **run_options(limits, mounts, time_limit))
    except ImageNotFound:
        raise SandboxError(f"container image {image!r} is not on this Docker engine") from None
    except (APIError, DockerException) as exc:
        raise SandboxError(f"cannot create container: {exc}") from None
    try:
        return _supervise(container, output, time_limit, limits)
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except ENGINE_ERRORS:
            pass  # the engine went away; it removes nothing, and sweep() removes it later


def _check_engine(container) -> None:
    try:
        container.client.ping()
    except ENGINE_ERRORS as exc:
        raise EngineLost(f"the Docker engine stopped answering during the run ({exc})") from None


def wait_for_exit(container, seconds: float) -> int | None:
    """The exit code if the container ends within ``seconds``, else None.

    The SDK reports a wait that timed out as a ReadTimeout or as a ConnectionError saying
    "Read timed out", and a vanished engine as a ConnectionError too: a ping tells them apart."""
    try:
        return container.wait(timeout=seconds)["StatusCode"]
    except requests.exceptions.ReadTimeout:
        return None
    except requests.exceptions.ConnectionError:
        _check_engine(container)
        return None


def kill(container) -> None:
    try:
        container.kill()
    except APIError:
        pass  # it exited between the last check and the kill
    container.wait(timeout=60)


def _watch(container, output: Path, time_limit: float, limits: SandboxLimits, started: float) -> tuple[int | None, bool, str | None]:
    """Wait for the exit in short slices, killing on time-out or output past the limits;
    return (exit code, timed out, kill reason)."""
    timed_out, killed_reason = False, None
    while (exit_code := wait_for_exit(container, WATCH_INTERVAL)) is None:
        timed_out = time.monotonic() - started > time_limit
        killed_reason = None if timed_out else over_limit(output, limits)
        if timed_out or killed_reason:
            kill(container)
            break
    return exit_code, timed_out, killed_reason


def _supervise(container, output: Path, time_limit: float, limits: SandboxLimits) -> RunResult:
    """Start, watch, collect the log; an engine lost on the way is a platform failure, never
    blamed on the submission (its container died with the engine)."""
    started = time.monotonic()
    try:
        container.start()
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot start container: {exc}") from None
    try:
        exit_code, timed_out, killed_reason = _watch(container, output, time_limit, limits, started)
        seconds = time.monotonic() - started
        container.reload()  # raises when the engine is going away, e.g. it stopped the container on shutdown
        log = container.logs(stdout=True, stderr=True)
    except ENGINE_ERRORS as exc:
        raise EngineLost(f"the Docker engine failed during the run ({exc})") from None
    return _result(exit_code, timed_out, killed_reason, seconds, log)


def log_tail(log: bytes) -> str:
    """The part of a log the database keeps: its last lines, at most ``LOG_EXCERPT_BYTES``."""
    lines = log.splitlines(keepends=True)[-LOG_EXCERPT_LINES:]
    return b"".join(lines)[-LOG_EXCERPT_BYTES:].decode("utf-8", errors="replace")


def _result(exit_code: int | None, timed_out: bool, killed_reason: str | None, seconds: float, log: bytes) -> RunResult:
    """A run's result: no exit code for a run that was killed (its code says nothing of it)."""
    return RunResult(exit_code=None if timed_out or killed_reason else exit_code, timed_out=timed_out,
                     killed_reason=killed_reason, seconds=seconds, log_tail=log_tail(log), log=log)


#: How often a command run in a resident container is asked whether it ended: an exec cannot
#: be waited on as a container can, so its end is polled.
EXEC_POLL_SECONDS = 0.05
#: How long a command that ended with a code of 128 or more waits for its resident container to
#: end too: gVisor ends the whole sandbox on an OOM kill or at the pids limit, and the command's
#: exec then reports 128 (its status went with the sandbox), or is gone (``Resident._exec``).
SANDBOX_END_SECONDS = 2.0
#: What holds a resident container open between its commands: a shell reading a stdin that
#: never ends (``stdin_open``). As PID 1 it ignores the signals its namespace sends it.
HOLD = ["/bin/sh", "-c", "read _"]
#: A command run in it, ended as a container's run ends: its output goes to PID 1's (the
#: container's capped log); once it exits, every other process of the sandbox user (but PID 1)
#: is killed, as the end of a container would kill them, and /tmp and /dev/shm are emptied, so
#: that the next command finds them as a fresh container would.
ENDED_AS_A_RUN = ["/bin/sh", "-c", '"$@" >/proc/1/fd/1 2>&1; code=$?; kill -9 -1; kill -9 -1; '
                  "rm -rf /tmp/* /tmp/.[!.]* /tmp/..?* /dev/shm/* /dev/shm/.[!.]* 2>/dev/null; exit $code", "arena"]


class Resident:
    """A started sandbox container that runs commands one after another (``resident``): the
    determinism probe runs a batch twice for one container start instead of two."""

    def __init__(self, container, output: Path, limits: SandboxLimits, started: float) -> None:
        self.container = container
        self.output = output
        self.limits = limits
        self._started: float | None = started  # the container's start, counted in its first command's time

    def run(self, command: list[str], time_limit: float) -> RunResult:
        """Run ``command`` as a run of its own would (the same user, folder and limits), at most
        ``time_limit`` seconds; the first command's time includes the container's start, as
        ``run``'s does. It ends as a container's run does (``ENDED_AS_A_RUN``). A time-out or
        an output past the limits kills the container."""
        started, self._started = self._started or time.monotonic(), None
        since = time.time()
        try:
            exit_code, timed_out, killed_reason = self._exec(ENDED_AS_A_RUN + command, time_limit, started)
            seconds = time.monotonic() - started
            log = self.container.logs(stdout=True, stderr=True, since=since)
        except ENGINE_ERRORS as exc:
            raise EngineLost(f"the Docker engine failed during the run ({exc})") from None
        return _result(exit_code, timed_out, killed_reason, seconds, log)

    def _exec(self, command: list[str], time_limit: float, started: float) -> tuple[int | None, bool, str | None]:
        """Start ``command`` and poll it to its end, killing the container on time-out or on an
        output past the limits, as ``_watch`` does; return (exit code, timed out, kill reason)."""
        api = self.container.client.api
        exec_id = api.exec_create(self.container.id, command, user=self.limits.user, workdir="/code",
                                  environment={"HOME": "/tmp"})["Id"]
        api.exec_start(exec_id, detach=True)
        checked = time.monotonic()
        while True:
            try:
                state = api.exec_inspect(exec_id)
            except NotFound:  # the container ended under it: gVisor ends its sandbox on an OOM kill or at the pids limit
                self.container.reload()
                return self.container.attrs["State"]["ExitCode"], False, None
            if not state["Running"] and state["ExitCode"] is not None:
                return self._exit_code(state["ExitCode"]), False, None
            now = time.monotonic()
            timed_out = now - started > time_limit
            killed_reason = None
            if not timed_out and now - checked >= WATCH_INTERVAL:
                checked, killed_reason = now, over_limit(self.output, self.limits)
            if timed_out or killed_reason:
                kill(self.container)
                return None, timed_out, killed_reason
            time.sleep(EXEC_POLL_SECONDS)


    def _exit_code(self, command_code: int) -> int:
        """The exit code a run of its own would report: the command's, or the container's when
        the sandbox ended under the command (its exec's 128 is then Docker's, not the command's;
        a run of its own reports the container's code, 2 for gVisor at its pids limit)."""
        if command_code < 128:
            return command_code
        container_code = wait_for_exit(self.container, SANDBOX_END_SECONDS)
        return command_code if container_code is None else container_code


def holds(container, path: str) -> bool:
    """Whether the (created) container's file system has ``path``."""
    try:
        for _chunk in container.client.api.get_archive(container.id, path)[0]:
            pass  # read to its end, so that the engine's connection is left clean
    except NotFound:
        return False
    return True


@contextmanager
def resident(image: str, mounts: list[Mount], output: Path, time_limit: float, limits: SandboxLimits) -> Iterator[Resident | None]:
    """A container of ``image`` started under every limit of ``run``, to run commands in turn for
    up to ``time_limit`` seconds in all, removed afterwards; None (nothing started) when the
    image has no /bin/sh to hold it open: run each command with ``run`` then."""
    client = docker_client()
    check_runtime(client, limits)
    check_room(output, limits)
    output.chmod(0o777)
    try:
        container = client.containers.create(image, HOLD, stdin_open=True, **run_options(limits, mounts, time_limit))
    except ImageNotFound:
        raise SandboxError(f"container image {image!r} is not on this Docker engine") from None
    except (APIError, DockerException) as exc:
        raise SandboxError(f"cannot create container: {exc}") from None
    try:
        yield _start(container, limits, output)
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except ENGINE_ERRORS:
            pass  # the engine went away; sweep() removes it later


def _start(container, limits: SandboxLimits, output: Path) -> Resident | None:
    started = time.monotonic()
    try:
        container.start()
    except APIError as exc:
        if not holds(container, "/bin/sh"):
            return None
        raise SandboxError(f"cannot start container: {exc}") from None
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot start container: {exc}") from None
    return Resident(container, output, limits, started)


def sweep() -> int:
    """Kill Arena containers that outlived their runner and remove finished ones left behind.

    A runner that dies (kill -9, a lost worker process, power loss) cannot enforce its time
    limit or remove its container. A running container whose runner this process can see is
    gone (``runners.orphaned``) is killed and removed at once: its deadline may be hours away.
    For the rest, the deadline label lets any later runner on the host do both, once the
    container is far enough past it that its own runner, if alive, would have acted.
    Returns the number of containers removed."""
    removed = 0
    now = time.time()
    me = runners.this_runner()
    # sparse: the list call alone, no inspect per container; a container that another run
    # removes meanwhile (other threads and workers sweep and clean up too) is skipped.
    for container in docker_client().containers.list(all=True, sparse=True, filters={"label": LABEL}):
        labels = container.attrs.get("Labels") or {}
        deadline = float(labels.get(LABEL, "0"))
        running = container.status == "running"
        try:
            if running and runners.orphaned(labels, container.attrs.get("Created", now), now, me):
                container.remove(force=True)
                removed += 1
            elif running and now > deadline + ORPHAN_GRACE_SECONDS:
                kill(container)
            elif container.status in ("exited", "dead", "created") and now > deadline + SWEEP_GRACE_SECONDS:
                container.remove(force=True)
                removed += 1
        except NotFound:
            continue
        except APIError as exc:
            if exc.status_code != 409:
                raise
            continue  # another sweep is removing it (the engine answers 409 Conflict to the second)
    return removed
