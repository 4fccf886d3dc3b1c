"""A spy attack that tries the network and the host's files, then behaves like ``noop`` so
that it is accepted and runs in the tournament too. Every attempt must fail, in the dry run
and in every tournament run, while live targets (real Redis and PostgreSQL, a web port)
wait on the host."""

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from arena.config import Settings
from arena.models import Submission, SubmissionStatus
from hostile.tournament import RUNTIMES, WELL_BEHAVED, Tournament, attack_outcome, code_folder, disqualify, enter
from servers import postgres_server, redis_server

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("runtime", RUNTIMES)]

SPY = r'''
import ctypes, json, os, shutil, socket, sys
targets = json.loads(TARGETS)
def probe(name, action):
    try:
        action()
        print("PROBE", name, "OPEN", flush=True)
    except Exception as exc:
        print("PROBE", name, "BLOCKED", type(exc).__name__, flush=True)
def connect(host, port):
    return lambda: socket.create_connection((host, port), timeout=2).close()
def refuse(condition):
    if condition:
        raise OSError("refused")
probe("setuid_root", lambda: os.setuid(0))
probe("capabilities", lambda: refuse("CapEff:\t0000000000000000" in open("/proc/self/status").read()))
probe("new_privileges", lambda: refuse(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0) == 1))  # PR_GET_NO_NEW_PRIVS
probe("dns", lambda: socket.getaddrinfo("deb.debian.org", 80))
probe("outside", connect("1.1.1.1", 53))
probe("interfaces", lambda: refuse(os.listdir("/sys/class/net") == ["lo"]))
for name, (host, port) in targets["tcp"].items():
    probe(name, connect(host, port))
for name, path in targets["read"].items():
    probe(name, lambda path=path: open(path, "rb").read(1) if os.path.isfile(path) else os.listdir(path))
src, dst = sys.argv[1], sys.argv[2]
first = os.path.join(src, sorted(os.listdir(src))[0])
writes = {"write_code": "/code/evil", "write_input": os.path.join(src, "evil.png"), "write_root": "/evil",
          "write_etc": "/etc/evil", **targets["write"]}
for name, path in writes.items():
    probe(name, lambda path=path: open(path, "wb").write(b"x"))
probe("delete_input", lambda: os.remove(first))
probe("change_input", lambda: open(first, "r+b").write(b"x"))
probe("other_mounts", lambda: refuse(not [
    line.split()[4] for line in open("/proc/self/mountinfo")
    if line.split()[4] not in ("/code", "/input_images", "/output_images", "/etc/hosts", "/etc/hostname",
                               "/etc/resolv.conf") and line.split()[4].split("/")[1] not in ("proc", "sys", "dev", "tmp", "")
]))
for name in os.listdir(src):
    shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
'''


def primary_address() -> str:
    """The host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@pytest.fixture(scope="module")
def web_port() -> Iterator[int]:
    """A stand-in for the web app, on every interface of the host."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def spies() -> Iterator[dict[str | None, tuple[Settings, Submission]]]:
    """Each runtime's spy, entered once into that runtime's tournament; disqualified when the
    module is done."""
    entered: dict[str | None, tuple[Settings, Submission]] = {}
    yield entered
    for settings, submission in entered.values():
        disqualify(settings, submission.id)


@pytest.fixture
def spy(tournament, runtime, spies, web_port) -> list[str]:
    """The spy's dry-run log and tournament attempt logs, with the live targets it aimed at."""
    if runtime not in spies:
        spies[runtime] = (tournament.settings, _enter_spy(tournament, web_port))
    settings, submission = spies[runtime]
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    return [submission.validation_report["log_tail"],
            *(attack_outcome(settings, submission.id, epsilon)[2] for epsilon in settings.epsilons)]


def _enter_spy(tournament: Tournament, web_port: int) -> Submission:
    """Take the spy in and run it, while live targets wait on the host."""
    settings = tournament.settings
    with redis_server() as redis, postgres_server() as postgres:
        postgres_port = int(postgres.rsplit(":", 1)[1].split("/")[0])
        host = primary_address()
        tcp = {"redis": ("127.0.0.1", redis.port), "postgres": ("127.0.0.1", postgres_port),
               "web_loopback": ("127.0.0.1", web_port), "web_host": (host, web_port)}
        for address in tcp.values():  # each target answers from the host: the probes can fail only by containment
            socket.create_connection(address, timeout=5).close()
        other = code_folder(settings, WELL_BEHAVED[0])  # not a hostile case's, whichever ran before
        targets = {
            "tcp": tcp,
            "read": {"database": str((settings.data_dir / "arena.db").resolve()), "store": str(settings.store_dir.resolve()),
                     "other_code": str(other.resolve()), "work": str(settings.work_dir.resolve())},
            "write": {"write_host_store": str(settings.store_dir.resolve() / "evil"),
                      "write_host_code": str(other.resolve() / "evil")},
        }
        code = SPY.replace("TARGETS", repr(json.dumps(targets)))
        return enter(tournament, "spy", "attack", 'exec python3 spy.py "$@"\n', {"spy.py": code})


PROBES = ["setuid_root", "capabilities", "new_privileges", "dns", "outside", "interfaces", "redis", "postgres", "web_loopback", "web_host", "database", "store",
          "other_code", "work", "write_code", "write_input", "write_root", "write_etc", "write_host_store",
          "write_host_code", "delete_input", "change_input", "other_mounts"]


@pytest.mark.parametrize("probe", PROBES)
def test_spy_is_blocked(tournament, spy, probe):
    for log in spy:
        assert f"PROBE {probe} BLOCKED" in log, log
        assert f"PROBE {probe} OPEN" not in log
    tournament.check_unchanged()
