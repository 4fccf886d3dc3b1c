"""Per-image result ingestion into SQLite and PostgreSQL, each way against the one before it,
in one invocation (rounds alternate, the best round of each counts):

- SQLite: ORM unit of work (``session.add_all``) against one bulk ``insert()`` of plain rows
  (the path SQLite keeps);
- PostgreSQL: that bulk ``insert()`` against ``db.bulk_insert`` (COPY), rows only; COPY
  followed by the tally update of the same transaction, as ``jobs._store`` does it; and COPY
  into a database at migration 0005, whose classifications still had four foreign keys;
  and two ceilings: COPY with the key's per-row trigger switched off, and COPY into a
  table left with its primary key only (no index, no key).

The rows are adversarial-image classifications of 20 defenses on 2,500 images x 4 eps of one
attack (200,000 rows, 2,000 defense jobs of 100 rows), stored in transactions of one job
(100 rows), one full pack (2,000 rows, ARENA_MAX_PACK_IMAGES) and 20,000 rows. PostgreSQL is
a private server started here (fsync off, as in the tests) unless --database-url is given.

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

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    CellTally,
    Classification,
    Dataset,
    DefenseJob,
    Image,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)
from arena.results import tallies

sys.path.insert(0, str(REPO_ROOT / "tests"))
from servers import postgres_server  # the tests' private server, reused

IMAGES, DEFENSES, EPSILONS, BATCH = 2500, 20, [2, 4, 8, 16], 100
TRANSACTION_ROWS = [100, 2000, 20000]


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


def orm_add_all(session: Session, rows: list[dict]) -> None:
    session.add_all(Classification(**row) for row in rows)


def bulk_insert(session: Session, rows: list[dict]) -> None:
    session.execute(insert(Classification), rows)


def copy(session: Session, rows: list[dict]) -> None:
    db.bulk_insert(session, Classification.__table__, rows)


def copy_and_tally(session: Session, rows: list[dict]) -> None:
    db.bulk_insert(session, Classification.__table__, rows)
    tallies.count_defense_jobs(session, sorted({row["defense_job_id"] for row in rows}))


def copy_without_triggers(session: Session, rows: list[dict]) -> None:
    """The ceiling with the indexes but without the foreign key's per-row trigger."""
    session.execute(text("SET LOCAL session_replication_role = replica"))
    copy(session, rows)


def without_indexes(settings: Settings) -> Settings:
    """The ceiling of the table itself: only its primary key left."""
    with db.transaction(settings) as session:
        for index in Classification.__table__.indexes:
            session.execute(text(f"DROP INDEX {index.name}"))
        session.execute(text("ALTER TABLE classifications DROP CONSTRAINT classifications_defense_job_id_fkey"))
    return settings


def store_all(settings: Settings, rows: list[dict], per_transaction: int, store: Callable) -> float:
    """Seconds to store every row, ``per_transaction`` at a time; the table is emptied before."""
    with db.transaction(settings) as session:
        session.execute(delete(Classification))
        session.execute(delete(CellTally))
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
    print(f"{backend}: {count:,} rows per measure, best of {rounds} rounds")
    for per_transaction in TRANSACTION_ROWS:
        best = {name: float("inf") for name in methods}
        for _ in range(rounds):
            for name, (settings, store) in methods.items():
                best[name] = min(best[name], store_all(settings, rows[id(settings)], per_transaction, store))
        baseline = next(iter(methods))
        for name, seconds in best.items():
            print(f"  {per_transaction:>6} rows/transaction  {name:<24} {count / seconds:>11,.0f} rows/s  "
                  f"{best[baseline] / seconds:.2f}x {baseline}")


def database(server: str, name: str, scratch: str, revision: str = "head") -> Settings:
    """A new database of the server, migrated to ``revision``."""
    with db.get_engine(server).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    settings = Settings(data_dir=Path(scratch) / name, database_url=server.rsplit("/", 1)[0] + f"/{name}")
    db.upgrade(settings, revision)
    return settings


def main(rounds: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        sqlite = Settings(data_dir=Path(scratch) / "sqlite")
        db.upgrade(sqlite)
        measure("sqlite", {"bulk insert": (sqlite, bulk_insert), "orm add_all": (sqlite, orm_add_all)}, rounds)
        with postgres_server() if database_url is None else nullcontext(database_url) as url:
            head, four_keys = database(url, "ingest_head", scratch), database(url, "ingest_0005", scratch, "0005")
            bare = without_indexes(database(url, "ingest_bare", scratch))
            measure("postgresql", {"bulk insert": (head, bulk_insert), "copy": (head, copy),
                                   "copy + tallies": (head, copy_and_tally),
                                   "copy, four keys (0005)": (four_keys, copy),
                                   "copy, no trigger": (head, copy_without_triggers),
                                   "copy, primary key only": (bare, copy)}, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="A PostgreSQL server's database to create two databases from "
                                               "(default: a private server started here).")
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.database_url)
