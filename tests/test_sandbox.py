"""The sandbox against a real Docker engine: each limit is tried by code that breaks it."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from arena.config import SandboxLimits
from arena.sandbox import containers, runners
from conftest import containers_mounting, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
IMAGE = "arena/python:bookworm"


def _run(tmp_path: Path, script: str, time_limit: float = 30, **limits) -> tuple[containers.RunResult, Path]:
    code, output = tmp_path / "code", tmp_path / "output"
    code.mkdir(parents=True, exist_ok=True)
    output.mkdir(exist_ok=True)
    (code / "probe.py").write_text(script)
    result = containers.run(
        IMAGE,
        ["python3", "probe.py"],
        [containers.Mount(code, "/code"), containers.Mount(output, "/out", writable=True)],
        output=output,
        time_limit=time_limit,
        limits=SandboxLimits(**{"memory": "256m", **limits}),
    )
    return result, output


def test_no_network_and_only_loopback(tmp_path):
    result, _ = _run(tmp_path, """
import os, socket
print(sorted(os.listdir('/sys/class/net')))
try:
    socket.create_connection(('1.1.1.1', 53), timeout=3)
    print('CONNECTED')
except OSError as exc:
    print('refused', exc)
try:
    socket.getaddrinfo('deb.debian.org', 80)
    print('RESOLVED')
except OSError as exc:
    print('no dns', exc)
""")
    assert result.exit_code == 0
    assert "['lo']" in result.log_tail
    assert "CONNECTED" not in result.log_tail and "RESOLVED" not in result.log_tail


def test_non_root_no_capabilities_read_only_everywhere_but_output(tmp_path):
    result, output = _run(tmp_path, """
import os
print('uid', os.getuid())
print([l for l in open('/proc/self/status') if l.startswith(('CapEff', 'NoNewPrivs'))])
for path in ['/etc/evil', '/code/evil', '/usr/evil']:
    try:
        open(path, 'w')
        print('WROTE', path)
    except OSError:
        print('denied', path)
open('/out/ok', 'w').write('fine')
open('/tmp/scratch', 'w').write('fine')
""")
    assert result.exit_code == 0, result.log_tail
    assert "uid 65534" in result.log_tail
    assert "CapEff:\\t0000000000000000" in result.log_tail and "NoNewPrivs:\\t1" in result.log_tail
    assert "WROTE" not in result.log_tail
    assert (output / "ok").read_text() == "fine"


def test_time_limit_kills_and_the_container_is_removed(tmp_path):
    result, _ = _run(tmp_path, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n", time_limit=2)
    assert result.timed_out and result.exit_code is None
    assert result.seconds < 600  # killed, not ended by its own sleep (how soon is no business of a test)
    assert containers_mounting(tmp_path) == []


def test_memory_and_process_limits(tmp_path):
    memory, _ = _run(tmp_path, "x = bytearray(600 * 2**20)\nx[::4096] = b'1' * len(x[::4096])\nprint('ALLOCATED')\n")
    assert "ALLOCATED" not in memory.log_tail and memory.exit_code == 137
    fork, _ = _run(tmp_path, """
import os
children = 0
try:
    for _ in range(500):
        if os.fork() == 0:
            import time; time.sleep(5); os._exit(0)
        children += 1
except OSError as exc:
    print('stopped at', children, exc)
""", pids=50)
    assert "stopped at" in fork.log_tail


def test_output_size_and_file_count_are_bounded(tmp_path):
    big, _ = _run(tmp_path / "a", "f = open('/out/big', 'wb')\nwhile True:\n    f.write(b'0' * 2**20); f.flush()\n",
                  max_output_bytes=20 * 2**20, time_limit=60)
    assert big.killed_reason and "output grew past" in big.killed_reason
    many, _ = _run(tmp_path / "b", "import time\nfor i in range(100000):\n    open(f'/out/f{i}', 'w')\ntime.sleep(60)\n",
                   max_output_files=500, time_limit=60)
    assert many.killed_reason and "more than 500 files" in many.killed_reason


def test_a_missing_image_is_a_platform_error(tmp_path):
    with pytest.raises(containers.SandboxError, match="not on this Docker engine"):
        containers.run("arena/does-not-exist:1", ["true"], [], output=tmp_path, time_limit=5, limits=SandboxLimits())


def _status(container) -> str | None:
    """The container's state now, None once it is removed."""
    try:
        container.reload()
    except docker.errors.NotFound:
        return None
    return container.status


def test_sweep_ends_what_a_dead_runner_left_behind(tmp_path):
    """Other tests' runners sweep the same engine meanwhile, so the overdue container may be
    killed or removed by theirs: what this sweep guarantees is the state after it returns."""
    client = containers.docker_client()
    overdue = client.containers.run(IMAGE, ["sleep", "600"], labels={containers.LABEL: "0"}, detach=True, network_mode="none")
    in_time = client.containers.run(IMAGE, ["sleep", "600"], labels={containers.LABEL: "9999999999"}, detach=True, network_mode="none")
    try:
        containers.sweep()
        assert _status(overdue) in ("exited", None)
        assert _status(in_time) == "running"
        containers.sweep()  # the killed one is past deadline + grace: removed
        assert _status(overdue) is None
        assert _status(in_time) == "running"
    finally:
        for container in (overdue, in_time):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass  # swept


def test_a_sweep_at_the_deadline_leaves_the_time_out_to_the_container_s_own_runner(tmp_path):
    """Runners on one host sweep whenever they start: one that killed a live run at its
    deadline had its owner record a plain exit 137 (a SIGKILL) instead of the time-out."""
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_run, tmp_path, "import time; time.sleep(600)", 2)
        while not running.done():
            containers.sweep()
        result, _ = running.result()
    assert result.timed_out and result.exit_code is None, result


#: A runner: it starts a container as every run does (``run_options``: its labels name this
#: runner), far from its deadline, mounting the folder it is given (so that the test finds it),
#: says so in that folder, and waits to be killed.
RUNNER = f"""
import sys, time
from pathlib import Path
from arena.config import SandboxLimits
from arena.sandbox import containers
folder = Path(sys.argv[1])
options = containers.run_options(SandboxLimits(memory="256m"), [containers.Mount(folder, "/code")], time_limit=36000)
container = containers.docker_client().containers.create({IMAGE!r}, ["sleep", "600"], **options)
container.start()
(folder / "started").write_text(container.id)
time.sleep(600)
"""


def _remove_mounting(folder: Path) -> None:
    """The containers of this test (those mounting its folder), whatever a sweep left of them."""
    for container in containers_mounting(folder):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # swept meanwhile


def test_a_sweep_ends_at_once_the_container_of_a_killed_runner_and_leaves_a_live_one_s(tmp_path, monkeypatch):
    """A runner killed with SIGKILL has its container killed and removed by the next sweep, not
    ten hours later at its deadline; while the runner lives, sweeps leave it alone."""
    monkeypatch.setattr(runners, "CREATION_GRACE_SECONDS", 0)  # judged once made (the grace: test_runners.py)
    folder = tmp_path / "code"
    folder.mkdir()
    log = tmp_path / "runner.log"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(folder)], stdin=subprocess.DEVNULL,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)

    def started() -> str | None:
        assert runner.poll() is None, log.read_text()
        return (folder / "started").exists() and (folder / "started").read_text()

    try:
        container = containers.docker_client().containers.get(wait_until(started, 120, "the runner to start its container"))
        containers.sweep()
        assert _status(container) == "running"
        runner.kill()
        runner.wait(timeout=60)
        containers.sweep()
        assert _status(container) is None
    finally:
        runner.kill()
        runner.wait(timeout=60)
        _remove_mounting(tmp_path)


def test_a_sweep_judges_only_the_runners_it_can_see(tmp_path, monkeypatch):
    """A runner on another boot, in another PID namespace (a worker in a container of its own
    against the host's engine) or of another user may be alive where this process cannot
    look: its container is left to its deadline. A pid of this namespace that now names
    another process (the runner's pid recycled) is a runner gone."""
    monkeypatch.setattr(runners, "CREATION_GRACE_SECONDS", 0)
    me = runners.this_runner()
    no_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    unseen = [replace(me, boot="another boot", pid=no_pid), replace(me, pid_namespace="0:1", pid=no_pid),
              replace(me, user=me.user + 1, pid=no_pid)]
    recycled = replace(me, started=me.started + 1)  # this test's pid, started at another time
    client = containers.docker_client()

    def start(runner: runners.Runner, deadline: str):
        return client.containers.run(IMAGE, ["sleep", "600"], labels={containers.LABEL: deadline, **runner.labels()},
                                     volumes={str(tmp_path): {"bind": "/code", "mode": "ro"}},
                                     detach=True, network_mode="none")

    try:
        left = [start(runner, "9999999999") for runner in unseen]
        overdue = start(unseen[0], "0")
        gone = start(recycled, "9999999999")
        containers.sweep()
        assert [_status(container) for container in left] == ["running"] * len(unseen)
        assert _status(overdue) in ("exited", None)  # the deadline, the backstop, still holds
        assert _status(gone) is None
    finally:
        _remove_mounting(tmp_path)


def test_sweeps_at_once_remove_an_orphan_once_and_none_fails(tmp_path, monkeypatch):
    """Workers on a host sweep whenever they start a job, so several may remove one orphan at
    once: the engine refuses all but the first (409 Conflict), which is no sweep's failure."""
    monkeypatch.setattr(runners, "CREATION_GRACE_SECONDS", 0)
    me = runners.this_runner()
    gone = replace(me, started=me.started + 1)
    orphan = containers.docker_client().containers.run(
        IMAGE, ["sleep", "600"], labels={containers.LABEL: "9999999999", **gone.labels()},
        volumes={str(tmp_path): {"bind": "/code", "mode": "ro"}}, detach=True, network_mode="none")
    try:
        with ThreadPoolExecutor(4) as pool:
            sweeps = [pool.submit(containers.sweep) for _ in range(4)]
            for sweep in sweeps:
                sweep.result(timeout=120)
        assert _status(orphan) is None
    finally:
        _remove_mounting(tmp_path)
