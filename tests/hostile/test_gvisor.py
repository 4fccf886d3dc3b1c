"""gVisor (runsc), the optional stronger sandbox: a runtime the engine lacks is a clear
platform error; where the engine has runsc, hostile code is contained under it too."""

from pathlib import Path

import pytest

from arena.config import SandboxLimits
from arena.sandbox import containers
from hostile.tournament import IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
RUNSC = "runsc"


def _run(tmp_path: Path, script: str, runtime: str) -> containers.RunResult:
    code, output = tmp_path / "code", tmp_path / "output"
    code.mkdir()
    output.mkdir()
    (code / "probe.sh").write_text(script)
    return containers.run(IMAGE, ["sh", "probe.sh"], [containers.Mount(code, "/code"), containers.Mount(output, "/out", writable=True)],
                       output=output, time_limit=5, limits=SandboxLimits(memory="256m", pids=50, runtime=runtime))


def test_a_runtime_the_engine_lacks_is_named(tmp_path):
    with pytest.raises(containers.SandboxError, match="the Docker engine has no runtime 'no-such-runtime' \\(it has .*runc"):
        _run(tmp_path, "true\n", "no-such-runtime")


def test_hostile_code_under_gvisor(tmp_path):
    if RUNSC not in containers.docker_client().info().get("Runtimes", {}):
        pytest.skip("this engine has no runsc runtime (gVisor); see docs/security.md to add it")
    result = _run(tmp_path, "dmesg | head -1; echo interfaces $(ls /sys/class/net)\nb() { b | b & }; b\nsleep 600\n", RUNSC)
    assert "Starting gVisor" in result.log_tail  # gVisor's own kernel log: the runtime was really used
    assert "interfaces lo\n" in result.log_tail
    assert result.timed_out
