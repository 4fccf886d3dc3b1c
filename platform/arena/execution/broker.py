"""Celery over Redis: the app for given settings, its three tasks (a pack; a query job; a
submission's dry run), and how they are sent to it.

A worker runs exactly what the in-process executor runs, ``pack_run.run_pack`` and
``query_jobs.run_job``; delivery
is at-least-once (``acks_late``: a message is acknowledged after the run, so a worker
killed mid-run hands it to another), and the claims and fencing tokens of ``leases`` make
the results exactly-once. Prefetch is 1 so that a busy worker does not sit on queued
packs, and Redis's visibility timeout must exceed the longest run, or Redis redelivers a
message while its first delivery is still running.

The app is built from the settings it is given (``celery_app``), never configured at
import: the worker passes its own settings (``arena worker --gpu`` changes a copy), the
dispatcher passes its own, and nothing is shared behind their backs.

Dry runs have a queue of their own, ``dryrun``, which every CPU worker takes beside
``cpu``: an upload is checked while a long tournament's packs wait in theirs.
"""

import socket
from collections.abc import Callable

from celery import Celery
from celery.exceptions import Reject

from arena import job_states
from arena.config import Settings
from arena.db import transaction
from arena.execution import checking, query_jobs, workers
from arena.execution.pack_run import Pack, run_pack
from arena.models import DryRun, QueryJob, Submission
from arena.sandbox import containers

TASK = "arena.run_pack"
CHECK_TASK = "arena.check"
QUERY_TASK = "arena.run_query_job"
DRY_RUN_QUEUE, QUEUES = workers.DRY_RUN_QUEUE, workers.QUEUES


def celery_app(settings: Settings, worker: workers.Registration | None = None) -> Celery:
    """A Celery app on ``settings.broker_url`` whose tasks run packs and dry runs with these
    settings, for the registered ``worker`` when this process is one."""
    app = Celery("arena", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
        worker_hijack_root_logger=False,
    )

    @app.task(name=TASK, shared=False)  # this app only: another app in the process keeps its own settings
    def run_pack_task(kind: str, job_ids: list[int]) -> int:
        """Run one pack; queue the smaller packs a failure splits it into. Returns jobs finished."""
        _unless_draining(worker)
        containers.sweep()
        result = run_pack(settings, Pack(kind, tuple(job_ids)), worker and worker.id)
        if not result.taken:
            _unless_draining(worker, took_nothing=True)
        enqueue(settings, app, result.again)
        return result.finished

    @app.task(name=QUERY_TASK, shared=False)
    def run_query_task(job_id: int) -> bool:
        """Run one query job (nothing when another runner holds it or it is done); True when stored here."""
        _unless_draining(worker)
        containers.sweep()
        stored = query_jobs.run_job(settings, job_id, worker and worker.id)
        if not stored:
            _unless_draining(worker, took_nothing=True)
        return stored

    @app.task(name=CHECK_TASK, shared=False)
    def check_task(dry_run_id: int) -> bool | None:
        """Run one submission's dry run (nothing when another runner holds it or it is done)."""
        _unless_draining(worker)
        containers.sweep()
        checked = checking.check(settings, dry_run_id, worker and worker.id)
        if checked is None:
            _unless_draining(worker, took_nothing=True)
        return checked

    return app


def serve(settings: Settings, concurrency: int, queues: list[str]) -> None:
    """Be a Celery worker on this host until stopped: registered (``workers``), named after
    its row so that an organizer's drain reaches this one only, taking packs from ``queues``."""
    with workers.registered(settings, "celery", concurrency, queues) as me:
        node = f"arena-{me.id}@{socket.gethostname()}"
        app = celery_app(settings, me)
        me.on_drain = follow_draining(app, node, queues)
        app.worker_main(["worker", "--pool", "threads", "--concurrency", str(concurrency), "--queues", ",".join(queues),
                         "--hostname", node, "--loglevel", "INFO", "--without-gossip", "--without-mingle"])


def _unless_draining(worker: workers.Registration | None, took_nothing: bool = False) -> None:
    """A drained worker hands back the message it took (it goes back for another worker).
    Before a run, as its last heartbeat read the flag (no query for every message): what it
    prefetched before it stopped consuming. After a run whose claim took nothing, as the
    database says now: a drain its heartbeat has not read yet, which the claim refused
    (``job_states.taking_work``), and which the worker then follows at once."""
    if worker is None:
        return
    if worker.draining_now() if took_nothing else worker.draining.is_set():
        raise Reject("this worker is draining", requeue=True)


def follow_draining(app: Celery, node: str, queues: list[str]) -> Callable[[bool], None]:
    """What the worker ``node`` does when an organizer drains it (stops consuming its queues,
    finishing what runs) or lets it take work again (consumes them again)."""

    def consume(draining: bool) -> None:
        for queue in queues:
            if draining:
                app.control.cancel_consumer(queue, destination=[node])
            else:
                app.control.add_consumer(queue, destination=[node])

    return consume


def queue_lengths(settings: Settings) -> dict[str, int]:
    """Messages waiting in each of Arena's queues of the broker (taken ones not counted)."""
    with celery_app(settings).connection_for_read() as connection:
        channel = connection.default_channel
        return {queue: channel.queue_declare(queue=queue).message_count for queue in QUEUES}


def enqueue_dry_runs(settings: Settings, app: Celery, dry_run_ids: list[int]) -> None:
    """Mark the dry runs queued (with a lease, in case the message is lost) and send them to
    their own queue."""
    if not dry_run_ids:
        return
    with transaction(settings) as session:
        job_states.queue(session, DryRun, tuple(dry_run_ids), settings.max_attempts, settings.queue_lease_seconds)
    for dry_run_id in dry_run_ids:
        app.send_task(CHECK_TASK, args=[dry_run_id], queue=DRY_RUN_QUEUE)


def enqueue(settings: Settings, app: Celery, packs: list[Pack]) -> None:
    """Mark the packs' jobs queued (with a lease, in case the message is lost) and send them."""
    if not packs:
        return
    with transaction(settings) as session:
        for pack in packs:
            job_states.queue(session, pack.kind.job_class, pack.job_ids, settings.max_attempts, settings.queue_lease_seconds)
    for pack in packs:
        app.send_task(TASK, args=[pack.kind.value, list(pack.job_ids)], queue=queue_of(settings, pack))


def queue_of(settings: Settings, pack: Pack) -> str:
    """The queue of a pack: its submission's (``_queue_for``)."""
    with transaction(settings) as session:
        return _queue_for(settings, [session.get(pack.kind.job_class, pack.job_ids[0]).submission])


def query_queue_of(settings: Settings, job_id: int) -> str:
    """The queue of a query job: ``gpu`` when its attack or its served defense wants one
    (a GPU worker runs both containers, each on its GPU image where it names one)."""
    with transaction(settings) as session:
        job = session.get_one(QueryJob, job_id)
        return _queue_for(settings, [job.attack, job.defense])


def _queue_for(settings: Settings, submissions: list[Submission]) -> str:
    """``gpu`` when GPU routing is on and a submission names a container_gpu, else ``cpu``."""
    wants_gpu = any(submission.meta.get("container_gpu") for submission in submissions)
    return "gpu" if settings.gpu_queue and wants_gpu else "cpu"


def enqueue_query_jobs(settings: Settings, app: Celery, job_ids: list[int]) -> None:
    """Mark the query jobs queued (with a lease, in case the message is lost) and send them
    to their queue (``query_queue_of``), one message each: a query job is never packed."""
    if not job_ids:
        return
    with transaction(settings) as session:
        job_states.queue(session, QueryJob, tuple(job_ids), settings.max_attempts, settings.queue_lease_seconds)
    for job_id in job_ids:
        app.send_task(QUERY_TASK, args=[job_id], queue=query_queue_of(settings, job_id))
