"""Who runs a container, and when a sweep may call it orphaned: the decision on fabricated
labels, the identity from this host's ``/proc`` (the sweeps themselves: test_sandbox.py)."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from arena.sandbox import runners
from conftest import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="needs Linux's /proc")

CREATED = 1_000_000.0
LATER = CREATED + runners.CREATION_GRACE_SECONDS + 1


def _me() -> runners.Runner:
    me = runners.this_runner()
    assert me is not None
    return me


def _orphaned(runner: runners.Runner, starts: dict[int, int], now: float = LATER, labels: dict | None = None) -> bool:
    """The decision for a container of ``runner``, made by this process where the pids that
    exist are ``starts``'s keys, started at its values."""
    return runners.orphaned(runner.labels() if labels is None else labels, CREATED, now, _me(), starts.get)


def test_this_process_is_a_runner_its_labels_name():
    me = _me()
    assert me.pid == os.getpid() and me.user == os.getuid()
    assert me.started == runners.process_start(os.getpid())
    assert runners.Runner.from_labels({"arena.deadline": "1", **me.labels()}) == me


def test_a_runner_that_lives_is_not_orphaned():
    me = _me()
    runner = replace(me, pid=4242, started=777)
    assert not _orphaned(runner, {4242: 777})
    assert not runners.orphaned(me.labels(), CREATED, LATER, me)  # this very process, read from /proc


def test_a_runner_whose_pid_is_gone_or_recycled_is_orphaned():
    runner = replace(_me(), pid=4242, started=777)
    assert _orphaned(runner, {})
    assert _orphaned(runner, {4242: 778})  # the same pid, started later: another process


def test_a_runner_this_process_cannot_see_is_never_judged():
    """Another boot (pids start over), PID namespace (another worker's container on one host
    engine) or user (hidepid) leaves the container to its deadline, even with its pid gone."""
    runner = replace(_me(), pid=4242, started=777)
    for unseen in (replace(runner, boot="another boot"), replace(runner, pid_namespace="0:1"),
                   replace(runner, user=runner.user + 1)):
        assert not _orphaned(unseen, {})


def test_a_container_just_created_is_never_judged():
    runner = replace(_me(), pid=4242, started=777)
    assert not _orphaned(runner, {}, now=CREATED + runners.CREATION_GRACE_SECONDS - 1)


def test_labels_that_name_no_runner_leave_the_container_to_its_deadline():
    runner = replace(_me(), pid=4242, started=777)
    labels = runner.labels()
    assert not _orphaned(runner, {}, labels={"arena.deadline": "1"})  # made before runners were labelled
    assert not _orphaned(runner, {}, labels={k: v for k, v in labels.items() if k != runners.STARTED})
    assert not _orphaned(runner, {}, labels={**labels, runners.PID: "not a pid"})
    assert not runners.orphaned(labels, CREATED, LATER, None, {}.get)  # this host's /proc says nothing


def test_no_such_pid_has_no_start():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert runners.process_start(pid_max + 1) is None


def test_the_start_is_read_past_a_command_name_with_spaces_and_parentheses(tmp_path):
    """The kernel's ``comm`` is the executable's name, whatever it holds."""
    odd = tmp_path / "a) b (c"
    odd.symlink_to(os.path.realpath(sys.executable))
    child = subprocess.Popen([str(odd), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        comm = Path(f"/proc/{child.pid}/comm")
        wait_until(lambda: comm.read_text().strip() == "a) b (c", 60, "the child to exec the oddly named executable")
        assert runners.process_start(child.pid) >= _me().started
    finally:
        child.communicate(timeout=60)
