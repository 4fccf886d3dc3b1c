"""The query track's transports (``arena.sandbox.pipes``): host named pipes where the
engine's registration of the runtime lets a container open them, the engine's attach
streams otherwise, each through a real engine. The protocol's own cases run over both in
tests/hostile/test_query_channel.py and tests/test_query_track.py."""

import os
import time

import pytest

from arena.config import SandboxLimits
from arena.sandbox import containers, pipes
from arena.sandbox.attached import StreamClosed, attached
from conftest import require_host_pipes

IMAGE = "arena/python:bookworm"
#: Echoes each stdin line back on stdout, says on stderr how many it echoed, then exits.
ECHO = "import sys\nn = 0\nfor line in sys.stdin.buffer:\n    sys.stdout.buffer.write(b'echo ' + line)\n" \
       "    sys.stdout.flush()\n    n += 1\n    if line == b'bye\\n': break\nprint('echoed', n, file=sys.stderr)\n"


RUNC = {"path": "runc"}
RUNSC = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}
RUNSC_FIFO = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-fifo=open"]}


@pytest.mark.parametrize("runtime, registered, default, expected", [
    (None, {"runc": RUNC}, "runc", True),
    ("runc", {"runc": RUNC}, "runc", True),
    ("runsc", {"runc": RUNC, "runsc": RUNSC}, "runc", False),
    ("runsc", {"runc": RUNC, "runsc": RUNSC_FIFO}, "runc", True),
    (None, {"runc": RUNC, "runsc": RUNSC}, "runsc", False),  # an engine whose default is gVisor
    ("gvisor", {"gvisor": RUNSC_FIFO}, "runc", True),  # runsc under another name
    ("kata", {"kata": {"path": "/usr/bin/kata-runtime"}}, "runc", False),  # a VM: no host pipes
], ids=["default-runc", "runc", "runsc", "runsc-host-fifo", "default-runsc", "renamed-runsc", "kata"])
def test_the_transport_follows_the_engine_s_registration_of_the_runtime(runtime, registered, default, expected):
    info = {"Runtimes": registered, "DefaultRuntime": default}  # as `docker info` says
    assert pipes.carries(info, SandboxLimits(runtime=runtime)) is expected
    assert pipes.carries(info, SandboxLimits(runtime=runtime, host_pipes=False)) is False


def _echo(tmp_path, limits: SandboxLimits, image: str = IMAGE, time_limit: float = 60):
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "echo.py").write_text(ECHO)
    return attached(image, ["python3", "echo.py"], [containers.Mount(code, "/code")], time_limit, limits,
                    tmp_path / "work")


@pytest.mark.parametrize("runtime", [None, "runsc"], ids=["runc", "runsc"])
def test_lines_go_both_ways_over_host_pipes_and_the_end_shows_on_the_log_stream(tmp_path, engine, runtime):
    require_host_pipes(runtime)
    with _echo(tmp_path, SandboxLimits(memory="256m", runtime=runtime)) as box:
        assert box.channel is not None
        folder = box.channel.folder
        assert sorted(p.name for p in folder.iterdir()) == ["in", "out"] and folder.stat().st_mode & 0o777 == 0o700
        for k in range(20):
            box.send(b"line %d\n" % k)
            assert box.read_line(time.monotonic() + 30, 100) == b"echo line %d" % k
        box.send(b"bye\n")
        assert box.read_line(time.monotonic() + 30, 100) == b"echo bye"  # written just before it exited
        with pytest.raises(StreamClosed):
            box.read_line(time.monotonic() + 30, 100)
        run = box.finish(time.monotonic() + 30)
    assert run.exit_code == 0 and run.log_tail == "echoed 21\n"
    assert not folder.exists()  # the pipes go with the container


def test_without_host_pipes_the_streams_carry_the_same_lines(tmp_path, engine):
    with _echo(tmp_path, SandboxLimits(memory="256m", host_pipes=False)) as box:
        assert box.channel is None
        box.send(b"bye\n")
        assert box.read_line(time.monotonic() + 30, 100) == b"echo bye"
        run = box.finish(time.monotonic() + 30)
    assert run.exit_code == 0 and run.log_tail == "echoed 1\n"


def test_a_container_that_never_reads_costs_arena_its_deadline_not_a_blocked_write(tmp_path, engine):
    """A query far larger than the pipe, to a container that sleeps: the write gives up at the
    container's deadline, and a container that has exited is StreamClosed at once."""
    code = tmp_path / "code"
    code.mkdir()
    limits = SandboxLimits(memory="256m")
    with attached(IMAGE, ["sleep", "60"], [containers.Mount(code, "/code")], 3, limits, tmp_path / "work") as box:
        assert box.channel is not None
        started = time.monotonic()
        with pytest.raises(StreamClosed, match="did not read its stdin in time"):
            box.send(bytes(8 * pipes.PIPE_BYTES))
        assert time.monotonic() - started < 30  # a deadline: the write did not block past it
        assert box.finish(time.monotonic()).timed_out
    with attached(IMAGE, ["true"], [containers.Mount(code, "/code")], 60, limits, tmp_path / "work") as box:
        with pytest.raises(StreamClosed):
            box.read_line(time.monotonic() + 30, 100)  # its end, from the log stream
        with pytest.raises(StreamClosed, match="exited"):
            box.send(bytes(8 * pipes.PIPE_BYTES))


def test_an_image_without_a_shell_keeps_the_streams(tmp_path, engine, shell_less_image):
    with _echo(tmp_path, SandboxLimits(memory="256m"), shell_less_image) as box:
        assert box.channel is None
        box.send(b"bye\n")
        assert box.read_line(time.monotonic() + 30, 100) == b"echo bye"
        assert box.finish(time.monotonic() + 30).exit_code == 0
    assert not any(p.name.startswith("pipes-") for p in (tmp_path / "work").iterdir())


def test_no_pipe_of_another_container_is_in_reach(tmp_path, engine):
    """Two containers at once: each sees its own two pipes, as single files at fixed paths,
    and nothing of the folder that holds them or of the other's."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "look.py").write_text("import os, sys\nprint(sorted(os.listdir('/channel')), file=sys.stderr)\n"
                                  "print(os.path.exists('/channel/../pipes'), file=sys.stderr)\n")
    limits = SandboxLimits(memory="256m")
    mounts = [containers.Mount(code, "/code")]
    with attached(IMAGE, ["python3", "look.py"], mounts, 60, limits, tmp_path / "work") as first, \
            attached(IMAGE, ["python3", "look.py"], mounts, 60, limits, tmp_path / "work") as second:
        assert first.channel.folder != second.channel.folder
        runs = [box.finish(time.monotonic() + 30) for box in (first, second)]
    assert [run.log_tail for run in runs] == ["['in', 'out']\nFalse\n"] * 2
    assert os.listdir(tmp_path / "work") == []
