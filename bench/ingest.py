"""Per-image answer ingestion into SQLite and PostgreSQL: how a defense job's answers are
stored now against how they were stored before migration 0013, in one invocation (rounds
alternate between the ways, the best round of each counts):

- before: ``classifications`` as migration 0010 left it (surrogate id, a foreign key to the
  defense job, an index per job and two partial unique indexes), rebuilt in the bench's own
  database; the rows inserted straight into it (COPY on PostgreSQL, one executemany insert
  on SQLite), then the tallies counted from the rows read back by job, each row's cell found
  through its adversarial image: ``tallies.count_defense_jobs`` as it was;
- now: ``answers.store`` into the table keyed by (defense job, image) alone, the tallies
  counted from a staging table of the same rows: on PostgreSQL the same bytes copied into
  the table and the staging table, then one statement counting; on SQLite the rows staged,
  counted, and moved into the table by INSERT ... SELECT;
- on PostgreSQL, the other way: the rows copied into the staging table alone, then one
  statement moving them with INSERT ... SELECT and counting the rows it returns;
- the same rows alone (no tallies), each way: what counting costs.

The rows are adversarial-image answers of 20 defenses on 2,500 images x 4 eps of one attack
(200,000 rows, 2,000 defense jobs of 100 rows), stored in transactions of one job (100
rows), one full pack (2,000 rows, ARENA_MAX_PACK_IMAGES) and 20,000 rows. PostgreSQL is a
private server started here (fsync off, as in the tests) unless --database-url is given.

    .venv/bin/python bench/ingest.py [--rounds 3] [--database-url URL]
"""

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from sqlalchemy import delete, func, insert, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    CellTally,
    Classification,
    CleanTally,
    Dataset,
    DefenseJob,
    Image,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)
from arena.results import answers, tallies
from arena.results.judging import error, hit

sys.path.insert(0, str(REPO_ROOT / "tests"))
from servers import postgres_server  # the tests' private server, reused

IMAGES, DEFENSES, EPSILONS, BATCH = 2500, 20, [2, 4, 8, 16], 100
TRANSACTION_ROWS = [100, 2000, 20000]
CLASSIFICATIONS = Classification.__table__

#: ``classifications`` as migration 0010 left it; ``{id}`` is the dialect's auto-numbered key.
BEFORE_0013 = [
    "DROP TABLE classifications",
    """CREATE TABLE classifications (
         id {id} PRIMARY KEY,
         defense_job_id INTEGER NOT NULL REFERENCES defense_jobs (id) ON DELETE CASCADE,
         defense_id INTEGER NOT NULL, image_id INTEGER NOT NULL, adversarial_image_id INTEGER,
         label INTEGER, problem VARCHAR(20))""",
    "CREATE INDEX ix_classifications_defense_job_id ON classifications (defense_job_id)",
    """CREATE UNIQUE INDEX uq_classification_adversarial ON classifications (defense_id, adversarial_image_id)
       WHERE adversarial_image_id IS NOT NULL""",
    "CREATE UNIQUE INDEX uq_classification_clean ON classifications (defense_id, image_id) WHERE adversarial_image_id IS NULL",
]


def _submission(session: Session, team: Team, name: str, kind: SubmissionKind) -> int:
    submission = Submission(team=team, name=name, kind=kind, sha256=hashlib.sha256(name.encode()).hexdigest(), meta={},
                            status=SubmissionStatus.ACCEPTED)
    session.add(submission)
    session.flush()
    return submission.id


def setup(settings: Settings) -> list[dict]:
    """A tournament's skeleton without results; return the classification rows to store, job by job."""
    with db.transaction(settings) as session:
        dataset = Dataset(name="ingest")
        team = Team(name="t")
        session.add_all([dataset, team])
        session.flush()
        batches = [Batch(dataset_id=dataset.id, index=k) for k in range(IMAGES // BATCH)]
        session.add_all(batches)
        session.flush()
        session.execute(insert(Image), [
            {"dataset_id": dataset.id, "batch_id": batches[k // BATCH].id, "name": f"{k}", "true_label": k % 1000 + 1,
             "target_class": (k * 7) % 1000 + 1, "sha256": f"{k:064d}"} for k in range(IMAGES)])
        attack = _submission(session, team, "attack", SubmissionKind.ATTACK)
        defenses = [_submission(session, team, f"defense{d}", SubmissionKind.DEFENSE) for d in range(DEFENSES)]
        session.execute(insert(AttackJob), [{"submission_id": attack, "batch_id": b.id, "epsilon": e}
                                            for e in EPSILONS for b in batches])
        images = session.execute(select(Image.id, Image.batch_id, Image.true_label)).all()
        attack_jobs = session.execute(select(AttackJob.id, AttackJob.batch_id)).all()
        session.execute(insert(AdversarialImage), [
            {"attack_job_id": job, "image_id": image, "sha256": "0" * 64, "linf": 0}
            for job, batch in attack_jobs for image, image_batch, _ in images if image_batch == batch])
        session.execute(insert(DefenseJob), [{"submission_id": d, "batch_id": batch, "attack_job_id": job}
                                             for d in defenses for job, batch in attack_jobs])
        adversarial = session.execute(select(AdversarialImage.attack_job_id, AdversarialImage.image_id,
                                             AdversarialImage.id)).all()
        truth = {image: label for image, _, label in images}
        of_job = {}
        for job, image, adversarial_id in adversarial:
            of_job.setdefault(job, []).append((image, adversarial_id))
        rows = []
        for defense_job, defense, attack_job in session.execute(
            select(DefenseJob.id, DefenseJob.submission_id, DefenseJob.attack_job_id).order_by(DefenseJob.id)
        ):
            rows += [{"defense_job_id": defense_job, "defense_id": defense, "image_id": image,
                      "adversarial_image_id": adversarial_id, "label": truth[image] if image % 3 else 1, "problem": None}
                     for image, adversarial_id in of_job[attack_job]]
        return rows


def before_0013(settings: Settings) -> Settings:
    """The bench's own database with ``classifications`` made again as migration 0010 left it."""
    dialect = db.get_engine(settings.resolved_database_url).dialect.name
    with db.transaction(settings) as session:
        for statement in BEFORE_0013:
            session.execute(text(statement.format(id="SERIAL" if dialect == "postgresql" else "INTEGER")))
    return settings


def rows_before(session: Session, rows: list[dict]) -> None:
    db.bulk_insert(session, CLASSIFICATIONS, rows)


def stored_before(session: Session, rows: list[dict]) -> None:
    """As ``pack_run._store`` stored a defense pack before 0013: the rows into the table, then
    their jobs' rows read back and counted, each row's cell through its adversarial image."""
    rows_before(session, rows)
    dialect = session.get_bind().dialect.name
    answers = CLASSIFICATIONS
    of_jobs = answers.c.defense_job_id.in_(sorted({row["defense_job_id"] for row in rows}))
    cell = (Image.dataset_id, AttackJob.submission_id, answers.c.defense_id, AttackJob.epsilon)
    cells = (select(*cell, func.count(), func.sum(error(answers.c.label)), func.sum(hit(answers.c.label)))
             .join(AdversarialImage, answers.c.adversarial_image_id == AdversarialImage.id)
             .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
             .join(Image, answers.c.image_id == Image.id)
             .where(of_jobs).group_by(*cell).order_by(*cell))
    clean = (Image.dataset_id, answers.c.defense_id)
    cleans = (select(*clean, func.count(), func.sum(error(answers.c.label)))
              .join(Image, answers.c.image_id == Image.id)
              .where(answers.c.adversarial_image_id.is_(None), of_jobs).group_by(*clean).order_by(*clean))
    session.execute(tallies.adding(dialect, CellTally, cells))
    session.execute(tallies.adding(dialect, CleanTally, cleans))


def rows_now(session: Session, rows: list[dict]) -> None:
    db.bulk_insert(session, CLASSIFICATIONS, rows)


def stored_now(session: Session, rows: list[dict]) -> None:
    answers.store(session, rows)


def moved_and_counted(session: Session, rows: list[dict]) -> None:
    """The other way on PostgreSQL: the rows copied into the staging table alone, then one
    statement moving them into the table with INSERT ... SELECT and counting the rows it
    returns."""
    session.execute(CreateTable(answers.STAGED, if_not_exists=True))
    session.execute(delete(answers.STAGED))
    db.bulk_insert(session, answers.STAGED, rows)
    stored = (insert(CLASSIFICATIONS).from_select(answers.COLUMNS, select(answers.STAGED))
              .returning(*CLASSIFICATIONS.c).cte("stored"))
    cells = tallies.adding("postgresql", CellTally, tallies.cell_counts(stored)).returning(literal_column("1")).cte("cells")
    session.execute(tallies.adding("postgresql", CleanTally, tallies.clean_counts(stored)).add_cte(cells))


def store_all(settings: Settings, rows: list[dict], per_transaction: int, store: Callable) -> float:
    """Seconds to store every row, ``per_transaction`` at a time; the tables are emptied before."""
    emptied = (CLASSIFICATIONS, CellTally.__table__, CleanTally.__table__)
    with db.transaction(settings) as session:
        if session.get_bind().dialect.name == "postgresql":  # as new: no dead rows left behind
            session.execute(text(f"TRUNCATE {', '.join(table.name for table in emptied)}"))
        for table in emptied:
            session.execute(delete(table))
    started = time.perf_counter()
    for start in range(0, len(rows), per_transaction):
        with db.transaction(settings) as session:
            store(session, rows[start:start + per_transaction])
    return time.perf_counter() - started


def measure(backend: str, methods: dict[str, tuple[Settings, Callable]], rounds: int) -> None:
    """Each method stores the same rows into its own database, rounds alternating between them."""
    rows = {}
    for settings, _ in methods.values():
        if id(settings) not in rows:
            rows[id(settings)] = setup(settings)
    count = len(next(iter(rows.values())))
    print(f"{backend}: {count:,} rows per measure, best of {rounds} rounds", flush=True)
    for per_transaction in TRANSACTION_ROWS:
        best = {name: float("inf") for name in methods}
        for _ in range(rounds):
            for name, (settings, store) in methods.items():
                best[name] = min(best[name], store_all(settings, rows[id(settings)], per_transaction, store))
        baseline = next(iter(methods))
        for name, seconds in best.items():
            print(f"  {per_transaction:>6} rows/transaction  {name:<34} {count / seconds:>11,.0f} rows/s  "
                  f"{best[baseline] / seconds:.2f}x {baseline}", flush=True)


def database(server: str, name: str, scratch: str) -> Settings:
    """A new database of the server, at the newest migration."""
    with db.get_engine(server).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    settings = Settings(data_dir=Path(scratch) / name, database_url=server.rsplit("/", 1)[0] + f"/{name}")
    db.upgrade(settings)
    return settings


def ways(before: Settings, now: Settings) -> dict[str, tuple[Settings, Callable]]:
    """The ways to compare, the baseline first."""
    compared = {"before 0013: rows + tallies read back": (before, stored_before), "now: answers.store": (now, stored_now)}
    if now.resolved_database_url.startswith("postgresql"):
        compared["staged, moved by INSERT ... SELECT"] = (now, moved_and_counted)
    return {**compared, "before 0013: rows alone": (before, rows_before), "now: rows alone": (now, rows_now)}


def main(rounds: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        sqlite_before, sqlite_now = (Settings(data_dir=Path(scratch) / name) for name in ("sqlite_before", "sqlite_now"))
        for settings in (sqlite_before, sqlite_now):
            db.upgrade(settings)
        measure("sqlite", ways(before_0013(sqlite_before), sqlite_now), rounds)
        with postgres_server() if database_url is None else nullcontext(database_url) as url:
            before, now = before_0013(database(url, "ingest_before", scratch)), database(url, "ingest_now", scratch)
            measure("postgresql", ways(before, now), rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="A PostgreSQL server's database to create two databases from "
                                               "(default: a private server started here).")
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.database_url)
