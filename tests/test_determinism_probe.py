"""The determinism probe's second run, made in the dry run's container, through a real engine.

One container start per intake instead of two (counted at the SDK's ``Container.start``), and
the probe still means what it meant with a container per run: a submission whose outputs
differ between two runs on the same inputs is flagged; one that differs only by what a run
left behind (processes, /tmp, /dev/shm, its outputs), which a fresh container would not
hold, is not. An image without /bin/sh gets a container per run, as before.
"""

from pathlib import Path

import pytest
from docker.models.containers import Container

from arena.config import SandboxLimits, Settings
from arena.models import SubmissionStatus
from arena.sandbox import containers
from conftest import SAMPLES, make_settings, require_runtime
from factories import submit_folder, synth_dataset, write_submission

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

IMAGE = "arena/python:bookworm"

#: Every image answered with a label drawn from the OS: another answer on every run.
RANDOM_DEFENSE = """
import os, sys
with open(sys.argv[2], "w") as out:
    for name in sorted(os.listdir(sys.argv[1])):
        out.write(f"{name},{1 + int.from_bytes(os.urandom(2), 'big') % 1000}\\n")
"""

#: Answers 1 everywhere in a fresh container; a later run in the same one that finds what this
#: run left (a file in /tmp or /dev/shm, an earlier result.csv, a process of this run still
#: listening on an abstract socket, which the end of a container kills) answers otherwise.
LEAVES_TRACES = """
import os, socket, subprocess, sys, time
inputs, result = sys.argv[1], sys.argv[2]
ADDRESS = "\\0arena-test-leftover"

def listening():
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(ADDRESS) == 0

seen = [os.path.exists(p) for p in ("/tmp/seen", "/dev/shm/seen", result)] + [listening()]
label = 1 + sum(2**i for i, s in enumerate(seen) if s)
for path in ("/tmp/seen", "/dev/shm/seen"):
    open(path, "w").close()
with open(result, "w") as out:
    out.writelines(f"{name},{label}\\n" for name in sorted(os.listdir(inputs)))
leftover = "import socket, time\\ns = socket.socket(socket.AF_UNIX)\\ns.bind('\\\\0arena-test-leftover')\\ns.listen()\\ntime.sleep(600)"
subprocess.Popen([sys.executable, "-c", leftover], start_new_session=True)
while not listening():
    time.sleep(0.02)
"""


@pytest.fixture
def small(tmp_path) -> Settings:
    settings = make_settings(tmp_path / "arena", seconds_per_image=5.0, epsilons=[16])
    synth_dataset(settings, 10, batch_size=10)
    return settings


@pytest.fixture
def starts(monkeypatch) -> list[str]:
    """The images of the containers this process starts, in order."""
    started: list[str] = []
    start = Container.start

    def counted(container, *args, **kwargs):
        started.append(container.attrs["Config"]["Image"])
        return start(container, *args, **kwargs)

    monkeypatch.setattr(Container, "start", counted)
    return started


def _python_defense(tmp_path: Path, name: str, script: str, image: str = IMAGE) -> Path:
    """A defense in ``image`` whose entry point is the Python ``script`` itself (no shell needed)."""
    return write_submission(tmp_path / name, {"type": "defense", "container": image, "entry_point": "run_defense.py"},
                            {"run_defense.py": "#!/usr/bin/python3\n" + script})


@pytest.mark.parametrize("sample", ["smoothed_decoder", "random_noise"])  # no serving entry point: it starts one more
def test_a_dry_run_and_its_probe_start_one_container(small, tmp_path, starts, sample):
    submission = submit_folder(small, SAMPLES / sample, tmp_path)
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    probe = submission.validation_report["determinism"]
    assert (probe["images"], probe["differing"], probe["share"]) == (10, 0, 0)
    assert probe["seconds"] > 0 and submission.validation_report["seconds"] > 0
    assert len(starts) == 1


def test_outputs_that_differ_between_two_runs_in_one_container_are_flagged(small, tmp_path, starts):
    submission = submit_folder(small, _python_defense(tmp_path, "dice", RANDOM_DEFENSE), tmp_path)
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    assert submission.validation_report["determinism"]["differing"] >= 9  # two draws of 1000 may meet once
    assert submission.nondeterministic_share >= 0.9
    assert len(starts) == 1


@pytest.mark.parametrize("runtime", [None, "runsc"])
def test_the_second_run_finds_the_container_as_a_fresh_one(small, tmp_path, starts, runtime):
    if runtime:
        require_runtime(runtime)
        small = small.model_copy(update={"sandbox": small.sandbox.model_copy(update={"runtime": runtime})})
    submission = submit_folder(small, _python_defense(tmp_path, "traces", LEAVES_TRACES), tmp_path)
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    assert submission.validation_report["determinism"]["differing"] == 0, submission.validation_report
    assert len(starts) == 1


def test_an_image_without_a_shell_gets_a_container_per_run(small, tmp_path, starts, shell_less_image):
    submission = submit_folder(small, _python_defense(tmp_path, "dice", RANDOM_DEFENSE, shell_less_image), tmp_path)
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    assert submission.nondeterministic_share >= 0.9
    assert len(starts) == 3 and starts[0] == starts[1] == starts[2]  # the one that could not start, then one per run


def _resident(tmp_path: Path, **limits):
    output = tmp_path / "out"
    output.mkdir()
    return containers.resident(IMAGE, [containers.Mount(output, "/out", writable=True)], output, 20,
                               SandboxLimits(**{"memory": "256m", **limits})), output


def test_a_resident_container_keeps_every_limit_of_a_run(tmp_path):
    box, output = _resident(tmp_path, max_output_bytes=2**20)
    with box as resident:
        first = resident.run(["python3", "-c", "import os; print('uid', os.getuid()); open('/out/a', 'w').write('a')"], 5)
        assert first.succeeded and "uid 65534" in first.log_tail and (output / "a").read_text() == "a"
        second = resident.run(["sh", "-c", "echo second; exit 3"], 5)
        assert second.exit_code == 3 and second.log_tail == "second\n"  # its own log, not the first run's
        flood = resident.run(["sh", "-c", "head -c 50000000 /dev/zero > /out/big; sleep 30"], 10)
        assert flood.killed_reason and "output grew past" in flood.killed_reason and flood.exit_code is None
    (tmp_path / "again").mkdir()
    box, _ = _resident(tmp_path / "again")
    with box as resident:
        hang = resident.run(["sleep", "30"], 1.0)
        assert hang.timed_out and hang.exit_code is None and hang.seconds < 10


def test_a_command_whose_container_ended_under_it_reports_the_containers_exit_code(tmp_path, monkeypatch):
    """A code of 128 or more is the command's own while its container lives on. When the
    container ends under it (gVisor ends its sandbox at the pids limit or on an OOM kill), Docker
    may report the command's exec as 128, its status lost with the sandbox: the run reports the
    container's code, as a run in a container of its own would (hostile/test_runtime.py's fork bomb)."""
    box, _ = _resident(tmp_path)
    with box as resident:
        assert resident.run(["sh", "-c", "exit 130"], 10).exit_code == 130
        api = resident.container.client.api
        inspect = api.exec_inspect

        def ended_under_it(exec_id: str) -> dict:
            resident.container.kill()  # SIGKILL to its first process: the container's exit code 137
            return {**inspect(exec_id), "Running": False, "ExitCode": 128}

        monkeypatch.setattr(api, "exec_inspect", ended_under_it)
        assert resident.run(["sleep", "30"], 10).exit_code == 137
