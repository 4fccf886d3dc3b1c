"""Scoring at the 2017 scale, on PostgreSQL or on SQLite: 100 attacks (80 untargeted, 20
targeted) x 4 eps x N images x 100 defenses, N = 5000 x --scale (1: the 2017 size, 200M
classifications; 0.1: 20M).

The tournament is generated inside the database by SQL (INSERT ... SELECT over the job
grid, never row by row from Python), with every defense job done except a few left
without results. On PostgreSQL (a private server started here) the answers are written
into ``classifications`` in the transaction that truncates it, its primary key dropped
and built again at the end of that transaction: with ``wal_level = minimal`` none of
those rows go through the write-ahead log. Then VACUUM ANALYZE. On SQLite the answers go
into the key's b-tree in key order. Then, in one invocation:

1. a full recount of the tallies from the raw rows (``tallies.rebuild``: on PostgreSQL once
   cold, once warm with parallel workers, once without them);
2. for each job left out, its results landing (``pack_run.run_pack`` with the container
   replaced by an instant fake defense: inputs loaded, claim, the answers stored and
   counted, commit), then the standings current again (``Standings.compute``, both
   matrices, the three leaderboards, the error-rate matrix);
3. a check that the tallies kept as results landed equal the recount.

    .venv/bin/python bench/scale.py --scale 1 [--backend sqlite] [--parent DIR]

The database (about 80 bytes per classification on PostgreSQL) is removed at the end,
also on failure or SIGTERM.
"""

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, select, text

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.execution import pack_run
from arena.intake.metadata import Metadata
from arena.models import (
    CellTally,
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
#: The server: memory for the recount's hash tables and the key's sort, and a write-ahead
#: log kept small (minimal: the generated rows skip it; checkpoints recycle what is written).
SERVER = {"shared_buffers": "4GB", "work_mem": "256MB", "maintenance_work_mem": "2GB", "wal_level": "minimal",
          "max_wal_senders": "0", "max_wal_size": "1GB", "max_parallel_workers_per_gather": "2",
          "checkpoint_timeout": "30min"}
#: A 64-character string unique per ``k``, the dialect's way.
PAD = {"postgresql": "lpad(CAST(k AS text), 64, '0')", "sqlite": "printf('%064d', k)"}

#: An answer per image, spread by a hash of the ids: 1% missing, 59% right, 10% on the
#: target class, 30% wrong.
ANSWERS = """
INSERT INTO classifications (defense_job_id, defense_id, image_id, adversarial_image_id, label, problem)
SELECT job, defense, image, adversarial, label, CASE WHEN label IS NULL THEN 'missing' END
FROM (SELECT job, defense, image, adversarial,
             CASE WHEN r < 10 THEN NULL WHEN r < 600 THEN true_label WHEN r < 700 THEN target_class
                  ELSE 1 + (r * 7) % 1000 END AS label
      FROM (SELECT dj.id AS job, dj.submission_id AS defense, i.id AS image, {adversarial} AS adversarial,
                   i.true_label, i.target_class, (CAST(dj.id AS BIGINT) * 7919 + CAST({hashed} AS BIGINT) * 104729) % 1000 AS r
            FROM defense_jobs dj {source}
            WHERE dj.status = 'done') hashed) judged"""
ON_ATTACKS = ANSWERS.format(adversarial="ai.id", hashed="ai.id", source="""
    JOIN adversarial_images ai ON ai.attack_job_id = dj.attack_job_id JOIN images i ON i.id = ai.image_id""")
ON_CLEAN = ANSWERS.format(adversarial="CAST(NULL AS INTEGER)", hashed="i.id", source="""
    JOIN images i ON i.batch_id = dj.batch_id AND dj.attack_job_id IS NULL""")


def skeleton(dialect: str) -> list[str]:
    """Everything but the answers: the dataset, the submissions, every job done (attack
    outputs as their clean images), but the last ``left_out`` defense jobs."""
    series = "WITH RECURSIVE n(k) AS (SELECT {start} UNION ALL SELECT k + 1 FROM n WHERE k < {stop}) "
    epsilons = " UNION ALL ".join(f"SELECT {e} AS e" for e in EPSILONS)
    return [
        "INSERT INTO datasets (name, created_at) VALUES ('scale', CURRENT_TIMESTAMP)",
        series.format(start=0, stop=":batches - 1") + 'INSERT INTO batches (dataset_id, "index") SELECT 1, k FROM n',
        series.format(start=0, stop=":images - 1") + f"""
        INSERT INTO images (dataset_id, batch_id, name, true_label, target_class, sha256)
        SELECT 1, b.id, CAST(k AS VARCHAR(20)), 1 + (k * 7919) % 1000, 1 + (k * 104729) % 1000, {PAD[dialect]}
        FROM n JOIN batches b ON b."index" = k / :batch""",
        "INSERT INTO teams (name, created_at) VALUES ('t', CURRENT_TIMESTAMP)",
        series.format(start=1, stop=":attacks + :targeted + :defenses") + f"""
        INSERT INTO submissions (team_id, name, kind, sha256, metadata, status, created_at)
        SELECT 1, kind || CAST(k AS VARCHAR(20)), kind, {PAD[dialect]}, '{{}}', 'accepted', CURRENT_TIMESTAMP
        FROM (SELECT k, CASE WHEN k <= :attacks THEN 'attack' WHEN k <= :attacks + :targeted THEN 'targeted_attack'
                             ELSE 'defense' END AS kind FROM n) s""",
        f"""INSERT INTO attack_jobs (submission_id, batch_id, epsilon, status, attempt, finished_at)
        SELECT s.id, b.id, e.e, 'done', 1, CURRENT_TIMESTAMP FROM submissions s, batches b, ({epsilons}) e
        WHERE s.kind <> 'defense'""",
        """INSERT INTO adversarial_images (attack_job_id, image_id, sha256, linf, clipped, missing, wrong_size)
        SELECT aj.id, i.id, i.sha256, aj.epsilon, false, false, false FROM attack_jobs aj JOIN images i USING (batch_id)""",
        """INSERT INTO defense_jobs (submission_id, batch_id, attack_job_id, status, attempt, finished_at)
        SELECT d.id, b.id, NULL, 'done', 1, CURRENT_TIMESTAMP FROM submissions d, batches b WHERE d.kind = 'defense'
        UNION ALL
        SELECT d.id, aj.batch_id, aj.id, 'done', 1, CURRENT_TIMESTAMP FROM submissions d, attack_jobs aj
        WHERE d.kind = 'defense'""",
        """UPDATE defense_jobs SET status = 'pending', attempt = 0, finished_at = NULL
        WHERE id IN (SELECT id FROM defense_jobs ORDER BY id DESC LIMIT :left_out)""",
    ]


def _timed(seconds: dict[str, float], name: str, connection, statement: str, parameters: dict | None = None) -> None:
    started = time.perf_counter()
    connection.execute(text(statement), parameters or {})
    seconds[name] = round(time.perf_counter() - started, 1)
    print(f"  {name}: {seconds[name]} s", flush=True)


def generate(engine: Engine, images: int) -> dict[str, float]:
    """The tournament's rows; return the seconds each step took."""
    parameters = {"images": images, "batches": -(-images // BATCH), "batch": BATCH, "attacks": ATTACKS,
                  "targeted": TARGETED, "defenses": DEFENSES, "left_out": LEFT_OUT}
    dialect, seconds = engine.dialect.name, {}
    with engine.begin() as connection:
        started = time.perf_counter()
        for statement in skeleton(dialect):
            connection.execute(text(statement), parameters)
        seconds["jobs"] = round(time.perf_counter() - started, 1)
        if dialect == "postgresql":  # a new file for the table, its rows and key written without WAL
            connection.execute(text("TRUNCATE classifications"))
            connection.execute(text("ALTER TABLE classifications DROP CONSTRAINT classifications_pkey"))
        _timed(seconds, "answers on adversarial images", connection, ON_ATTACKS)
        _timed(seconds, "answers on clean images", connection, ON_CLEAN)
        if dialect == "postgresql":
            _timed(seconds, "primary key", connection,
                   "ALTER TABLE classifications ADD CONSTRAINT classifications_pkey PRIMARY KEY (defense_job_id, image_id)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        _timed(seconds, "vacuum analyze" if dialect == "postgresql" else "analyze", connection,
               "VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE")
    return seconds


def rebuild(settings: Settings, parallel: bool = True) -> float:
    started = time.perf_counter()
    with db.transaction(settings) as session:
        if not parallel:
            session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        tallies.rebuild(session)
    return round(time.perf_counter() - started, 2)


def snapshot(settings: Settings) -> list:
    with db.transaction(settings) as session:
        return [session.execute(select(*m.__table__.columns).order_by(*m.__table__.primary_key)).all()
                for m in (CellTally, CleanTally)]


#: What fake_defense runs "as": no container starts, but the attempts record an image.
FAKE_CODE = Metadata(type="defense", container="fake/defense:1", entry_point="run.sh").code(
    Path("fake"), {"container": "sha256:" + "0" * 64})


def fake_defense(_settings: Settings, _code, inputs: list[DefenseInput], _naming_key: bytes) -> DefenseOutcome:
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


def size(engine: Engine, settings: Settings) -> dict[str, int]:
    with engine.connect() as connection:
        count = connection.scalar(text("SELECT count(*) FROM classifications"))
        if engine.dialect.name == "postgresql":
            return {"classifications": count,
                    "classifications bytes (table and key)": connection.scalar(
                        text("SELECT pg_total_relation_size('classifications')")),
                    "database bytes": connection.scalar(text("SELECT pg_database_size(current_database())"))}
    return {"classifications": count, "database bytes": sum(f.stat().st_size for f in settings.data_dir.glob("arena.db*"))}


@contextmanager
def database(backend: str, parent: Path | None) -> Iterator[Settings]:
    """A new, migrated Arena database of the backend's, removed at the end whatever happens."""
    with tempfile.TemporaryDirectory(dir=parent) as scratch:
        if backend == "sqlite":
            settings = Settings(data_dir=Path(scratch))
            db.upgrade(settings)
            yield settings
            return
        with postgres_server(parent, SERVER) as url:
            settings = Settings(data_dir=Path(scratch), database_url=url)
            db.upgrade(settings)
            yield settings


def main(scale: float, backend: str, parent: Path | None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # so that the database is removed
    images = round(5000 * scale)
    with database(backend, parent) as settings:
        engine = db.get_engine(settings.resolved_database_url)
        print(f"{backend}, scale {scale}: generating", flush=True)
        report = {"backend": backend, "scale": scale, "images": images, "generate seconds": generate(engine, images),
                  **size(engine, settings)}
        print(json.dumps(report), flush=True)
        postgresql = backend == "postgresql"
        report["rebuild seconds (cold)"] = rebuild(settings)
        print(json.dumps(report), flush=True)
        timings = land_jobs(settings)
        kept = snapshot(settings)
        report["rebuild seconds"] = rebuild(settings)
        report["tallies equal the recount"] = snapshot(settings) == kept
        if postgresql:
            report["rebuild seconds (no parallel workers)"] = rebuild(settings, parallel=False)
        report["cells"] = len(kept[0])
        report["land seconds (median)"] = round(statistics.median(t for t, _ in timings), 3)
        report["standings seconds (median)"] = round(statistics.median(s for _, s in timings), 3)
        report["land + standings seconds (worst of 5)"] = round(max(t + s for t, s in timings), 3)
        print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="Fraction of the 2017 size (5000 images).")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--parent", type=Path, help="Where the database goes (default: the temporary folder).")
    arguments = parser.parse_args()
    main(arguments.scale, arguments.backend, arguments.parent)
