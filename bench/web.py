"""Web latency: leaderboard and matrix endpoints under 50 concurrent clients on loopback,
with a 100 x 100 tournament in the database (100 attacks x 4 eps x IMAGES images, 100
defenses: 4M per-image answers at 100 images).

The server is `arena web` in its own process (started here, detached, stopped at the
end); the clients are asyncio + aiohttp in this process (httpx's pool slowed down past a
few concurrent connections and measured itself). Each endpoint's p50/p99 is given beside
the same figures for `/api/health`, which does nothing, measured in the same invocation:
the ratio says what an endpoint costs over the web stack itself. The clients ask for gzip,
as browsers do; each endpoint's size is given as sent (gzip) and as it is.
Also timed: the first request after start (the standings computed from the tallies), and
how long after a defense job's results are committed the leaderboard shows them.

    .venv/bin/python bench/web.py [--images 100] [--requests 2000] [--clients 50]
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from sqlalchemy import insert, update

from arena import db
from arena.config import Settings
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    Classification,
    Dataset,
    DefenseJob,
    Image,
    JobAttempt,
    JobStatus,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
    utcnow,
)
from arena.results import answers, tallies

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import _wait_for_port, free_port, stop  # noqa: E402

EPSILONS = [2, 4, 8, 16]
ENDPOINTS = {
    "baseline: /api/health": "/api/health",
    "/api/leaderboards/defense": "/api/leaderboards/defense",
    "/api/leaderboards/attack": "/api/leaderboards/attack",
    "/api/matrix": "/api/matrix",
    "/api/matrix?eps=8&top_attacks=40&top_defenses=15": "/api/matrix?eps=8&top_attacks=40&top_defenses=15",
    "/ (leaderboards page)": "/",
    "/matrix (heatmap page)": "/matrix",
}


def _chunks(rows: list[dict], size: int = 50_000):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _answers(job: dict, truth: np.ndarray, images: int, rng: np.random.Generator) -> list[dict]:
    """Half right, half a random label."""
    labels = np.where(rng.random(images) < 0.5, truth, rng.integers(1, 1001, images))
    return [{"defense_job_id": job["id"], "defense_id": job["submission_id"], "image_id": i + 1,
             "adversarial_image_id": None if job["attack_job_id"] is None else (job["attack_job_id"] - 1) * images + i + 1,
             "label": int(labels[i])} for i in range(images)]


def fabricate(settings: Settings, attacks: int, defenses: int, images: int, seed: int = 0) -> tuple[int, dict, list[dict]]:
    """A tournament written straight into the database, tallies rebuilt, all done but its last
    defense job; returns the answers stored, that job and the answers it will land."""
    rng = np.random.default_rng(seed)
    now = utcnow()
    with db.transaction(settings) as session:
        session.execute(insert(Dataset), [{"id": 1, "name": "bench", "created_at": now}])
        session.execute(insert(Batch), [{"id": 1, "dataset_id": 1, "index": 0}])
        truth = rng.integers(1, 1001, images)
        session.execute(insert(Image), [
            {"id": i + 1, "dataset_id": 1, "batch_id": 1, "name": f"img{i}", "true_label": int(truth[i]),
             "target_class": int((truth[i] + 7) % 1000 + 1), "sha256": f"{i:064d}"} for i in range(images)])
        session.execute(insert(Team), [{"id": 1, "name": "bench", "created_at": now}])
        submissions = [
            {"id": s + 1, "team_id": 1, "name": f"{'attack' if s < attacks else 'defense'}{s}", "sha256": f"{s:064d}",
             "kind": SubmissionKind.ATTACK if s < attacks else SubmissionKind.DEFENSE, "meta": {},
             "status": SubmissionStatus.ACCEPTED, "created_at": now} for s in range(attacks + defenses)]
        session.execute(insert(Submission), submissions)
        attack_jobs = [{"id": a * len(EPSILONS) + e + 1, "submission_id": a + 1, "batch_id": 1, "epsilon": eps,
                        "status": JobStatus.DONE, "finished_at": now, "attempt": 1}
                       for a in range(attacks) for e, eps in enumerate(EPSILONS)]
        session.execute(insert(AttackJob), attack_jobs)
        adversarial = [{"id": j * images + i + 1, "attack_job_id": j + 1, "image_id": i + 1, "sha256": f"{i:064d}",
                        "linf": 0} for j in range(len(attack_jobs)) for i in range(images)]
        for chunk in _chunks(adversarial):
            session.execute(insert(AdversarialImage), chunk)
        defense_jobs, answers = [], 0
        for d in range(defenses):
            defense_id = attacks + d + 1
            for target in [None, *range(1, len(attack_jobs) + 1)]:
                job_id = len(defense_jobs) + 1
                defense_jobs.append({"id": job_id, "submission_id": defense_id, "batch_id": 1, "attack_job_id": target,
                                     "status": JobStatus.DONE, "finished_at": now, "attempt": 1})
        session.execute(insert(DefenseJob), defense_jobs)
        session.execute(insert(JobAttempt), [
            {"defense_job_id": j["id"], "number": 1, "started_at": now, "seconds": float(rng.uniform(5, 60)),
             "images": images} for j in defense_jobs])
        held_back = defense_jobs[-1]
        for job in defense_jobs[:-1]:
            rows = _answers(job, truth, images, rng)
            session.execute(insert(Classification), rows)
            answers += len(rows)
        session.execute(update(DefenseJob).where(DefenseJob.id == held_back["id"]).values(status=JobStatus.PENDING))
        tallies.rebuild(session)
    return answers, held_back, _answers(held_back, truth, images, rng)


def land(settings: Settings, job: dict, rows: list[dict]) -> None:
    """What a worker does when a defense job's results come back: rows, tallies, done."""
    with db.transaction(settings) as session:
        answers.store(session, rows)
        session.execute(update(DefenseJob).where(DefenseJob.id == job["id"])
                        .values(status=JobStatus.DONE, finished_at=utcnow()))


def staleness(base: str, settings: Settings, job: dict, rows: list[dict]) -> float:
    """Seconds from a job's results being committed to the leaderboard showing them."""
    def score() -> int:
        board = httpx.get(f"{base}/api/leaderboards/defense", timeout=60).json()
        return next(r["scored"] for r in board if r["id"] == job["submission_id"])

    before = score()
    land(settings, job, rows)
    landed = time.perf_counter()
    while score() == before:
        time.sleep(0.01)
    return time.perf_counter() - landed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


async def _load(base: str, path: str, requests: int, clients: int) -> list[float]:
    latencies: list[float] = []
    remaining = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, raise_for_status=True) as session:
        async def one_client() -> None:
            for _ in remaining:
                started = time.perf_counter()
                async with session.get(path) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def _timed_get(base: str, path: str) -> float:
    started = time.perf_counter()
    httpx.get(base + path, timeout=600).raise_for_status()
    return time.perf_counter() - started


def _sizes(base: str, path: str) -> tuple[int, int]:
    """Bytes sent to a client that accepts gzip, and the body's own size."""
    with httpx.stream("GET", base + path, headers={"Accept-Encoding": "gzip"}, timeout=600) as response:
        body = response.read()
        return response.num_bytes_downloaded, len(body)


def main(images: int, requests: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch))
        db.upgrade(settings)
        started = time.perf_counter()
        answers, held_back, landing = fabricate(settings, attacks=100, defenses=100, images=images)
        print(f"fabricated 100 x 100 tournament: {answers} answers in {time.perf_counter() - started:.0f} s")
        port = free_port()
        log = Path(scratch) / "web.log"
        env = {**os.environ, "ARENA_DATA_DIR": scratch, "ARENA_ORGANIZER_TOKEN": "bench"}
        with log.open("w") as out:
            server = subprocess.Popen([sys.executable, "-m", "arena", "web", "--port", str(port)], env=env,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            _wait_for_port(port, server, log)
            base = f"http://127.0.0.1:{port}"
            print(f"first leaderboard request (computes the standings): {_timed_get(base, '/api/leaderboards/defense'):.2f} s")
            rows = []
            for name, path in ENDPOINTS.items():
                _timed_get(base, path)  # shaped once per snapshot
                latencies = asyncio.run(_load(base, path, requests, clients))
                rows.append((name, percentile(latencies, 50), percentile(latencies, 99),
                             len(latencies) / sum(latencies) * clients, *_sizes(base, path)))
            landed = staleness(base, settings, held_back, landing)
        finally:
            stop(server)
    baseline_p50, baseline_p99 = rows[0][1], rows[0][2]
    print(f"\n{clients} concurrent clients, {requests} requests per endpoint, {images} images per attack job")
    print(f"{'endpoint':52} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'p50 / baseline':>15} {'p99 / baseline':>15}"
          f" {'KB sent':>8} {'KB body':>8}")
    for name, p50, p99, rate, sent, body in rows:
        print(f"{name:52} {p50:8.1f} {p99:8.1f} {rate:7.0f} {p50 / baseline_p50:15.2f} {p99 / baseline_p99:15.2f}"
              f" {sent / 1000:8.1f} {body / 1000:8.1f}")
    print(f"a defense job's results landed: on the leaderboard {landed:.2f} s later")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    main(args.images, args.requests, args.clients)
