"""A sandboxed container whose standard streams Arena holds: the query track's only channel.

Neither container of the query track has a network. Arena holds each container's stdin
and stdout and speaks the protocol of docs/query-track.md over them: through host named
pipes where the runtime opens them (``pipes``: runc, and runsc registered for it), else
through the engine's attach socket (the docker SDK's, which works the same under every
runtime: the engine carries the bytes). stderr is the container's log, of which a bounded
tail is kept (the database's excerpt) and its first ``ARENA_SANDBOX_MAX_LOG_BYTES`` (the
full log, ``data/logs.py``: the engine keeps as much of a batch run's); it always comes over
the attach socket, whose end says the container has exited. The engine's own log is off
(``none``): it would store every queried image, twice as large as JSON.

The container runs under the same limits as every other (``containers.run_options``),
with the deadline label that lets ``containers.sweep`` kill it should its runner die.
"""

import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import LogConfig

from arena.config import SandboxLimits
from arena.sandbox import containers, pipes
from arena.sandbox.pipes import HostPipes

#: The engine's multiplexed stream: an 8-byte header (stream, 0, 0, 0, big-endian size).
FRAME_HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
RECEIVE_BYTES = 1 << 20


class StreamClosed(Exception):
    """The container closed its stdout (it exited), or broke the stream's limits."""


class Silent(StreamClosed):
    """Nothing came before the time asked for: the caller may wait again, up to the deadline."""


class AttachedContainer:
    """One running container, the attach socket to its streams and, where they carry its
    stdin and stdout, its host pipes."""

    def __init__(self, container, sock: socket.socket, deadline: float, log_bytes: int,
                 channel: HostPipes | None = None) -> None:
        self.container = container
        self.deadline = deadline  # monotonic; past it the container is killed
        self.channel = channel
        self._sock = sock
        self._pending = bytearray()  # bytes of the current engine frame still to come
        self._stdout = bytearray()
        self._stderr = bytearray()  # its last bytes: the tail
        self._log = bytearray()  # its first ``log_bytes``: the full log
        self._log_bytes = log_bytes
        self._frame: tuple[int, int] | None = None  # (stream, bytes left) of the frame being read
        self._closed = False
        self._buffer = bytearray(RECEIVE_BYTES)
        self._view = memoryview(self._buffer)
        self.started = time.monotonic()

    def send(self, data: bytes) -> None:
        """Write to the container's stdin; a container that has gone, or that has not read it
        by its deadline, is StreamClosed."""
        if self.channel is None:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise StreamClosed(f"its stdin is closed ({exc})") from None
            return
        view = memoryview(data)
        while view:
            if self._closed:
                raise StreamClosed("its stdin is closed (it exited)")
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise StreamClosed("it did not read its stdin in time")
            readable, writable, _ = select.select([self._sock], [self.channel.to_container], [], timeout)
            if readable:
                self._receive_socket()  # its log, or its end
            if writable:
                try:
                    view = view[os.write(self.channel.to_container, view):]
                except BlockingIOError:
                    pass

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
        with memoryview(self._stdout) as view:
            data = bytes(view[:size])  # one copy: a slice of the bytearray would be a second (a query is MBs)
        del self._stdout[:size]
        return data

    def log_tail(self) -> str:
        return self._stderr[-containers.LOG_EXCERPT_BYTES:].decode("utf-8", errors="replace")

    def log(self) -> bytes:
        """Its stderr so far, whole up to the bytes the container's limits keep of a log."""
        return bytes(self._log)

    def _receive(self, until: float) -> None:
        """Read what comes next (its stdout, or its log from the engine); wait at most until ``until``."""
        if self._closed:
            raise StreamClosed("its stdout is closed")
        timeout = min(until, self.deadline) - time.monotonic()
        sources = [self._sock] if self.channel is None else [self._sock, self.channel.from_container]
        readable = select.select(sources, [], [], timeout)[0] if timeout > 0 else []
        if not readable:
            raise Silent("no answer in time")
        if self.channel is not None and self.channel.from_container in readable:
            self._read_pipe()
        if self._sock in readable and not self._receive_socket():
            raise StreamClosed("its stdout is closed")

    def _receive_socket(self) -> int:
        """Take what the engine sent; at its end (the container exited) take what is left in
        the stdout pipe, and mark the streams closed. How many bytes came, 0 at the end."""
        received = self._sock.recv_into(self._buffer)  # into one buffer: recv(n) would allocate n bytes a call
        if not received:
            if self.channel is not None:
                while self._read_pipe():
                    pass
            self._closed = True
            return 0
        self._pending += self._view[:received]
        self._demultiplex()
        return received

    def _read_pipe(self) -> int:
        """Take what the stdout pipe holds (at most a buffer's worth); how many bytes."""
        try:
            received = os.readv(self.channel.from_container, [self._buffer])
        except BlockingIOError:
            return 0
        self._stdout += self._view[:received]
        return received

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
            if stream == STDOUT and self.channel is None:
                self._stdout += part
            else:
                self._stderr += part
                del self._stderr[: -2 * containers.LOG_EXCERPT_BYTES]
                self._log += part[: self._log_bytes - len(self._log)]
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
                                    seconds=time.monotonic() - self.started, log_tail=self.log_tail(), log=self.log())

    def _drain(self) -> None:
        """Take what is already there, so a chatty container never blocks on a full pipe; its
        stdout is no longer read as anything once ``finish`` waits, so it is dropped, and a
        container that floods it holds no memory of Arena's."""
        try:
            while self.channel is not None and self._read_pipe():
                self._stdout.clear()
            while not self._closed and select.select([self._sock], [], [], 0)[0]:
                self._receive_socket()
                self._stdout.clear()
        except OSError:
            pass


def attach_options(limits: SandboxLimits, mounts: list[containers.Mount], time_limit: float,
                   channel: HostPipes | None = None) -> dict:
    """``run_options``, with the container's stdin held open by the engine (the streams) or its
    pipes mounted (``channel``), and no engine log."""
    options = containers.run_options(limits, mounts + (channel.mounts() if channel else []), time_limit)
    options.update(stdin_open=channel is None, log_config=LogConfig(type="none"))
    return options


@contextmanager
def attached(image: str, command: list[str], mounts: list[containers.Mount], time_limit: float,
             limits: SandboxLimits, work_dir: Path) -> Iterator[AttachedContainer]:
    """Start ``command`` in ``image`` with its streams held, over host pipes (made under
    ``work_dir``) where ``pipes.carries`` says so and the image has the shell to wrap it, else
    over the attach socket; kill and remove it on leaving. The attach comes before the start,
    so not a byte the container writes is lost."""
    client = containers.docker_client()
    info = containers.engine_info(client)  # once: the runtime's check and the transport's choice
    containers.check_runtime(client, limits, info)
    with ExitStack() as stack:
        channel = stack.enter_context(pipes.host_pipes(work_dir)) if pipes.carries(info, limits) else None
        started = _start(stack, client, image, command, mounts, time_limit, limits, channel)
        if started is None:  # no /bin/sh for the pipes' wrapper: the streams carry it
            channel = None
            started = _start(stack, client, image, command, mounts, time_limit, limits, None)
        yield AttachedContainer(*started, time.monotonic() + time_limit, limits.max_log_bytes, channel)


def _start(stack: ExitStack, client, image: str, command: list[str], mounts: list[containers.Mount],
           time_limit: float, limits: SandboxLimits, channel: HostPipes | None):
    """The started container and its attach socket, the container's removal on ``stack``;
    None where the pipes' wrapper cannot start in the image (no /bin/sh), nothing left behind."""
    try:
        container = client.containers.create(image, pipes.WRAPPER + command if channel else command,
                                             **attach_options(limits, mounts, time_limit, channel))
    except ImageNotFound:
        raise containers.SandboxError(f"container image {image!r} is not on this Docker engine") from None
    except containers.ENGINE_ERRORS as exc:
        raise containers.SandboxError(f"cannot create container: {exc}") from None
    streams = {"stdin": int(channel is None), "stdout": 1, "stderr": 1, "stream": 1}
    try:
        sock = container.attach_socket(params=streams)._sock  # the plain socket inside the SDK's SocketIO
        container.start()
    except APIError as exc:
        no_shell = channel is not None and not containers.holds(container, "/bin/sh")
        _remove(container)
        if no_shell:
            return None
        raise containers.SandboxError(f"cannot start an attached container: {exc}") from None
    except containers.ENGINE_ERRORS as exc:
        _remove(container)
        raise containers.SandboxError(f"cannot start an attached container: {exc}") from None
    stack.callback(_remove, container)
    return container, sock


def _remove(container) -> None:
    try:
        container.remove(force=True)
    except (NotFound, APIError):
        pass
    except containers.ENGINE_ERRORS:
        pass  # the engine went away; sweep() removes it later
