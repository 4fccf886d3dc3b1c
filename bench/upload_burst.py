"""An upload burst before a deadline: TEAMS teams upload distinct archives at once through
``POST /api/submissions`` while three visitors read ``/``, ``/api/health`` and a leaderboard
every 200 ms.

Reported: how long each upload took to be answered, how long until each was accepted (or
rejected), the visitors' latencies during the burst against the calm before it (p50, p99,
max: the ratio is what the burst costs them, measured in the same invocation), and every
5xx. The server is ``arena web`` in its own process, on a fresh data folder with a
synthetic dataset (started here, detached, stopped at the end), in the embedded mode: the
same host runs the web and the containers, the worst case for visitors.

``--platform`` runs the server from another checkout's ``platform/`` folder: the figures
before a change come from the same script run against the code before it.

    scripts/with-docker.sh .venv/bin/python bench/upload_burst.py [--teams 30] [--platform ../before/platform]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from servers import _wait_for_port, free_port, stop  # noqa: E402

ORGANIZER = "bench"
VISITED = ["/", "/api/health", "/api/leaderboards/defense"]
CALM_SECONDS = 10.0
#: How long the burst may take to be checked before the bench gives up on it.
DEADLINE_SECONDS = 1800.0


@dataclass
class Visits:
    """What the visitors saw: (when, seconds, status) per request."""

    seen: list[tuple[float, float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def visit(self, base: str, path: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                status = client.get(path).status_code
                self.seen.append((started, time.perf_counter() - started, status))
                self.stop.wait(0.2)

    def between(self, start: float, end: float) -> list[float]:
        return [seconds for when, seconds, _ in self.seen if start <= when < end]

    def errors(self) -> list[int]:
        return [status for _, _, status in self.seen if status >= 500]


@dataclass
class Upload:
    team: str
    answered: float = 0.0
    status_code: int = 0
    submission_id: int | None = None
    settled: float | None = None
    outcome: str = ""


def _variant(tmp: Path, team: str) -> Path:
    """The decoder sample with one changed comment: the same behaviour, a distinct code hash."""
    folder = tmp / "archives" / team / "decoder"
    shutil.copytree(REPO / "submissions" / "samples" / "decoder", folder)
    script = next(folder.glob("run_*.sh"))
    script.write_text(script.read_text() + f"# {team}\n")
    archive = folder.parent / f"{team}.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(folder.parent), "decoder"], check=True)
    return archive


def _upload(base: str, token: str, archive: Path, upload: Upload, start: float) -> None:
    with httpx.Client(base_url=base, timeout=DEADLINE_SECONDS) as client, archive.open("rb") as body:
        response = client.post("/api/submissions", headers={"Authorization": f"Bearer {token}"},
                               files={"archive": (archive.name, body)}, data={"name": upload.team})
    upload.answered, upload.status_code = time.perf_counter() - start, response.status_code
    if response.status_code < 300:
        upload.submission_id = response.json()["id"]


def _settle(base: str, uploads: list[Upload], start: float) -> None:
    """Poll every stored upload until its dry run is done (accepted or rejected)."""
    waiting = {u.submission_id: u for u in uploads if u.submission_id is not None}
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {ORGANIZER}"}) as client:
        while waiting and time.perf_counter() - start < DEADLINE_SECONDS:
            for submission_id, upload in list(waiting.items()):
                status = client.get(f"/api/submissions/{submission_id}").json()["status"]
                if status not in ("queued", "checking", "validating"):
                    upload.settled, upload.outcome = time.perf_counter() - start, status
                    del waiting[submission_id]
            time.sleep(0.25)


def _figures(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return pick(0.5), pick(0.99), ordered[-1]


def main(teams: int, platform: Path | None, keep_log: Path | None = None) -> None:
    docker.from_env(timeout=10).ping()  # the dry runs need an engine: say so at once, not after the deadline
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        env = {**os.environ, "ARENA_DATA_DIR": str(tmp / "arena"), "ARENA_ORGANIZER_TOKEN": ORGANIZER}
        if platform is not None:
            env["PYTHONPATH"] = str(platform.resolve())
        arena = [sys.executable, "-m", "arena"]
        for command in (["db", "upgrade"], ["dataset", "synth", "20"]):
            subprocess.run([*arena, *command], env=env, check=True, capture_output=True)
        archives = {f"team-{k:02d}": _variant(tmp, f"team-{k:02d}") for k in range(teams)}
        port, log = free_port(), tmp / "web.log"
        with log.open("w") as out:
            server = subprocess.Popen([*arena, "web", "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        visits = Visits()
        try:
            _wait_for_port(port, server, log)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ORGANIZER}"}) as organizer:
                tokens = {team: organizer.post(f"/api/teams/{team}/token").json()["token"] for team in archives}
            visitors = [threading.Thread(target=visits.visit, args=(base, path), daemon=True) for path in VISITED]
            for visitor in visitors:
                visitor.start()
            time.sleep(CALM_SECONDS)  # the calm: what visitors see with nothing else going on
            uploads = [Upload(team) for team in archives]
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=teams) as pool:
                for upload in uploads:
                    pool.submit(_upload, base, tokens[upload.team], archives[upload.team], upload, start)
            _settle(base, uploads, start)
            end = time.perf_counter()
            visits.stop.set()
            for visitor in visitors:
                visitor.join(timeout=60)
        finally:
            stop(server)
            if keep_log is not None:
                shutil.copy(log, keep_log)
    _report(teams, uploads, visits, start, end)


def _report(teams: int, uploads: list[Upload], visits: Visits, start: float, end: float) -> None:
    answered = [u.answered for u in uploads]
    settled = [u.settled for u in uploads if u.settled is not None]
    codes = sorted({u.status_code for u in uploads})
    outcomes = {o: sum(u.outcome == o for u in uploads) for o in sorted({u.outcome for u in uploads})}
    print(f"{teams} uploads at once: answered {codes}, outcomes {outcomes}")
    print(f"{'':28} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    print(f"{'upload answered':28} " + " ".join(f"{v:8.2f}" for v in _figures(answered)))
    if settled:
        print(f"{'upload accepted/rejected':28} " + " ".join(f"{v:8.2f}" for v in _figures(settled)))
    calm, burst = visits.between(start - CALM_SECONDS, start), visits.between(start, end)
    print(f"\nvisitors ({len(calm)} requests calm, {len(burst)} during the burst of {end - start:.0f} s)")
    print(f"{'':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, values in (("calm", calm), ("burst", burst)):
        print(f"{label:28} " + " ".join(f"{v * 1000:8.1f}" for v in _figures(values)))
    ratio = [b / c for b, c in zip(_figures(burst), _figures(calm))]
    print(f"{'burst / calm':28} " + " ".join(f"{v:8.2f}" for v in ratio))
    print(f"5xx answers: {len(visits.errors()) + sum(u.status_code >= 500 for u in uploads)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=30)
    parser.add_argument("--platform", type=Path, help="run the server from this platform/ folder (another checkout)")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here (its errors, when there were 5xx)")
    args = parser.parse_args()
    main(args.teams, args.platform, args.keep_log)
