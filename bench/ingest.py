"""Per-image result ingestion: ORM unit of work (``session.add_all``) against a bulk
``insert()`` of plain rows, into the same SQLite database, in one invocation.

    .venv/bin/python bench/ingest.py [--rows 20000] [--database-url URL]
"""

import argparse
import tempfile
import time
from pathlib import Path

from arena import db
from arena.config import Settings
from arena.dataset import store_dataset, synthesize
from arena.models import (
    Classification,
    DefenseJob,
    Image,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)
from sqlalchemy import delete, insert, select


def _setup(settings: Settings, rows: int) -> tuple[int, int, list[int]]:
    store_dataset(settings, "ingest", synthesize(100), batch_size=100)
    with db.transaction(settings) as session:
        defense = Submission(team=Team(name="t"), name="d", kind=SubmissionKind.DEFENSE, sha256="d" * 64, meta={},
                             status=SubmissionStatus.ACCEPTED)
        session.add(defense)
        session.flush()
        images = list(session.scalars(select(Image.id)))
        job = DefenseJob(submission_id=defense.id, batch_id=session.scalar(select(Image.batch_id)))
        session.add(job)
        session.flush()
        return defense.id, job.id, images


def main(rows: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), database_url=database_url)
        db.upgrade(settings)
        defense_id, job_id, images = _setup(settings, rows)
        # clean-image classifications are unique per (defense, image): use one defense per chunk of images
        values = [dict(defense_job_id=job_id, defense_id=defense_id, image_id=images[k % len(images)], label=k % 1000 + 1)
                  for k in range(len(images))]
        timings = {"orm add_all": [], "bulk insert": []}
        repeats = max(1, rows // len(values))
        for _ in range(3):
            for method in timings:
                with db.transaction(settings) as session:
                    session.execute(delete(Classification))
                started = time.perf_counter()
                for _ in range(repeats):
                    with db.transaction(settings) as session:
                        if method == "orm add_all":
                            session.add_all(Classification(**v) for v in values)
                        else:
                            session.execute(insert(Classification), values)
                    with db.transaction(settings) as session:
                        session.execute(delete(Classification))
                timings[method].append(time.perf_counter() - started)
        inserted = repeats * len(values)
        best = {method: min(t) for method, t in timings.items()}
        print(f"{inserted} rows in transactions of {len(values)} (one defense job's worth), {settings.resolved_database_url.split(':')[0]}")
        for method, seconds in best.items():
            print(f"{method}: {inserted / seconds:,.0f} rows/s (includes deleting them again)")
        print(f"ratio bulk / orm: {best['orm add_all'] / best['bulk insert']:.2f}x faster")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    main(arguments.rows, arguments.database_url)
