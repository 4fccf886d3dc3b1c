"""The workers that take jobs, as an organizer sees them: who is alive, what each host
offers, what each runs, and which have gone away.

Every process that claims jobs (a Celery worker, an ``arena run``, the web's runner and
upload checker) registers a ``Worker`` row while it works (``registered``), and a thread
beats it every quarter lease: last seen, the engine's images, and whether an organizer
asked it to drain. A clean exit marks the row stopped; a killed process simply stops
beating, and its row is judged lost once a lease has passed (``state``), never deleted:
a host that went away stays on the page with what it was running. Its jobs are not
stranded either: their leases run out and the reaper hands them on (``job_states.reap``).
"""

import glob
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.errors import NotFoundError
from arena.models import (
    AttackJob,
    DefenseJob,
    DryRun,
    JobStatus,
    QueryJob,
    Submission,
    SubmissionStatus,
    Worker,
    as_utc,
    utcnow,
)
from arena.sandbox import registry
from arena.sandbox.containers import ENGINE_ERRORS, SandboxError, docker_client

#: The broker's queues: uploads to check, packs for any host, packs for GPU hosts.
DRY_RUN_QUEUE = "dryrun"
QUEUES = (DRY_RUN_QUEUE, "cpu", "gpu")

#: The jobs a worker may hold, by the name the page gives them.
JOB_CLASSES = {"dry run": DryRun, "attack": AttackJob, "defense": DefenseJob, "query": QueryJob}


class WorkerState(StrEnum):
    """Where a worker stands, judged from its row alone."""

    ALIVE = "alive"
    DRAINING = "draining"  # alive, taking no new work
    STOPPED = "stopped"  # exited cleanly
    LOST = "lost"  # stopped beating without saying so: killed, or its host went away


def state(worker: Worker, lease_seconds: float, now: datetime | None = None) -> WorkerState:
    """The one judgement of a worker's row: silent for a whole lease means lost, since a live
    worker beats four times a lease."""
    if worker.stopped_at is not None:
        return WorkerState.STOPPED
    if as_utc(worker.last_seen) < (now or utcnow()) - timedelta(seconds=lease_seconds):
        return WorkerState.LOST
    return WorkerState.DRAINING if worker.draining else WorkerState.ALIVE


@dataclass(frozen=True)
class EngineReport:
    """What this host's Docker engine offers."""

    version: str | None
    runtimes: list[str]
    images: list[str]  # ids and tags


def engine_report() -> EngineReport:
    """The engine's version, runtimes and images, asked once when a worker registers; an
    unreachable engine is reported as none, not raised: a worker without one still beats,
    and the page says that it has none."""
    try:
        client = docker_client()
        version = client.version().get("Version")
        runtimes = sorted(client.info().get("Runtimes", {}))
    except (SandboxError, *ENGINE_ERRORS):
        return EngineReport(None, [], [])
    return EngineReport(version, runtimes, engine_images())


def engine_images() -> list[str]:
    """The engine's images by id and by tag, which change as images are loaded: each beat
    asks again (one call), where the version and runtimes are asked once."""
    try:
        images = docker_client().images.list()
    except (SandboxError, *ENGINE_ERRORS):
        return []
    return sorted({name for image in images for name in (image.id, *image.tags)})


def gpu_count() -> int:
    """NVIDIA devices on this host, which containers get when the worker runs with ``--gpu``."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


@dataclass
class Registration:
    """This process's row, and what its heartbeat last read back from it. ``on_drain`` is
    told when an organizer drains the worker or lets it take work again (a Celery worker
    stops and resumes consuming its queues)."""

    id: int
    settings: Settings
    draining: threading.Event = field(default_factory=threading.Event)
    on_drain: Callable[[bool], None] | None = None

    def draining_now(self) -> bool:
        """Whether this worker is draining, as the database says now (what its claims read,
        ``job_states.taking_work``) rather than as its last heartbeat read it. A drain the
        heartbeat has not read yet is followed at once (``beat``): a Celery worker stops
        consuming before its next message, and a runner hands out nothing more, rather than
        have claim after claim refused until the next beat."""
        if self.draining.is_set():
            return True
        if not _asked_to_drain(self.settings, self.id):
            return False
        self.beat()
        return True

    def beat(self) -> None:
        """Say this worker is alive, with the engine's images now; follow the draining flag."""
        draining = _beat(self.settings, self.id, engine_images())
        if draining != self.draining.is_set():
            self.draining.set() if draining else self.draining.clear()
            if self.on_drain is not None:
                self.on_drain(draining)


@retry_while_unreachable
def _beat(settings: Settings, worker_id: int, images: list[str]) -> bool:
    """Refresh the row; return whether an organizer asked it to drain."""
    with transaction(settings) as session:
        session.execute(update(Worker).where(Worker.id == worker_id).values(last_seen=utcnow(), images=images))
        return _draining(session, worker_id)


@retry_while_unreachable
def _asked_to_drain(settings: Settings, worker_id: int) -> bool:
    with transaction(settings) as session:
        return _draining(session, worker_id)


def _draining(session: Session, worker_id: int) -> bool:
    return bool(session.scalar(select(Worker.draining).where(Worker.id == worker_id)))


@retry_while_unreachable
def _register(settings: Settings, kind: str, concurrency: int, queues: list[str]) -> int:
    engine = engine_report()
    with transaction(settings) as session:
        worker = Worker(kind=kind, host=socket.gethostname(), pid=os.getpid(), engine_version=engine.version,
                        runtimes=engine.runtimes, gpus=gpu_count() if settings.sandbox.gpu else 0,
                        concurrency=concurrency, queues=queues, images=engine.images)
        session.add(worker)
        session.flush()
        return worker.id


@retry_while_unreachable
def _stopped(settings: Settings, worker_id: int) -> None:
    with transaction(settings) as session:
        session.execute(update(Worker).where(Worker.id == worker_id).values(stopped_at=utcnow()))


@contextmanager
def registered(settings: Settings, kind: str, concurrency: int, queues: list[str] | None = None
               ) -> Iterator[Registration]:
    """A row for this worker, beaten every quarter lease while the block runs, marked stopped
    when it ends (an exception included: only a killed process leaves it to be judged lost)."""
    me = Registration(_register(settings, kind, concurrency, list(queues or [])), settings)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.lease_seconds / 4):
            me.beat()

    thread = threading.Thread(target=beat, name=f"worker-{me.id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join()
        _stopped(settings, me.id)


def set_draining(session: Session, worker_id: int, draining: bool) -> Worker:
    """Take no new work (finish what runs), or take work again: the worker's claims ask the
    flag from its commit on (``job_states.taking_work``); its heartbeat reads it within a
    quarter lease, and a Celery worker then stops consuming its queues."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFoundError(f"no worker with id {worker_id}")
    worker.draining = draining
    return worker


@dataclass(frozen=True)
class WorkerView:
    """A worker's row with what an organizer asks of it: its state, and the jobs it holds now."""

    worker: Worker
    state: WorkerState
    running: list[tuple[str, int]]  # (kind of job, id), held by it now
    pinned_missing: list[str]  # pinned images of accepted submissions that its engine lacks


@dataclass(frozen=True)
class Overview:
    """The compute as the hosts page shows it."""

    workers: list[WorkerView]
    jobs: dict[str, dict[str, int]]  # kind of job -> status -> count
    overdue: list[tuple[str, int, int | None]]  # (kind, id, worker): running under a lease that ran out


def overview(session: Session, settings: Settings) -> Overview:
    """Every worker (lost ones kept: a host that went away is shown with what it held), the
    job counts by kind and status, and the running jobs whose lease ran out, which the
    reaper hands on at the next turn of any runner."""
    held: dict[int, list[tuple[str, int]]] = {}
    counts: dict[str, dict[str, int]] = {}
    overdue = []
    for kind, job_class in JOB_CLASSES.items():
        counts[kind] = dict(session.execute(select(job_class.status, func.count()).group_by(job_class.status)).all())
        running = session.execute(select(job_class.id, job_class.worker_id, job_class.lease_expires_at)
                                  .where(job_class.status == JobStatus.RUNNING).order_by(job_class.id)).all()
        for job_id, worker_id, lease in running:
            held.setdefault(worker_id, []).append((kind, job_id))
            if lease is not None and as_utc(lease) < utcnow():
                overdue.append((kind, job_id, worker_id))
    pins = _pins(session)
    rows = session.scalars(select(Worker).order_by(Worker.id.desc())).all()
    views = [WorkerView(w, state(w, settings.lease_seconds), held.get(w.id, []), _missing(w, pins)) for w in rows]
    return Overview([v for v in views if _shown(v)], counts, overdue)


def _pins(session: Session) -> dict[bool, set[str]]:
    """The pinned images of accepted submissions, by whether a GPU worker runs them."""
    pinned = session.execute(select(Submission.container_image, Submission.container_gpu_image)
                             .where(Submission.status == SubmissionStatus.ACCEPTED)).all()
    return {False: {cpu for cpu, _ in pinned if cpu}, True: {gpu or cpu for cpu, gpu in pinned if gpu or cpu}}


def _missing(worker: Worker, pins: dict[bool, set[str]]) -> list[str]:
    """What this worker could be sent but could not run (a pack of it fails as a platform error);
    not an image pinned by its registry digest, which the worker pulls when it needs it."""
    if not worker.engine_version:
        return []
    return sorted(pin for pin in pins["gpu" in worker.queues] - set(worker.images) if not registry.is_reference(pin))


def _shown(view: WorkerView) -> bool:
    """A cleanly stopped worker with nothing left is history after a day; every other row stays."""
    if view.state is not WorkerState.STOPPED or view.running:
        return True
    return as_utc(view.worker.stopped_at) > utcnow() - timedelta(days=1)


def why_waiting(session: Session, settings: Settings, submission: Submission) -> str | None:
    """Why nobody is taking a queued submission's dry run, when something in the compute
    stands in the way (none when its turn simply has not come): the page says it rather
    than leave a team looking at "queued" for days."""
    if submission.status is not SubmissionStatus.QUEUED:
        return None
    takers = [w for w in session.scalars(select(Worker).where(Worker.stopped_at.is_(None)))
              if state(w, settings.lease_seconds) is not WorkerState.LOST and _checks_uploads(w, settings)]
    if not takers:
        return ("no worker that checks uploads is running (with a broker: `arena worker` with the dryrun queue); "
                "it is checked as soon as one starts")
    taking = [w for w in takers if not w.draining]
    if not taking:
        return "every worker that checks uploads is draining (the organizers paused them); it waits for one to resume"
    tag = _with_tag(submission.meta.get("container") or "")
    if tag and not any(tag in w.images for w in taking):
        return f"no running worker's Docker engine has its image {tag}; the organizers are told on the hosts page"
    return None


def _checks_uploads(worker: Worker, settings: Settings) -> bool:
    """With a broker, the Celery workers on the dryrun queue check uploads; without, any runner."""
    return DRY_RUN_QUEUE in worker.queues if settings.broker_url else worker.kind != "celery"


def _with_tag(name: str) -> str:
    """``repo`` as the engine lists it: ``repo:latest``."""
    return name if not name or ":" in name.rsplit("/", 1)[-1] or "@" in name else f"{name}:latest"
