"""gVisor (runsc) next to runc. A runtime the engine lacks is a clear platform error; the
tournament's containers really run under the runtime asked for; the CPU limit holds under
both; and where gVisor's guarantee differs from runc's (the pids limit) the test shows
how. The containment cases themselves run under both runtimes in test_runtime.py and
test_probes.py."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from arena.config import SandboxLimits
from arena.models import SubmissionStatus
from arena.sandbox import containers
from conftest import containers_mounting, wait_until
from hostile.tournament import IMAGE, RUNTIMES, attack_outcome, disqualify, enter

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
GVISOR = "Starting gVisor"  # the first line of gVisor's kernel log (dmesg): its kernel is the one running


def _run(tmp_path: Path, script: str, runtime: str | None, time_limit: float = 30, **limits) -> containers.RunResult:
    code, output = tmp_path / "code", tmp_path / "output"
    code.mkdir()
    output.mkdir()
    (code / "probe.py").write_text(script)
    return containers.run(IMAGE, ["python3", "probe.py"], [containers.Mount(code, "/code"), containers.Mount(output, "/out", writable=True)],
                          output=output, time_limit=time_limit, limits=SandboxLimits(**{"memory": "256m", "runtime": runtime, **limits}))


def test_a_runtime_the_engine_lacks_is_named(tmp_path):
    with pytest.raises(containers.SandboxError, match="the Docker engine has no runtime 'no-such-runtime' \\(it has .*runc"):
        _run(tmp_path, "pass\n", "no-such-runtime")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_tournament_runs_under_its_runtime(tournament, runtime):
    submission = enter(tournament, "kernel", "attack", 'dmesg 2>&1 | head -1\ncp "$1"/*.png "$2"/\n')
    try:
        assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
        logs = [submission.validation_report["log_tail"],
                *(attack_outcome(tournament.settings, submission.id, epsilon)[2] for epsilon in tournament.settings.epsilons)]
        for log in logs:
            assert (GVISOR in log) is (runtime == "runsc"), log
    finally:
        disqualify(tournament.settings, submission.id)


FORKS = """
import os, time
started = 0
try:
    while started < 500:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
except OSError as exc:
    print("refused after", started, "processes:", exc, flush=True)
print("carried on", flush=True)
"""


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_past_the_pids_limit(tmp_path, engine_runtime):
    """runc counts the submission's processes and threads: a fork past the limit fails and the
    program carries on. runsc's limit counts gVisor's own host tasks (its kernel's threads,
    its file proxy, a ptrace stub per process), not the submission's: at the limit gVisor's
    kernel cannot start the stub of the next process and panics, which ends the whole sandbox
    at once with exit code 2 (Go's) and nothing in the log. Contained both ways; see
    docs/security.md for what it means for honest submissions."""
    result = _run(tmp_path, FORKS, engine_runtime, pids=64)
    if engine_runtime != "runsc":
        assert result.exit_code == 0, result.log_tail
        assert "refused after" in result.log_tail and "carried on" in result.log_tail
    else:
        assert result.exit_code == 2, result.log_tail
        assert "refused after" not in result.log_tail and "carried on" not in result.log_tail


SPIN = "import os\nos.fork()\nwhile True:\n    pass\n"  # two processes spinning until the time limit
#: A quarter core: unlimited, the two spinners took 0.4 of a core on two cores under a load of 7.
CPUS = 0.25


def _cores_used(container) -> float:
    """Cores the container used over the engine's last sampling second, as the engine accounts
    for its cgroup (under runsc that holds gVisor's kernel too)."""
    stats = container.stats(stream=False)
    used = stats["cpu_stats"]["cpu_usage"]["total_usage"] - stats["precpu_stats"]["cpu_usage"]["total_usage"]
    elapsed = np.datetime64(stats["read"].rstrip("Z")) - np.datetime64(stats["preread"].rstrip("Z"))
    return used / elapsed.astype("timedelta64[ns]").astype(int)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_cpu_limit_holds(tmp_path, engine_runtime):
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_run, tmp_path, SPIN, engine_runtime, time_limit=12, cpus=CPUS)
        started = wait_until(lambda: [c for c in containers_mounting(tmp_path) if c.status == "running"] or running.done(),
                             60, "the spinning container to run")
        assert not running.done(), running.result()
        samples = [_cores_used(started[0]) for _ in range(2)]  # the first may hold the start-up
        result = running.result()
    assert result.timed_out, result.describe()
    assert 0 < samples[-1] <= CPUS * 1.25, samples
    assert containers_mounting(tmp_path) == []
