"""Hostile parties of the query track (docs/query-track.md): an attack that floods queries
past its budget, names an image it was not given, sends an oversized or malformed query,
or tries to reach the defense another way (the network, a planted file, /proc); a served
defense that answers garbage. Each is contained and recorded with its reason,
and the attack's outputs are scored all the same. Each case runs over both transports of
the channel (``arena.sandbox.pipes``): host pipes under runc and under runsc, and the
engine's attach streams.
"""

import pytest
from sqlalchemy import select

from arena import actions
from arena.config import SandboxLimits
from arena.db import transaction
from arena.intake.dry_run import validate
from arena.intake.metadata import Metadata
from arena.models import Image, SubmissionStatus
from arena.sandbox import containers
from arena.sandbox.attached import attach_options
from arena.sandbox.attack_run import CleanInput
from arena.sandbox.pipes import HostPipes
from arena.sandbox.query_run import QueryTask, execute_query_attack
from conftest import SAMPLES, make_settings, require_host_pipes
from factories import NAMING_KEY, submit_folder, synth_dataset, write_submission

#: Copies its inputs as outputs first, then: 40 one-image queries on its first image (budget 3),
#: one on a name it was not given, one of 101 images; it logs every distinct answer.
FLOODER = '''
import os, shutil, sys
from pathlib import Path

def send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]

def ask(header, images=1):
    send(header.encode() + b"\\n" + bytes(299 * 299 * 3) * images)
    return sys.stdin.buffer.readline().decode().strip()

names = sorted(p.name for p in Path(sys.argv[1]).glob("*.png"))
for name in names:
    shutil.copy(Path(sys.argv[1]) / name, Path(sys.argv[2]) / name)
answers = [ask(f"query {names[0]} 1") for _ in range(40)]
answers.append(ask("query not-mine.png 1"))
send(f"query {names[1]} 101\\n".encode())
answers.append(sys.stdin.buffer.readline().decode().strip())
for answer in dict.fromkeys(answers):
    print("answer:", answer, file=sys.stderr)
'''

#: Copies its inputs as outputs, then tries to reach the defense another way than the channel:
#: a socket to the addresses a container on the engine's bridge would have, a file planted in
#: its inputs and in /tmp for a neighbour to read, the other processes' /proc; logs what it
#: got, then asks one query through the channel.
PROWLER = '''
import os, shutil, socket, sys
from pathlib import Path

def send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]

names = sorted(p.name for p in Path(sys.argv[1]).glob("*.png"))
for name in names:
    shutil.copy(Path(sys.argv[1]) / name, Path(sys.argv[2]) / name)
for host in ("172.17.0.1", "172.17.0.2", "172.17.0.3", "10.0.0.1"):
    try:
        socket.create_connection((host, 80), timeout=1).close()
        print("probe: reached", host, file=sys.stderr)
    except OSError as exc:
        print("probe: no way to", host, type(exc).__name__, file=sys.stderr)
try:
    (Path(sys.argv[1]) / "planted.txt").write_text("for the defense")
    print("probe: planted in its inputs", file=sys.stderr)
except OSError:
    print("probe: its inputs are read-only", file=sys.stderr)
Path("/tmp/planted.txt").write_text("for the defense")
commands = []
for pid in (p for p in os.listdir("/proc") if p.isdigit()):
    try:
        commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
print("probe: sees the defense's process" if any("serve" in c for c in commands) else
      f"probe: sees {len(commands)} process(es), none of the defense's", file=sys.stderr)
send(f"query {names[0]} 1\\n".encode() + bytes(299 * 299 * 3))
print("answer:", sys.stdin.buffer.readline().decode().strip(), file=sys.stderr)
'''

#: Copies its first input as its output, makes its second output a named pipe (which Arena
#: would wait on forever, were it to open it), then asks one query through the channel.
PIPER = '''
import os, shutil, sys
from pathlib import Path

names = sorted(p.name for p in Path(sys.argv[1]).glob("*.png"))
shutil.copy(Path(sys.argv[1]) / names[0], Path(sys.argv[2]) / names[0])
os.mkfifo(Path(sys.argv[2]) / names[1])
print("probe: made a fifo output", file=sys.stderr)
view = memoryview(f"query {names[0]} 1\\n".encode() + bytes(299 * 299 * 3))
while view:
    view = view[os.write(1, view):]
print("answer:", sys.stdin.buffer.readline().decode().strip(), file=sys.stderr)
'''

#: A defense whose batch entry point is honest but whose served answers depend on history:
#: each label is one more than the last.
STATEFUL = """import sys
from pathlib import Path
if len(sys.argv) > 1:
    Path(sys.argv[2]).write_text("".join(f"{p.name},1\\n" for p in Path(sys.argv[1]).glob("*.png")))
    sys.exit()
print("ready", flush=True)
answered = 0
for header in sys.stdin.buffer:
    count = int(header.split()[1])
    sys.stdin.buffer.read(count * 299 * 299 * 3)
    print(" ".join(str(1 + (answered + i) % 1000) for i in range(count)), flush=True)
    answered += count
"""

#: Served defenses that say ready, then hang on the first query, or exit.
HANGS = "#!/bin/sh\necho ready\nread header\nsleep 600\n"
CRASHES = "#!/bin/sh\necho ready\nread header\nexit 3\n"

#: A served defense that says ready, then answers garbage.
GARBAGE = "import sys\nprint('ready', flush=True)\nfor line in sys.stdin.buffer:\n    print('cat dog', flush=True)\n"


@pytest.fixture(params=[(None, True), ("runsc", True), (None, False)], ids=["runc-pipes", "runsc-pipes", "streams"])
def sandbox(request, engine) -> SandboxLimits:
    """The containers' runtime and the channel's transport."""
    runtime, host_pipes = request.param
    if host_pipes:
        require_host_pipes(runtime)
    return SandboxLimits(memory="512m", runtime=runtime, host_pipes=host_pipes)


def _settings(tmp_path, sandbox: SandboxLimits):
    return make_settings(tmp_path / "arena", sandbox=sandbox, query_seconds_per_image=10.0, serving_start_seconds=20.0)


def _inputs(settings) -> list[CleanInput]:
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        return [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in session.scalars(select(Image).order_by(Image.id))]


def _python_folder(folder, kind: str, script: str, **entry_points):
    files = {name: "#!/bin/sh\nexec python3 main.py \"$@\"\n" for name in ["run.sh", *entry_points.values()]}
    folder = write_submission(folder, {"type": kind, "container": "arena/python:bookworm", "entry_point": "run.sh",
                                       **entry_points}, {**files, "main.py": script})
    for name in entry_points.values():
        (folder / name).chmod(0o755)
    return folder


def _python(folder, kind: str, script: str, **entry_points):
    folder = _python_folder(folder, kind, script, **entry_points)
    return Metadata.read(folder).code(folder)


def test_a_flood_a_stranger_s_image_and_an_oversized_query_are_refused_and_recorded(tmp_path, sandbox):
    settings = _settings(tmp_path, sandbox)
    attack = _python(tmp_path / "flooder", "query_attack", FLOODER)
    decoder = Metadata.read(SAMPLES / "decoder").code(SAMPLES / "decoder")
    outcome = execute_query_attack(settings, QueryTask(attack, decoder, _inputs(settings), [4], 3, 5.0, NAMING_KEY))
    log = outcome.attack_run.log_tail
    assert "answer: refused budget: 1 queries asked, 0 of 3 left for" in log
    assert "answer: refused unknown image not-mine.png" in log
    assert "answer: closed a query of 101 images: N must lie in 1..100" in log
    assert outcome.problems[0] == "the query channel closed: a query of 101 images: N must lie in 1..100"
    counts = sorted((r.queries, r.refused) for r in outcome.results)
    assert counts == [(0, 0), (3, 37)]
    assert outcome.defense_failure is None
    assert all(not r.missing and r.label is not None for r in outcome.results)  # scored all the same


def test_an_attack_that_tries_to_reach_the_defense_another_way_finds_nothing_and_the_cells_stand(tmp_path, sandbox):
    """No network (not the bridge's addresses), read-only inputs, its own /tmp and process
    tree: each try fails inside the attack's own container, its log records it, and the
    defense answers and scores both images as for any attack."""
    settings = _settings(tmp_path, sandbox)
    attack = _python(tmp_path / "prowler", "query_attack", PROWLER)
    decoder = Metadata.read(SAMPLES / "decoder").code(SAMPLES / "decoder")
    outcome = execute_query_attack(settings, QueryTask(attack, decoder, _inputs(settings), [4], 3, 5.0, NAMING_KEY))
    log = outcome.attack_run.log_tail
    assert outcome.attack_run.succeeded, log
    assert "reached" not in log and log.count("probe: no way to") == 4
    assert "probe: its inputs are read-only" in log and "none of the defense's" in log, log
    assert "answer: labels " in log
    assert outcome.defense_failure is None and outcome.problems == []
    assert sorted((r.queries, r.refused, r.missing) for r in outcome.results) == [(0, 0, False), (1, 0, False)]
    assert all(r.label is not None and r.labels_at[4] is not None for r in outcome.results)
    assert "planted" not in outcome.defense_log


def test_an_output_made_a_named_pipe_counts_as_missing_and_nothing_waits_on_it(tmp_path, sandbox):
    """Host pipes let a sandbox open FIFOs (runsc's --host-fifo=open): one the attack makes in
    its own outputs is never opened by Arena, which reads plain files only."""
    settings = _settings(tmp_path, sandbox)
    attack = _python(tmp_path / "piper", "query_attack", PIPER)
    decoder = Metadata.read(SAMPLES / "decoder").code(SAMPLES / "decoder")
    outcome = execute_query_attack(settings, QueryTask(attack, decoder, _inputs(settings), [4], 3, 5.0, NAMING_KEY))
    log = outcome.attack_run.log_tail
    assert outcome.attack_run.succeeded and "probe: made a fifo output" in log and "answer: labels " in log, log
    assert sorted(r.missing for r in outcome.results) == [False, True]
    assert outcome.problems == ["1 of 2 outputs missing or unreadable: scored as the clean image"]


def test_a_defense_that_answers_garbage_fails_the_job_s_labels_not_the_platform(tmp_path, sandbox):
    settings = _settings(tmp_path, sandbox)
    defense = _python(tmp_path / "garbage", "defense", GARBAGE, serving_entry_point="serve.sh")
    attack = Metadata.read(SAMPLES / "random_search").code(SAMPLES / "random_search")
    outcome = execute_query_attack(settings, QueryTask(attack, defense, _inputs(settings), [4], 5, 5.0, NAMING_KEY))
    assert outcome.defense_failure == "answered 2 label(s) to a query of 1 image(s): b'cat dog'"
    log = outcome.attack_run.log_tail  # the sample logs what it was refused: never the defense's own words
    assert ": defense failed: no query will be answered" in log and "cat dog" not in log
    assert outcome.attack_run.succeeded
    assert all(r.label is None and r.labels_at == {4: None} and r.queries == 0 for r in outcome.results)


def test_a_served_defense_that_answers_by_history_is_flagged_by_its_dry_run(tmp_path, sandbox):
    settings = _settings(tmp_path, sandbox)
    defense = _python(tmp_path / "stateful", "defense", STATEFUL, serving_entry_point="serve.sh")
    _inputs(settings)
    with transaction(settings) as session:
        report = validate(settings, defense, list(session.scalars(select(Image).order_by(Image.id))), NAMING_KEY)
    assert report.passed and report.serving.differing == 2 and report.serving.failure is None
    assert "answered 2 of 2 images differently" in report.notes[-1]


def test_a_round_that_refuses_stateful_served_defenses_rejects_one_at_intake(tmp_path, sandbox):
    """The round setting, through intake: the same defense is rejected, saying why."""
    settings = _settings(tmp_path, sandbox)
    _inputs(settings)
    actions.update_round(settings, "synthetic", refuse_stateful_defenses=True)
    folder = _python_folder(tmp_path / "stateful", "defense", STATEFUL, serving_entry_point="serve.sh")
    submission = submit_folder(settings, folder, tmp_path)
    assert submission.status is SubmissionStatus.REJECTED
    assert submission.validation_report["serving"]["differing"] == 2
    assert any("answered 2 of 2 images differently" in problem and "refuses stateful served defenses" in problem
               for problem in submission.validation_report["problems"]), submission.validation_report["problems"]


@pytest.mark.parametrize("script, reason", [(HANGS, "gave no labels for 1 image(s): no answer in time"),
                                            (CRASHES, "gave no labels for 1 image(s): its stdout is closed")],
                         ids=["hangs", "crashes"])
def test_a_served_defense_that_hangs_or_crashes_is_recorded_and_the_attack_still_scored(tmp_path, sandbox, script, reason):
    settings = _settings(tmp_path, sandbox)
    folder = write_submission(tmp_path / "broken", {"type": "defense", "container": "arena/python:bookworm",
                                                    "entry_point": "serve.sh", "serving_entry_point": "serve.sh"},
                              {"serve.sh": script})
    attack = Metadata.read(SAMPLES / "random_search").code(SAMPLES / "random_search")
    task = QueryTask(attack, Metadata.read(folder).code(folder), _inputs(settings), [4], 5, 0.5, NAMING_KEY)
    outcome = execute_query_attack(settings, task)
    assert outcome.defense_failure == reason
    assert outcome.attack_run.succeeded and outcome.problems == []
    assert [(r.missing, r.label, r.queries) for r in outcome.results] == [(False, None, 0)] * 2


def test_the_query_track_s_containers_run_under_every_limit_of_the_others(tmp_path):
    """No network, read-only, non-root, no capabilities, the limits and the deadline label: the
    attached containers' options are the batch runs' own, plus no engine log and either an
    open stdin (the streams) or their two pipes mounted (host pipes), nothing else writable."""
    limits = SandboxLimits(memory="256m", runtime="runsc")
    mounts = [containers.Mount(tmp_path, "/code")]
    batch = containers.run_options(limits, mounts, 60)
    streams = attach_options(limits, mounts, 60)
    channel = HostPipes(tmp_path / "pipes", 0, 1)
    piped = attach_options(limits, mounts, 60, channel)
    same = {key: value for key, value in batch.items() if key not in ("log_config", "labels")}
    assert {key: value for key, value in streams.items() if key not in ("stdin_open", "log_config", "labels")} == same
    assert {key: value for key, value in piped.items() if key not in ("stdin_open", "log_config", "labels", "volumes")} \
        == {key: value for key, value in same.items() if key != "volumes"}
    assert piped["volumes"] == {**batch["volumes"], str((tmp_path / "pipes" / "in").resolve()): {"bind": "/channel/in", "mode": "rw"},
                                str((tmp_path / "pipes" / "out").resolve()): {"bind": "/channel/out", "mode": "rw"}}
    for options in (streams, piped):
        assert options["network_mode"] == "none" and options["read_only"] and options["cap_drop"] == ["ALL"]
        assert options["runtime"] == "runsc" and options["log_config"]["Type"] == "none"
        assert containers.LABEL in options["labels"]  # so that sweep() kills it should its runner die
    assert streams["stdin_open"] and not piped["stdin_open"]
