"""Celery over Redis: the app, its one task, and how packs are handed to it.

A worker runs exactly what the in-process executor runs, ``jobs.run_pack``; delivery is
at-least-once (``acks_late``: a message is acknowledged after the run, so a worker killed
mid-run hands it to another), and ``run_pack``'s claims and fencing tokens make the
results exactly-once. Prefetch is 1 so that a busy worker does not sit on queued packs,
and Redis's visibility timeout must exceed the longest run, or Redis redelivers a
message while its first delivery is still running.
"""

from datetime import timedelta

from celery import Celery

from arena.config import Settings, get_settings
from arena.db import transaction
from arena.execution.pack_run import Pack, run_pack
from arena.models import JobStatus, utcnow
from arena.sandbox import containers

app = Celery("arena")


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker_url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
        worker_hijack_root_logger=False,
    )
    return app


@app.task(name="arena.run_pack")
def run_pack_task(kind: str, job_ids: list[int]) -> int:
    """Run one pack; queue the smaller packs a failure splits it into. Returns jobs finished."""
    settings = get_settings()
    containers.sweep()
    result = run_pack(settings, Pack(kind, tuple(job_ids)))
    for smaller in result.again:
        enqueue(settings, [smaller])
    return result.finished


def enqueue(settings: Settings, packs: list[Pack]) -> None:
    """Mark the packs' jobs queued (with a lease, in case the message is lost) and send them."""
    expires = utcnow() + timedelta(seconds=settings.queue_lease_seconds)
    with transaction(settings) as session:
        for pack in packs:
            session.execute(
                pack.job_class.__table__.update()
                .where(pack.job_class.id.in_(pack.job_ids), pack.job_class.status.in_([JobStatus.PENDING, JobStatus.ERROR]))
                .values(status=JobStatus.QUEUED, lease_expires_at=expires)
            )
    configure(settings)
    for pack in packs:
        run_pack_task.apply_async(args=[pack.kind, list(pack.job_ids)], queue=queue_of(settings, pack))


def queue_of(settings: Settings, pack: Pack) -> str:
    """``gpu`` for a submission that names a container_gpu when GPU routing is on, else ``cpu``."""
    if not settings.gpu_queue:
        return "cpu"
    with transaction(settings) as session:
        submission = session.get(pack.job_class, pack.job_ids[0]).submission
        return "gpu" if submission.meta.get("container_gpu") else "cpu"


configure(get_settings())
