"""Efficiency of a finished tournament: container time / (concurrency x wall time).

Reads the job attempts of the data dir in ARENA_DATA_DIR (for instance data/real after
`make demo-real`): container time is the sum, over container runs, of their seconds (a
pack's attempts share one run); wall time runs from the first attempt's start to the last
one's end. 1.0 means the containers were busy the whole time, with nothing lost to the
platform between runs.

    ARENA_DATA_DIR=data/real .venv/bin/python bench/efficiency.py [--since 2026-11-25T02:56]
"""

import argparse
from datetime import datetime, timezone

from sqlalchemy import func, select

from arena.config import get_settings
from arena.db import transaction
from arena.models import JobAttempt


def main(since: str | None) -> None:
    settings = get_settings()
    start = datetime.fromisoformat(since).replace(tzinfo=timezone.utc) if since else datetime.min.replace(tzinfo=timezone.utc)
    with transaction(settings) as session:
        window = JobAttempt.started_at >= start
        busy = session.scalar(select(func.sum(JobAttempt.seconds / func.coalesce(JobAttempt.pack_jobs, 1))).where(window))
        first, last = session.execute(select(func.min(JobAttempt.started_at), func.max(JobAttempt.ended_at)).where(window)).one()
        runs = session.scalar(select(func.sum(1.0 / func.coalesce(JobAttempt.pack_jobs, 1))).where(window))
    wall = (last - first).total_seconds()
    print(f"container runs: {runs:.0f}, container time: {busy:.0f} s, wall: {wall:.0f} s, concurrency: {settings.concurrency}")
    print(f"efficiency = container time / (concurrency x wall) = {busy / (settings.concurrency * wall):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", help="only attempts started at or after this UTC time (ISO format)")
    main(parser.parse_args().since)
