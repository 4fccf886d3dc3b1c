"""A sandboxed container whose standard streams Arena holds: the query track's only channel.

Neither container of the query track has a network. Arena attaches to each container's
stdin, stdout and stderr through the engine (the docker SDK's attach socket, which works
the same under runc and gVisor's runsc: the engine, not the runtime, carries the bytes)
and speaks the protocol of docs/query-track.md over them. stdout is the protocol; stderr
is the container's log, of which a bounded tail is kept. The engine's own log is off
(``none``): it would store every queried image, twice as large as JSON.

The container runs under the same limits as every other (``containers.run_options``),
with the deadline label that lets ``containers.sweep`` kill it should its runner die.
"""

import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import LogConfig

from arena.config import SandboxLimits
from arena.sandbox import containers

#: The engine's multiplexed stream: an 8-byte header (stream, 0, 0, 0, big-endian size).
FRAME_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
RECEIVE_BYTES = 1 << 20


class StreamClosed(Exception):
    """The container closed its stdout (it exited), or broke the stream's limits."""


class Silent(StreamClosed):
    """Nothing came before the time asked for: the caller may wait again, up to the deadline."""


class AttachedContainer:
    """One running container and the attach socket to its streams."""

    def __init__(self, container, sock: socket.socket, deadline: float) -> None:
        self.container = container
        self.deadline = deadline  # monotonic; past it the container is killed
        self._sock = sock
        self._pending = bytearray()  # bytes of the current engine frame still to come
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._frame: tuple[int, int] | None = None  # (stream, bytes left) of the frame being read
        self._closed = False
        self._buffer = bytearray(RECEIVE_BYTES)
        self._view = memoryview(self._buffer)
        self.started = time.monotonic()

    def send(self, data: bytes) -> None:
        """Write to the container's stdin; a container that has gone is StreamClosed."""
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise StreamClosed(f"its stdin is closed ({exc})") from None

    def read_line(self, until: float, max_bytes: int) -> bytes:
        """The next stdout line, without its newline; Silent at ``until`` (a monotonic time),
        StreamClosed at EOF or past ``max_bytes`` without a newline."""
        while (end := self._stdout.find(b"\n")) < 0:
            if len(self._stdout) > max_bytes:
                raise StreamClosed(f"a line longer than {max_bytes} bytes")
            self._receive(until)
        line = bytes(self._stdout[:end])
        del self._stdout[: end + 1]
        return line

    def read_exact(self, size: int, until: float) -> bytes:
        """Exactly ``size`` stdout bytes; Silent at ``until``, StreamClosed at EOF."""
        while len(self._stdout) < size:
            self._receive(until)
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def log_tail(self) -> str:
        return self._stderr[-containers.LOG_EXCERPT_BYTES:].decode("utf-8", errors="replace")

    def _receive(self, until: float) -> None:
        """Read what the engine sends next, sorting stdout from stderr; wait at most until ``until``."""
        if self._closed:
            raise StreamClosed("its stdout is closed")
        timeout = min(until, self.deadline) - time.monotonic()
        if timeout <= 0 or not select.select([self._sock], [], [], timeout)[0]:
            raise Silent("no answer in time")
        received = self._sock.recv_into(self._buffer)  # into one buffer: recv(n) would allocate n bytes a call
        if not received:
            self._closed = True
            raise StreamClosed("its stdout is closed")
        self._pending += self._view[:received]
        self._demultiplex()

    def _demultiplex(self) -> None:
        while self._pending:
            if self._frame is None:
                if len(self._pending) < FRAME_HEADER.size:
                    return
                self._frame = FRAME_HEADER.unpack_from(self._pending)
                del self._pending[: FRAME_HEADER.size]
            stream, left = self._frame
            part = self._pending[:left]
            del self._pending[: len(part)]
            if stream == STDOUT:
                self._stdout += part
            else:
                self._stderr += part
                del self._stderr[: -2 * containers.LOG_EXCERPT_BYTES]
            self._frame = (stream, left - len(part)) if left > len(part) else None

    def finish(self, until: float, kill_reason: str | None = None) -> containers.RunResult:
        """Wait for the exit until ``until`` (never past the deadline), then kill it: for
        ``kill_reason`` at once where one is given, as a time-out past the deadline, else as
        a container that kept running after its stdout closed. What it wrote to stderr
        meanwhile is kept for the log."""
        exit_code = None
        while kill_reason is None and exit_code is None and time.monotonic() < min(until, self.deadline):
            exit_code = containers.wait_for_exit(self.container, 0.1)
            self._drain()
        timed_out = exit_code is None and kill_reason is None and time.monotonic() >= self.deadline
        if exit_code is None:
            containers.kill(self.container)
            kill_reason = kill_reason or (None if timed_out else "it kept running after it closed its stdout")
        self._drain()
        return containers.RunResult(exit_code=exit_code, timed_out=timed_out, killed_reason=kill_reason,
                                    seconds=time.monotonic() - self.started, log_tail=self.log_tail())

    def _drain(self) -> None:
        """Take what is already there, so a chatty container never blocks on a full pipe; its
        stdout is no longer read as anything once ``finish`` waits, so it is dropped, and a
        container that floods it holds no memory of Arena's."""
        try:
            while not self._closed and select.select([self._sock], [], [], 0)[0]:
                self._receive(time.monotonic() + 1)
                self._stdout.clear()
        except (StreamClosed, OSError):
            pass


def attach_options(limits: SandboxLimits, mounts: list[containers.Mount], time_limit: float) -> dict:
    options = containers.run_options(limits, mounts, time_limit)
    options.update(stdin_open=True, log_config=LogConfig(type="none"))
    return options


@contextmanager
def attached(image: str, command: list[str], mounts: list[containers.Mount], time_limit: float,
             limits: SandboxLimits) -> Iterator[AttachedContainer]:
    """Start ``command`` in ``image`` with its streams attached; kill and remove it on leaving.
    The attach comes before the start, so not a byte the container writes is lost."""
    client = containers.docker_client()
    containers.check_runtime(client, limits)
    try:
        container = client.containers.create(image, command, **attach_options(limits, mounts, time_limit))
    except ImageNotFound:
        raise containers.SandboxError(f"container image {image!r} is not on this Docker engine") from None
    except containers.ENGINE_ERRORS as exc:
        raise containers.SandboxError(f"cannot create container: {exc}") from None
    try:
        try:
            stream = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            sock = stream._sock  # the SDK's SocketIO wraps the plain socket that sendall and select need
            container.start()
        except containers.ENGINE_ERRORS as exc:
            raise containers.SandboxError(f"cannot start an attached container: {exc}") from None
        yield AttachedContainer(container, sock, time.monotonic() + time_limit)
    finally:
        try:
            container.remove(force=True)
        except (NotFound, APIError):
            pass
        except containers.ENGINE_ERRORS:
            pass  # the engine went away; sweep() removes it later
