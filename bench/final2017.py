"""The 2017 final's control plane, simulated: 91 attacks, 65 targeted attacks and 107
defenses over 5000 images (x --scale), at the final's epsilon schedule (each batch at one
of 4, 8, 12, 16 in turn: 7,800 attack jobs) and at every epsilon (31,200), over real
PostgreSQL and Redis servers started here, with no container anywhere.

For each schedule, in a database of its own:

1. the round, its 263 accepted entries, its dataset (SQL, as ``bench/scale.py``);
2. planning the whole final with the platform's planner: the attack jobs
   (``planning.plan_attack_jobs``); then every attack job is marked done with its
   adversarial images (SQL: the attack side is 1% of the jobs), and the defense jobs are
   planned (``planning.plan_defense_jobs``: 107 x every finished attack job and clean
   batch); then one turn of the dispatcher over the whole final (``packing.next_packs``:
   reap, plan again (nothing new), pack every runnable job);
3. every defense job but the last ``--window`` marked done (SQL, without answers), then
   those run through the real distributed path: ``distributed.dispatch`` queues their packs
   on Redis and follows them, ``--workers`` processes of ``bench/final2017_worker.py`` (Celery
   workers whose container run is simulated) claim, load, store and count them;
4. the round published (``actions.publish_round``: every job done) and its standings
   computed from the tallies, timed from the last stored answer;
5. checks: every job done once, one answer per (job, image), the tallies equal a recount.

Figures: the planning seconds, jobs per second from the first claim to the last store,
claim latency percentiles, PostgreSQL, Redis, worker and dispatcher CPU seconds per job, the
write-ahead log and Redis bytes per job, the adversarial PNG bytes a job moves through the
object store (measured on photos of ``../shared/datasets/imagenet-sample-1000`` encoded as
the store encodes them), and the simulated compute those jobs stand for.

    nice -n 10 .venv/bin/python bench/final2017.py [--quick] [--workers 12] [--window 4000]

Every server and worker started here is stopped at the end, also on failure or SIGTERM.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from arena import REPO_ROOT, actions, db
from arena.competition import rounds
from arena.config import EpsilonSchedule, Settings
from arena.data.images import encode_png
from arena.execution import distributed, packing, planning
from arena.models import AttackJob, CellTally, CleanTally, Dataset, DefenseJob, JobStatus, Round
from arena.results import tallies

sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from final2017_worker import seconds_per_image  # noqa: E402  the workers' speeds, to pack by
from scale import current_standings  # noqa: E402  what the web's cache computes after a change

from servers import new_database, postgres_cluster, redis_server  # noqa: E402  the tests' servers

ATTACKS, TARGETED, DEFENSES, EPSILONS, BATCH = 91, 65, 107, [4, 8, 12, 16], 100
SCHEDULES = {"final": EpsilonSchedule.ROUND_ROBIN, "every epsilon": EpsilonSchedule.ALL}
SERVER = {"shared_buffers": "2GB", "work_mem": "64MB", "maintenance_work_mem": "1GB", "max_wal_size": "4GB",
          "checkpoint_timeout": "30min", "max_connections": "200"}
PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample-1000" / "images"
WAIT_SECONDS = 120  # for the workers to come up, and to go
PAD = "lpad(CAST(k AS text), 64, '0')"
SERIES = "WITH RECURSIVE n(k) AS (SELECT {start} UNION ALL SELECT k + 1 FROM n WHERE k < {stop}) "

SKELETON = [
    "INSERT INTO datasets (name, created_at) VALUES ('final2017', CURRENT_TIMESTAMP)",
    SERIES.format(start=0, stop=":batches - 1") + 'INSERT INTO batches (dataset_id, "index") SELECT 1, k FROM n',
    SERIES.format(start=0, stop=":images - 1") + f"""
    INSERT INTO images (dataset_id, batch_id, name, true_label, target_class, sha256)
    SELECT 1, b.id, CAST(k AS VARCHAR(20)), 1 + (k * 7919) % 1000, 1 + (k * 104729) % 1000, {PAD}
    FROM n JOIN batches b ON b."index" = k / :batch""",
    "INSERT INTO teams (name, created_at) VALUES ('t', CURRENT_TIMESTAMP)",
    SERIES.format(start=1, stop=":attacks + :targeted + :defenses") + f"""
    INSERT INTO submissions (id, team_id, name, kind, sha256, metadata, status, created_at)
    SELECT k, 1, kind || CAST(k AS VARCHAR(20)), kind, {PAD},
           '{{"type": "defense", "container": "sim", "entry_point": "run.sh"}}', 'accepted', CURRENT_TIMESTAMP
    FROM (SELECT k, CASE WHEN k <= :attacks THEN 'attack' WHEN k <= :attacks + :targeted THEN 'targeted_attack'
                         ELSE 'defense' END AS kind FROM n) s""",
]
ATTACKS_DONE = [
    "UPDATE attack_jobs SET status = 'done', attempt = 1, finished_at = CURRENT_TIMESTAMP",
    """INSERT INTO adversarial_images (attack_job_id, image_id, sha256, linf, clipped, missing, wrong_size)
    SELECT aj.id, i.id, i.sha256, aj.epsilon, false, false, false FROM attack_jobs aj JOIN images i USING (batch_id)""",
]
#: All but the last ``window`` defense jobs done (without answers: the window's are counted).
DEFENSES_DONE = """UPDATE defense_jobs SET status = 'done', attempt = 1, finished_at = CURRENT_TIMESTAMP
    WHERE id <= (SELECT max(id) FROM defense_jobs) - :window"""


def timed(seconds: dict, name: str, function, *arguments):
    started = time.perf_counter()
    result = function(*arguments)
    seconds[name] = round(time.perf_counter() - started, 2)
    print(f"  {name}: {seconds[name]} s", flush=True)
    return result


def generate(settings: Settings, engine: Engine, images: int, schedule: EpsilonSchedule) -> None:
    """The dataset, 263 accepted submissions (packed by their simulated speed), the round,
    its entries."""
    parameters = {"images": images, "batches": -(-images // BATCH), "batch": BATCH, "attacks": ATTACKS,
                  "targeted": TARGETED, "defenses": DEFENSES}
    with engine.begin() as connection:
        for statement in SKELETON:
            connection.execute(text(statement), parameters)
        for submission in range(1, ATTACKS + TARGETED + DEFENSES + 1):
            report = {"images": BATCH, "seconds": BATCH * seconds_per_image(submission)}
            connection.execute(text("UPDATE submissions SET pack_images = :n WHERE id = :id"),
                               {"n": packing.pack_images(settings, report), "id": submission})
    with db.transaction(settings) as session:
        rounds.create(session, settings, "final", session.get_one(Dataset, 1), epsilons=EPSILONS, eps_schedule=schedule)
    with engine.begin() as connection:
        connection.execute(text("""INSERT INTO round_entries (round_id, submission_id, entered_at, carried, chosen)
                                   SELECT 1, id, CURRENT_TIMESTAMP, false, false FROM submissions"""))


def plan_final(settings: Settings, engine: Engine) -> dict:
    """The planner's seconds for the whole final, and the jobs it planned."""
    seconds: dict = {}

    def attacks() -> int:
        with db.transaction(settings) as session:
            round_ = session.get_one(Round, 1)
            planning.plan_attack_jobs(session, round_.dataset, round_.epsilons, round_.eps_schedule)
            return session.scalar(select(func.count(AttackJob.id)))  # the planner's count is -1 on PostgreSQL

    def defenses() -> int:
        with db.transaction(settings) as session:
            return planning.plan_defense_jobs(session, session.get_one(Dataset, 1))

    def turn() -> int:
        with db.transaction(settings) as session:
            packs = packing.next_packs(session, settings, session.get_one(Dataset, 1))
            return len(packs)

    attack_jobs = timed(seconds, "plan attack jobs", attacks)
    with engine.begin() as connection:
        for statement in ATTACKS_DONE:
            connection.execute(text(statement))
    analyze(engine)
    defense_jobs = timed(seconds, "plan defense jobs", defenses)
    analyze(engine)
    packs = timed(seconds, "first dispatcher turn (reap, plan again, pack everything)", turn)
    return {"attack jobs": attack_jobs, "defense jobs": defense_jobs, "packs": packs, "seconds": seconds}


def analyze(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def cpu_seconds(pids: list[int], children: bool = False) -> float:
    """User and system CPU seconds of these processes (and of their reaped children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(f) for f in fields[11:13] + (fields[13:15] if children else []))
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(server) -> list[int]:
    """The postmaster and every live backend."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def server_counters(engine: Engine, redis) -> dict:
    with engine.connect() as connection:
        wal = connection.scalar(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    info = subprocess.run(["redis-cli", "-p", str(redis.port), "info", "stats"], capture_output=True, text=True,
                          timeout=30).stdout
    stats = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {"wal": int(wal), "redis in": int(stats["total_net_input_bytes"]),
            "redis out": int(stats["total_net_output_bytes"])}


@contextmanager
def workers(settings: Settings, count: int, folder: Path, time_scale: float) -> Iterator[list[subprocess.Popen]]:
    """``count`` simulated worker processes, up and consuming; stopped whatever happens."""
    started = []
    try:
        for n in range(count):
            started.append(subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "bench" / "final2017_worker.py"), settings.database_url,
                 settings.broker_url, str(folder / f"worker{n}.jsonl"), f"sim{n}", "--time-scale", str(time_scale)],
                stdin=subprocess.DEVNULL, stdout=(folder / f"worker{n}.log").open("w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + WAIT_SECONDS
        while not all((folder / f"worker{n}.ready").exists() for n in range(count)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                raise RuntimeError(f"the workers did not come up: see {folder}")
            time.sleep(0.2)
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_window(settings: Settings, engine: Engine, pg, redis, count: int, folder: Path, time_scale: float,
               deadline: float) -> dict:
    """The window's jobs through dispatch and the workers (TimeoutError after ``deadline``
    seconds); the round published; what it cost."""
    seconds: dict = {}
    with workers(settings, count, folder, time_scale) as processes:
        before = server_counters(engine, redis)
        cpu_before = (cpu_seconds(postgres_pids(pg), children=True), cpu_seconds([redis.process.pid]),
                      cpu_seconds([p.pid for p in processes]), time.process_time())
        timed(seconds, "dispatch until done", lambda: distributed.dispatch(settings, 1, timeout=deadline))
        cpu_after = (cpu_seconds(postgres_pids(pg), children=True), cpu_seconds([redis.process.pid]),
                     cpu_seconds([p.pid for p in processes]), time.process_time())
        after = server_counters(engine, redis)
        timed(seconds, "publish", actions.publish_round, settings, "final")
        timed(seconds, "standings", current_standings, settings)
        published = time.time()
    timed(seconds, "an idle dispatcher turn (reap, plan, pack, count)", distributed._turn, settings, 1)
    packs = [json.loads(line) for path in folder.glob("worker*.jsonl") for line in path.read_text().splitlines()]
    stored = [p for p in packs if p["jobs"]]
    jobs = sum(p["jobs"] for p in packs)
    first, last = min(p["claim_start"] for p in stored), max(p["end"] for p in stored)
    claims = sorted(p["claim_s"] for p in packs)
    cpu = dict(zip(["postgresql", "redis", "workers", "dispatcher"], (b - a for a, b in zip(cpu_before, cpu_after))))
    return {
        "workers": count, "jobs stored": jobs, "packs": len(packs), "packs stored": len(stored),
        "jobs per second (first claim to last store)": round(jobs / (last - first), 1),
        "claim ms p50": round(1000 * statistics.median(claims), 2),
        "claim ms p99": round(1000 * claims[min(len(claims) - 1, int(0.99 * len(claims)))], 2),
        "load ms p50": round(1000 * statistics.median(p["load_s"] for p in stored), 2),
        "store ms p50": round(1000 * statistics.median(p["store_s"] for p in stored), 2),
        "store ms p99": round(1000 * sorted(p["store_s"] for p in stored)[int(0.99 * (len(stored) - 1))], 2),
        "cpu seconds": {k: round(v, 1) for k, v in cpu.items()},
        "cpu ms per job": {k: round(1000 * v / jobs, 3) for k, v in cpu.items()},
        "simulated compute seconds per job": round(sum(p.get("simulated_seconds", 0) for p in stored) / jobs, 2),
        "wal bytes per job": round((after["wal"] - before["wal"]) / jobs),
        "redis bytes per job (in + out)": round((after["redis in"] - before["redis in"]
                                                 + after["redis out"] - before["redis out"]) / jobs),
        "seconds from the last answer to published standings": round(published - last, 2),
        "seconds": seconds,
    }


def checks(engine: Engine, window: int) -> dict:
    """Nothing lost, nothing doubled, and the tallies kept as results landed equal a recount."""
    with Session(engine) as session:  # the recount rolled back at the end
        def snapshot() -> list:
            return [session.execute(select(*m.__table__.columns).order_by(*m.__table__.primary_key)).all()
                    for m in (CellTally, CleanTally)]

        not_done = sum(session.scalar(select(func.count()).where(c.status != JobStatus.DONE))
                       for c in (AttackJob, DefenseJob))
        kept = snapshot()
        tallies.rebuild(session)
        recount = snapshot()
        session.rollback()
    with engine.connect() as connection:
        answers, distinct, expected, twice = connection.execute(text(f"""
            SELECT (SELECT count(*) FROM classifications),
                   (SELECT count(*) FROM (SELECT DISTINCT defense_job_id, image_id FROM classifications) d),
                   (SELECT count(*) FROM defense_jobs dj JOIN images i ON i.batch_id = dj.batch_id
                    WHERE dj.id > (SELECT max(id) FROM defense_jobs) - {int(window)}),
                   (SELECT count(*) FROM (SELECT defense_job_id FROM job_attempts
                     WHERE defense_job_id IS NOT NULL AND ended_at IS NOT NULL AND error IS NULL
                     GROUP BY defense_job_id HAVING count(*) > 1) t)""")).one()
    return {"jobs not done": not_done, "answers": answers, "answers expected": expected,
            "distinct (job, image)": distinct, "jobs with two finished attempts": twice,
            "tallies equal the recount": kept == recount, "cells": len(kept[0])}


def png_bytes(count: int = 24) -> dict[int, float]:
    """Mean bytes of an adversarial image as the store keeps it, per epsilon: photos cropped to
    299 x 299, a random sign perturbation of +-epsilon (the FGSM look), the store's encoding."""
    photos = sorted(PHOTOS.glob("*"))[:count]
    if not photos:
        return {}
    rng = np.random.default_rng(0)
    clean = [np.asarray(PILImage.open(p).convert("RGB").resize((299, 299)), dtype=np.int16) for p in photos]
    sizes = {0: statistics.mean(len(encode_png(c.astype(np.uint8))) for c in clean)}
    for eps in EPSILONS:
        sizes[eps] = statistics.mean(
            len(encode_png(np.clip(c + eps * rng.choice([-1, 1], c.shape), 0, 255).astype(np.uint8))) for c in clean)
    return {eps: round(size) for eps, size in sizes.items()}


def one_schedule(name: str, pg, redis, images: int, arguments, scratch: Path) -> dict:
    url = new_database(pg.url)
    settings = Settings(data_dir=scratch, database_url=url, broker_url=redis.url)
    db.upgrade(settings)
    engine = db.get_engine(url)
    print(f"{name}: generating", flush=True)
    generate(settings, engine, images, SCHEDULES[name])
    report = {"schedule": name, "plan": plan_final(settings, engine)}
    window = min(arguments.window, report["plan"]["defense jobs"])
    with engine.begin() as connection:
        connection.execute(text(DEFENSES_DONE), {"window": window})
    analyze(engine)
    folder = scratch / f"workers-{SCHEDULES[name].value}"
    folder.mkdir()
    print(f"{name}: {window} defense jobs through dispatch and {arguments.workers} workers", flush=True)
    report["run"] = run_window(settings, engine, pg, redis, arguments.workers, folder, arguments.time_scale,
                               arguments.deadline)
    print(json.dumps(report["run"]), flush=True)
    report["checks"] = checks(engine, window)
    print(json.dumps(report, indent=1), flush=True)
    engine.dispose()
    return report


def main(arguments: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # so that the servers stop
    images = round(5000 * arguments.scale)
    report = {"images": images, "adversarial png bytes by epsilon (0: clean)": png_bytes()}
    with tempfile.TemporaryDirectory(dir=arguments.parent) as scratch, \
            postgres_cluster(arguments.parent, SERVER) as pg, redis_server() as redis:
        for name in arguments.schedules:
            report[name] = one_schedule(name, pg, redis, images, arguments, Path(scratch))
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of the final's 5000 images.")
    parser.add_argument("--quick", action="store_true", help="A tenth of the final, a small window.")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--window", type=int, default=4000, help="Defense jobs run through the workers.")
    parser.add_argument("--deadline", type=float, default=3600, help="Seconds the workers get for the window.")
    parser.add_argument("--time-scale", type=float, default=0.0, help="Sleep this share of each simulated run.")
    parser.add_argument("--schedules", nargs="+", choices=list(SCHEDULES), default=list(SCHEDULES))
    parser.add_argument("--parent", type=Path, help="Where the databases go (default: the temporary folder).")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.scale, arguments.window = 0.1, min(arguments.window, 1000)
    main(arguments)
