"""The in-process executor: plan, pack, run on a thread pool, repeat until nothing is missing.

Container runs wait on the Docker engine, not on Python, so threads are enough to keep
``concurrency`` containers busy. Defense jobs over an attack's output can only be planned
once that attack job is done, so planning runs again whenever a pack finishes and a slot
of the pool is free, and the defense packs it finds join at once (waiting for a free slot
lets defense jobs pile up into fuller packs). Jobs held by another runner (a second
``arena run``, the web's Run button, a runner that died and whose lease has not run out
yet) are followed, not taken: the run ends when nothing runs here and nothing is held
anywhere, so it never leaves work behind that someone else dropped. Uploads waiting for
their dry run are checked in the same pool, ahead of every pack, so that what they add is
planned in the same run; the tournament's packs take the slots the dry runs leave free, so
intake and tournament overlap instead of the tournament waiting for the last dry run.
The query track's jobs (``query_jobs``: one attack against one served defense, two
containers) are planned in the same turn and take slots of the same pool.
"""

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.errors import PlatformError
from arena.execution import checking, planning, query_jobs, workers
from arena.execution.pack_run import Pack, PackResult, run_pack
from arena.execution.packing import next_packs
from arena.execution.summary import Progress, RunSummary, silent
from arena.models import Dataset, JobKind
from arena.sandbox import containers

#: How often a runner with nothing of its own to wait for looks at the jobs others hold.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Turn:
    """What one planning pass found: packs and query jobs to run, defense jobs still to come,
    jobs others hold."""

    packs: list[Pack]
    to_come: int
    held: int
    query_jobs: list[int]


@retry_while_unreachable
def _turn(settings: Settings, dataset_id: int, skip: frozenset[tuple[JobKind, int]], skip_queries: frozenset[int]
          ) -> Turn:
    with transaction(settings) as session:
        dataset = session.get_one(Dataset, dataset_id)
        packs = next_packs(session, settings, dataset, skip)  # reaps every kind, query jobs included
        queries = [job for job in query_jobs.runnable(session, settings, dataset) if job not in skip_queries]
        return Turn(packs, planning.expected_defense_jobs(session, dataset), planning.held(session, dataset), queries)


def _query_job(settings: Settings, job_id: int, worker_id: int) -> tuple[bool, str | None]:
    """Run one query job: whether this run stored it, and the platform's error if it failed it."""
    try:
        return query_jobs.run_job(settings, job_id, worker_id), None
    except PlatformError as exc:
        return False, f"query job {job_id}: {exc}"


def run_missing(settings: Settings, dataset_id: int, progress: Progress = silent) -> RunSummary:
    """Run every missing job of the dataset's tournament in this process, registered as a
    worker (``workers``); return what ran. A job the platform failed (no engine, missing
    image) is not tried again in this run."""
    containers.sweep()
    pool = ThreadPoolExecutor(max_workers=settings.concurrency)
    try:
        with workers.registered(settings, "run", settings.concurrency) as me:
            return _rounds(settings, dataset_id, progress, pool, me)
    finally:
        # On Ctrl-C: the runs under way finish and are stored; nothing queued starts.
        pool.shutdown(wait=True, cancel_futures=True)


def _rounds(settings: Settings, dataset_id: int, progress: Progress, pool: ThreadPoolExecutor,
            me: workers.Registration) -> RunSummary:
    summary = RunSummary(where="in-process", container_runs=0)
    failed: set[tuple[JobKind, int]] = set()
    running: dict[Future, Pack] = {}
    checks: dict[Future, int] = {}  # dry runs under way, by their id
    checked: set[int] = set()  # every dry run handed out: one the platform failed is not tried again in this run
    queried: dict[Future, int] = {}  # query jobs under way, by their id
    queries_failed: set[int] = set()

    def in_flight() -> set[tuple[JobKind, int]]:
        return {(pack.kind, job) for pack in running.values() for job in pack.job_ids}

    def hand_out() -> Turn:
        draining = me.draining_now()  # its claims would be refused: hand out nothing to be refused
        if not draining:  # queued first: the pool takes them before any pack
            for dry_run_id in checking.waiting(settings):
                if dry_run_id not in checked:
                    checks[pool.submit(checking.check, settings, dry_run_id, me.id)] = dry_run_id
                    checked.add(dry_run_id)
        turn = _turn(settings, dataset_id, frozenset(failed | in_flight()), frozenset(queries_failed | {*queried.values()}))
        if draining:  # an organizer's choice: what runs finishes, nothing new starts
            summary.drained = summary.drained or bool(turn.packs or turn.query_jobs)
            return turn
        for pack in turn.packs:
            running[pool.submit(run_pack, settings, pack, me.id)] = pack
        for job_id in turn.query_jobs:
            queried[pool.submit(_query_job, settings, job_id, me.id)] = job_id
        return turn

    progress(0, 0, "checking the uploads waiting for their dry run")
    turn = hand_out()
    while running or checks or queried or (turn.held and not me.draining.is_set()):
        if running or checks or queried:
            finished, _ = wait([*running, *checks, *queried], timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        else:  # only others' jobs are open: follow them until they finish or their lease runs out
            finished = set()
            time.sleep(POLL_SECONDS)
        for future in finished:
            if checks.pop(future, None) is not None:
                future.result()  # accepted, rejected or left queued: the next turn plans what it added
                continue
            if (job_id := queried.pop(future, None)) is not None:
                _record_query(summary, job_id, future.result(), queries_failed)
                continue
            pack = running.pop(future)
            for smaller in _record(summary, pack, future.result(), failed):
                running[pool.submit(run_pack, settings, smaller, me.id)] = smaller
        busy = len(running) + len(checks) + len(queried)
        if (finished and busy < settings.concurrency) or not busy:
            turn = hand_out()
        total = summary.jobs + len(in_flight()) + len(queried) + turn.to_come
        progress(summary.jobs, max(total, summary.jobs),
                 _status(len(running) + len(queried), len(checks), turn, me.draining.is_set()))
    return summary


def _status(running: int, checks: int, turn: Turn, draining: bool) -> str:
    if draining:
        return f"draining: finishing {running + checks} container run(s), starting none"
    if checks:
        return f"{checks} dry run(s) and {running} container run(s) under way"
    if running:
        return f"{running} container run(s) under way"
    if turn.held:
        return f"waiting for {turn.held} job(s) held by another runner"
    return "done"


def _record(summary: RunSummary, pack: Pack, result: PackResult, failed: set[tuple[JobKind, int]]) -> list[Pack]:
    """Count what a run finished; return the smaller packs it left to run."""
    summary.container_runs += result.container_runs
    summary.finished[pack.kind] += result.finished
    if result.platform_error:
        failed.update((pack.kind, j) for j in pack.job_ids)
        summary.platform_errors.append(result.platform_error)
    return result.again


def _record_query(summary: RunSummary, job_id: int, result: tuple[bool, str | None], failed: set[int]) -> None:
    """Count a query job this run stored; one the platform failed is not tried again in this run."""
    stored, error = result
    summary.container_runs += 1
    summary.query_jobs += stored
    if error:
        failed.add(job_id)
        summary.platform_errors.append(error)
