"""Scoring at the 2017 scale, simulated on PostgreSQL: 100 attacks (80 untargeted, 20
targeted) x 4 eps x N images x 100 defenses, N = 5000 x --scale (0.1: 20M classifications).

The tournament is generated inside a private PostgreSQL server (INSERT ... SELECT over the
job grid, foreign-key triggers off, secondary indexes built afterwards, then VACUUM
ANALYZE), with every defense job done except a few left without results. Then, in one
invocation:

1. a full recount of the tallies from the raw rows (``tallies.rebuild``: one GROUP BY over
   every classification, with PostgreSQL's parallel workers, then again without them);
2. a defense job's results landing (``pack.run_pack`` with the container replaced by an
   instant fake defense: inputs loaded, claim, COPY of 100 rows, tally update, commit), then
   the standings current again (``Standings.compute``, both matrices, the three
   leaderboards, the error-rate matrix), for each job left out;
3. a check that the tallies kept incrementally equal the recount.

    .venv/bin/python bench/scale.py --scale 0.1 [--parent DIR]

The server's data folder (about 110 bytes per classification) is removed at the end.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, select, text

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.execution import pack_run
from arena.intake.metadata import Metadata, SubmissionCode
from arena.models import (
    CellTally,
    Classification,
    CleanTally,
    Dataset,
    DefenseJob,
    JobStatus,
)
from arena.results import tallies
from arena.results.scoring import Standings
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseInput, DefenseOutcome
from arena.sandbox.result_csv import Answer

sys.path.insert(0, str(REPO_ROOT / "tests"))
from servers import postgres_server  # the tests' private server, reused

ATTACKS, TARGETED, DEFENSES, EPSILONS, BATCH = 80, 20, 100, [2, 4, 8, 16], 100
LEFT_OUT = 5  # defense jobs generated without results, to time their landing one by one
SERVER = {"shared_buffers": "4GB", "work_mem": "256MB", "maintenance_work_mem": "2GB", "max_wal_size": "16GB",
          "max_parallel_workers_per_gather": "2", "checkpoint_timeout": "30min"}

#: An answer per adversarial image, spread by a hash of the ids: 1% missing, 59% right,
#: 10% on the target class, 30% wrong.
ANSWER = """CASE WHEN r < 10 THEN NULL WHEN r < 600 THEN i.true_label WHEN r < 700 THEN i.target_class
                 ELSE 1 + (r * 7) % 1000 END"""
GENERATE = [
    "INSERT INTO datasets (name, created_at) VALUES ('scale', now())",
    "INSERT INTO batches (dataset_id, index) SELECT 1, k FROM generate_series(0, :batches - 1) k",
    """INSERT INTO images (dataset_id, batch_id, name, true_label, target_class, sha256)
       SELECT 1, b.id, k::text, 1 + (k * 7919) % 1000, 1 + (k * 104729) % 1000, lpad(k::text, 64, '0')
       FROM generate_series(0, :images - 1) k JOIN batches b ON b.index = k / :batch""",
    "INSERT INTO teams (name, created_at) VALUES ('t', now())",
    """INSERT INTO submissions (team_id, name, kind, sha256, metadata, status, created_at)
       SELECT 1, kind || k, kind, lpad(kind || k, 64, '0'), '{}', 'accepted', now()
       FROM (SELECT k, CASE WHEN k <= :attacks THEN 'attack' WHEN k <= :attacks + :targeted THEN 'targeted_attack'
                            ELSE 'defense' END AS kind
             FROM generate_series(1, :attacks + :targeted + :defenses) k) s""",
    """INSERT INTO attack_jobs (submission_id, batch_id, epsilon, status, attempt, finished_at)
       SELECT s.id, b.id, e, 'done', 1, now() FROM submissions s, batches b, unnest(CAST(:epsilons AS int[])) e
       WHERE s.kind <> 'defense'""",
    """INSERT INTO adversarial_images (attack_job_id, image_id, sha256, linf, clipped, missing, wrong_size)
       SELECT aj.id, i.id, i.sha256, aj.epsilon, false, false, false FROM attack_jobs aj JOIN images i USING (batch_id)""",
    """INSERT INTO defense_jobs (submission_id, batch_id, attack_job_id, status, attempt, finished_at)
       SELECT d.id, b.id, NULL, 'done', 1, now() FROM submissions d, batches b WHERE d.kind = 'defense'
       UNION ALL
       SELECT d.id, aj.batch_id, aj.id, 'done', 1, now() FROM submissions d, attack_jobs aj WHERE d.kind = 'defense'""",
    """UPDATE defense_jobs SET status = 'pending', attempt = 0, finished_at = NULL
       WHERE id IN (SELECT id FROM defense_jobs ORDER BY id DESC LIMIT :left_out)""",
    f"""INSERT INTO classifications (defense_job_id, defense_id, image_id, adversarial_image_id, label, problem)
       SELECT dj.id, dj.submission_id, i.id, ai.id, a.label, CASE WHEN a.label IS NULL THEN 'missing' END
       FROM defense_jobs dj JOIN adversarial_images ai USING (attack_job_id) JOIN images i ON i.id = ai.image_id
       CROSS JOIN LATERAL (SELECT ((dj.id::bigint * 7919 + ai.id::bigint * 104729) % 1000) AS r) h
       CROSS JOIN LATERAL (SELECT {ANSWER} AS label) a
       WHERE dj.status = 'done'""",
    f"""INSERT INTO classifications (defense_job_id, defense_id, image_id, adversarial_image_id, label, problem)
       SELECT dj.id, dj.submission_id, i.id, NULL, a.label, CASE WHEN a.label IS NULL THEN 'missing' END
       FROM defense_jobs dj JOIN images i USING (batch_id)
       CROSS JOIN LATERAL (SELECT ((dj.id::bigint * 7919 + i.id::bigint * 104729) % 1000) AS r) h
       CROSS JOIN LATERAL (SELECT {ANSWER} AS label) a
       WHERE dj.attack_job_id IS NULL AND dj.status = 'done'""",
]


def generate(engine: Engine, images: int) -> dict[str, float]:
    """The tournament's rows; return seconds spent on rows, indexes and VACUUM ANALYZE."""
    parameters = {"images": images, "batches": -(-images // BATCH), "batch": BATCH, "attacks": ATTACKS,
                  "targeted": TARGETED, "defenses": DEFENSES, "epsilons": EPSILONS, "left_out": LEFT_OUT}
    seconds = {}
    indexes = list(Classification.__table__.indexes)
    started = time.perf_counter()
    with engine.begin() as connection:
        for index in indexes:  # built once at the end: far faster than row by row
            index.drop(connection)
        connection.execute(text("SET session_replication_role = replica"))  # no foreign-key triggers per row
        for statement in GENERATE:
            connection.execute(text(statement), parameters)
    seconds["rows"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as connection:
        for index in indexes:
            index.create(connection)
    seconds["indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    seconds["vacuum analyze"] = time.perf_counter() - started
    return seconds


def rebuild(settings: Settings, parallel: bool) -> float:
    started = time.perf_counter()
    with db.transaction(settings) as session:
        if not parallel:
            session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        tallies.rebuild(session)
    return time.perf_counter() - started


def snapshot(settings: Settings) -> list:
    with db.transaction(settings) as session:
        return [session.execute(select(*m.__table__.columns).order_by(*m.__table__.primary_key)).all()
                for m in (CellTally, CleanTally)]


#: What fake_defense runs "as": no container starts, but the attempts record an image.
FAKE_CODE = SubmissionCode(Path("fake"), Metadata(type="defense", container="fake/defense:1", entry_point="run.sh"),
                           {"container": "sha256:" + "0" * 64})


def fake_defense(_settings: Settings, _code, inputs: list[DefenseInput]) -> DefenseOutcome:
    """Stands in for the container: an answer for every image at once."""
    return DefenseOutcome(RunResult(0, False, None, 0.0, ""), {i.key: Answer(1 + i.key % 1000) for i in inputs})


def current_standings(settings: Settings) -> None:
    """What the web app shows after a result lands."""
    with db.transaction(settings) as session:
        standings = Standings.compute(session, session.scalar(select(Dataset)))
    standings.matrix("error")
    standings.matrix("hit", EPSILONS[-1])
    standings.error_rate_matrix()
    standings.defense_leaderboard()
    standings.attack_leaderboard()
    standings.targeted_attack_leaderboard()


def land_jobs(settings: Settings) -> list[tuple[float, float]]:
    """For each job left out: seconds for its results to land, then for the standings."""
    pack_run.execute_defense, pack_run.submission_code = fake_defense, lambda _settings, _submission: FAKE_CODE
    with db.transaction(settings) as session:
        waiting = session.scalars(select(DefenseJob.id).where(DefenseJob.status == JobStatus.PENDING)).all()
    timings = []
    for job_id in waiting:
        started = time.perf_counter()
        assert pack_run.run_pack(settings, pack_run.Pack("defense", (job_id,))).finished == 1
        landed = time.perf_counter()
        current_standings(settings)
        timings.append((landed - started, time.perf_counter() - landed))
    return timings


def size(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        count = connection.scalar(text("SELECT count(*) FROM classifications"))
        total = connection.scalar(text("SELECT pg_total_relation_size('classifications')"))
    return {"classifications": count, "bytes": total}


def main(scale: float, parent: Path | None) -> None:
    images = round(5000 * scale)
    with tempfile.TemporaryDirectory() as scratch, postgres_server(parent, SERVER) as url:
        settings = Settings(data_dir=Path(scratch), database_url=url)
        db.upgrade(settings)
        engine = db.get_engine(url)
        report = {"scale": scale, "images": images, "generate seconds": generate(engine, images), **size(engine)}
        print(json.dumps(report), flush=True)
        report["rebuild seconds (cold, parallel)"] = rebuild(settings, parallel=True)
        timings = land_jobs(settings)
        kept = snapshot(settings)
        report["rebuild seconds (parallel)"] = rebuild(settings, parallel=True)
        report["tallies equal the recount"] = snapshot(settings) == kept
        report["rebuild seconds (no parallel)"] = rebuild(settings, parallel=False)
        report["cells"] = len(kept[0])
        report["land seconds (median)"] = statistics.median(t for t, _ in timings)
        report["standings seconds (median)"] = statistics.median(s for _, s in timings)
        report["land + standings seconds (max)"] = max(t + s for t, s in timings)
        report["ratio rebuild / (land + standings)"] = report["rebuild seconds (parallel)"] / statistics.median(
            t + s for t, s in timings)
        print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="Fraction of the 2017 size (5000 images).")
    parser.add_argument("--parent", type=Path, help="Where the server's data folder goes (default: the temporary folder).")
    arguments = parser.parse_args()
    main(arguments.scale, arguments.parent)
