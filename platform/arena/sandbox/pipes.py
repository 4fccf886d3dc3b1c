"""Host named pipes (FIFOs) as an attached container's stdin and stdout: the query track's
fast transport, where the runtime lets a container open them.

The engine's attach socket carries every byte through dockerd and back (1.2 ms a round
trip under runc, 2.5 ms under runsc); a pair of host FIFOs bind-mounted into the container
carries them through the kernel (or gVisor's gofer) alone. Each container gets two FIFOs of
its own in a private folder, each bind-mounted as a single file, read-write (gVisor refuses
to open a FIFO of a read-only mount for writing), so the container can create nothing
beside them and never sees another container's. Its command is wrapped so that teams keep
stdin and stdout as the channel (``WRAPPER``); stderr stays on the attach stream as its log.

Arena opens both FIFOs read-write and non-blocking before the start: on Linux such an open
never waits for the other side, and a pipe Arena holds both ends of never reads as ended,
so the end of the container shows on the attach stream instead (``attached``). Each pipe
holds ``PIPE_BYTES`` (where the kernel grants it; else its default 64 KiB): a container
that never reads fills it and Arena's write runs out of time, it never blocks.

runc opens host FIFOs as any process does; gVisor's runsc only when registered with
``--host-fifo=open`` (docs/security.md), which ``carries`` reads from the engine's own
registration. Any other runtime, or ``ARENA_SANDBOX_HOST_PIPES=false``, keeps the streams.
"""

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from arena.config import SandboxLimits
from arena.sandbox import containers

#: Where the container finds its pipes; its command runs with them as stdin and stdout.
STDIN, STDOUT = "/channel/in", "/channel/out"
#: The team's command, as ``sh -c`` runs it with the pipes for stdin and stdout. An image
#: without /bin/sh cannot start it (``attached`` falls back to the streams then).
WRAPPER = ["/bin/sh", "-c", f'exec "$@" <{STDIN} >{STDOUT}', "arena"]
#: Each pipe's buffer: a whole answer line many times over, and room for one query image
#: (268 KB) in flight, within Linux's default pipe-max-size for unprivileged callers.
PIPE_BYTES = 1 << 20
#: How gVisor's runsc must be registered to let a sandbox open a host FIFO.
RUNSC_HOST_FIFO = "--host-fifo=open"
#: The runtimes that open host FIFOs as the host's kernel does.
NATIVE_RUNTIMES = {"runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux", "crun"}


def carries(info: dict, limits: SandboxLimits) -> bool:
    """Whether an attached container of ``limits`` gets host pipes, or the engine's streams:
    the one choice of transport, made from the engine's registration of the runtime the
    container runs under (``info``: what ``docker info`` says)."""
    if not limits.host_pipes:
        return False
    name = limits.runtime or info.get("DefaultRuntime") or "runc"
    registered = info.get("Runtimes", {}).get(name, {})
    program = Path(registered.get("path") or name).name
    if program == "runsc":
        return RUNSC_HOST_FIFO in (registered.get("runtimeArgs") or [])
    return name in NATIVE_RUNTIMES or program in NATIVE_RUNTIMES


@dataclass(frozen=True)
class HostPipes:
    """A container's two FIFOs, open in Arena on both ends: ``to_container`` is its stdin,
    ``from_container`` its stdout (file descriptors, non-blocking)."""

    folder: Path
    to_container: int
    from_container: int

    def mounts(self) -> list[containers.Mount]:
        return [containers.Mount(self.folder / "in", STDIN, writable=True),
                containers.Mount(self.folder / "out", STDOUT, writable=True)]


@contextmanager
def host_pipes(work_dir: Path) -> Iterator[HostPipes]:
    """Two fresh FIFOs in a folder of their own under ``work_dir`` (on the engine's host, as
    staging is), open and sized; closed and removed on leaving."""
    folder = work_dir / f"pipes-{uuid.uuid4().hex}"
    descriptors: list[int] = []
    try:
        try:
            folder.mkdir(parents=True, mode=0o700)  # the FIFOs are the sandbox user's; the folder is Arena's
            descriptors += [_opened_fifo(folder / "in"), _opened_fifo(folder / "out")]
        except OSError as exc:
            raise containers.SandboxError(f"cannot make the query channel's pipes in {work_dir}: {exc}") from None
        yield HostPipes(folder, *descriptors)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
        shutil.rmtree(folder, ignore_errors=True)


def _opened_fifo(path: Path) -> int:
    os.mkfifo(path)
    path.chmod(0o666)  # the sandbox user opens it through its mount; no host user reaches the folder
    descriptor = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        # past the kernel's per-user pipe budget (fs.pipe-user-pages-soft: 64 MiB of pipes for
        # a runner that is not root), the pipe keeps its default 64 KiB: slower, never wrong
        pass
    return descriptor
