"""Hosts and workers as an organizer sees them: every process that takes jobs beats its
row; a killed one is shown lost, never dropped; a drained one takes nothing new and
finishes what it holds; a run stuck past its time limit is reaped and says so; a queued
upload says what stands in its way."""

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from arena import job_states
from arena.config import EpsilonSchedule
from arena.db import transaction
from arena.execution import planning, workers
from arena.execution.distributed import dispatch
from arena.execution.leases import claim, heartbeat
from arena.intake.archive import pack
from arena.intake.submit import take
from arena.models import AttackJob, Dataset, JobAttempt, JobKind, JobStatus, Submission, Worker, as_utc, utcnow
from arena.web.app import create_app
from conftest import SAMPLES, make_settings, wait_until
from factories import add_submission, submit_folder, synth_dataset
from servers import new_database, postgres_server, redis_server

ORGANIZER = {"Authorization": "Bearer organizer-secret"}
ARENA = Path(sys.executable).parent / "arena"


def _rows(client: TestClient) -> dict[int, dict]:
    answer = client.get("/api/workers", headers=ORGANIZER)
    assert answer.status_code == 200, answer.text
    return {row["id"]: row for row in answer.json()["workers"]}


def test_a_worker_beats_its_row_and_a_clean_exit_marks_it_stopped(tmp_path):
    """The worker beats every quarter of a short lease, so that the test sees beats at once;
    the site judges its state with a long one, so that a beat a loaded machine delays never
    shows it lost here (losing a worker is the next test's)."""
    beating = make_settings(tmp_path / "arena", lease_seconds=0.4)
    client = TestClient(create_app(make_settings(tmp_path / "arena", lease_seconds=60, organizer_token="organizer-secret")))
    with workers.registered(beating, "run", 3) as me:
        first = _rows(client)[me.id]
        assert first["state"] == "alive" and first["concurrency"] == 3 and first["kind"] == "run"
        wait_until(lambda: _rows(client)[me.id]["last_seen"] > first["last_seen"], 10, "a second heartbeat")
        drain = client.post(f"/organizer/workers/{me.id}/draining", data={"draining": "true"}, headers=ORGANIZER,
                            follow_redirects=False)
        assert drain.status_code == 303 and _rows(client)[me.id]["state"] == "draining"
        wait_until(me.draining.is_set, 10, "the worker to read the draining flag at its next beat")
        assert "Take work again" in client.get("/organizer/workers", headers=ORGANIZER).text
        client.post(f"/api/workers/{me.id}/draining", json={"draining": False}, headers=ORGANIZER)
        wait_until(lambda: not me.draining.is_set(), 10, "the worker to take work again")
    stopped = _rows(client)[me.id]
    assert stopped["state"] == "stopped" and stopped["stopped_at"] is not None
    assert client.get("/api/workers").status_code == 401
    assert client.post("/api/workers/999/draining", json={"draining": True}, headers=ORGANIZER).status_code == 404


def test_a_worker_that_stops_beating_is_lost_and_kept(tmp_path):
    settings = make_settings(tmp_path / "arena", lease_seconds=60)
    with transaction(settings) as session:
        worker = Worker(kind="celery", host="gone", pid=1, concurrency=1, runtimes=[], queues=["cpu"], images=[])
        session.add(worker)
        session.flush()
        assert workers.state(worker, settings.lease_seconds) is workers.WorkerState.ALIVE
        worker.last_seen = as_utc(worker.last_seen).replace(year=2020)
        assert workers.state(worker, settings.lease_seconds) is workers.WorkerState.LOST
        assert [v.worker.id for v in workers.overview(session, settings).workers] == [worker.id]


def test_a_run_stuck_past_its_time_limit_is_reaped_and_its_attempt_says_why(tmp_path):
    """The heartbeat renews a lease only for the run's time limit (plus a lease): a process
    that hangs after its container was killed no longer holds its jobs for ever."""
    settings = make_settings(tmp_path / "arena", lease_seconds=0.4)
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "attack")
        planning.plan_attack_jobs(session, session.get_one(Dataset, dataset.id), [4], EpsilonSchedule.ALL)
        job_id = session.scalars(select(AttackJob.id)).first()
    [held] = claim(settings, JobKind.ATTACK, (job_id,), worker_id=None).values()
    with heartbeat(settings, AttackJob, {job_id: held.token}, renew_for=0.5):
        def reaped() -> bool:
            with transaction(settings) as session:
                return job_states.reap(session) > 0

        wait_until(reaped, 20, "the stuck job's lease to run out while its heartbeat still runs")
    with transaction(settings) as session:
        job, attempt = session.get(AttackJob, job_id), session.get(JobAttempt, held.attempt_id)
        assert job.status is JobStatus.PENDING and attempt.ended_at is not None
        assert attempt.error == job_states.REAPED


def test_a_drained_worker_claims_nothing_before_its_heartbeat_reads_the_flag(tmp_path):
    """The claim asks the worker's row itself: between an organizer's drain and the worker's
    next beat, a message it took is still refused its jobs, which stay for another worker,
    and the broker's task hands the message back (Reject, requeued) and follows the drain at
    once, so that the message does not come back to it again and again until the beat."""
    from celery.exceptions import Reject

    from arena.execution import broker

    settings = make_settings(tmp_path / "arena", lease_seconds=600)  # no beat comes during the test
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "attack")
        planning.plan_attack_jobs(session, session.get_one(Dataset, dataset.id), [4], EpsilonSchedule.ALL)
        first, second = session.scalars(select(AttackJob.id).order_by(AttackJob.id)).all()[:2]
    with workers.registered(settings, "celery", 1, ["cpu"]) as me:
        assert set(claim(settings, JobKind.ATTACK, (first,), worker_id=me.id)) == {first}
        with transaction(settings) as session:
            workers.set_draining(session, me.id, True)
        assert not me.draining.is_set()  # its heartbeat has not read the flag
        assert claim(settings, JobKind.ATTACK, (second,), worker_id=me.id) == {}
        broker._unless_draining(me)  # before a run: as its last heartbeat read it, no query a message
        with pytest.raises(Reject):
            broker._unless_draining(me, took_nothing=True)  # the claim was refused: the database says why
        assert me.draining.is_set()  # followed at once: it stops consuming, not at its next beat
        assert set(claim(settings, JobKind.ATTACK, (second,), worker_id=None)) == {second}  # another runner's
    with transaction(settings) as session:
        assert [session.get(AttackJob, i).worker_id for i in (first, second)] == [me.id, None]


@pytest.fixture(scope="module")
def servers():
    with redis_server() as redis, postgres_server() as postgres:
        yield redis, postgres


def _start(env: dict, root: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([str(ARENA), "worker", "--concurrency", "1"], env={**os.environ, **env},
                            stdin=subprocess.DEVNULL, stdout=(root / f"{name}.log").open("w"), stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _holding(settings, worker_id: int) -> list[tuple[JobKind, int]]:
    with transaction(settings) as session:
        return [(kind, job_id) for kind in JobKind for job_id in session.scalars(
            select(kind.job_class.id).where(kind.job_class.status == JobStatus.RUNNING,
                                            kind.job_class.worker_id == worker_id))]


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_two_workers_a_drained_one_finishes_its_own_and_takes_nothing_new_a_killed_one_is_lost(servers, tmp_path):
    redis, postgres = servers
    database = new_database(postgres)
    env = {"ARENA_DATA_DIR": str(tmp_path / "arena"), "ARENA_DATABASE_URL": database, "ARENA_BROKER_URL": redis.url,
           "ARENA_LEASE_SECONDS": "4", "ARENA_QUEUE_LEASE_SECONDS": "30", "ARENA_SANDBOX_MEMORY": "512m",
           "ARENA_PACK_SECONDS": "0"}
    settings = make_settings(tmp_path / "arena", database_url=database, broker_url=redis.url, lease_seconds=4,
                             pack_seconds=0, organizer_token="organizer-secret")
    dataset = synth_dataset(settings, 30, batch_size=10)
    for name in ("noop", "decoder"):
        submit_folder(settings, SAMPLES / name, tmp_path)  # one batch per container run: many packs
    client = TestClient(create_app(settings))
    first, second = _start(env, tmp_path, "first"), _start(env, tmp_path, "second")
    try:
        rows = wait_until(lambda: (r := _rows(client)) and len(r) == 2 and r, 60, "both workers to register")
        described = [(row["state"], "runc" in row["runtimes"], bool(row["engine_version"]), row["queues"])
                     for row in rows.values()]
        assert described == [("alive", True, True, ["dryrun", "cpu"])] * 2, rows
        by_pid = {row["pid"]: worker_id for worker_id, row in rows.items()}
        drained, other = by_pid[first.pid], by_pid[second.pid]

        run = threading.Thread(target=dispatch, args=(settings, dataset.id), kwargs={"timeout": 600})
        run.start()
        wait_until(lambda: _holding(settings, drained), 120, "the first worker to hold a job")
        assert client.post(f"/api/workers/{drained}/draining", json={"draining": True},
                           headers=ORGANIZER).json() == {"draining": True}
        held = _holding(settings, drained)  # what it took before the drain: no claim of its succeeds after it
        wait_until(lambda: not _holding(settings, drained), 120, "the drained worker to finish what it held")
        quiet = utcnow()  # from here, any attempt it started would be a job it took after the drain
        run.join(600)
        assert not run.is_alive()
        _assert_drained(settings, drained, other, held, quiet)

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        wait_until(lambda: _rows(client)[drained]["state"] == "lost", 30, "the killed worker to be shown lost")
        _stop(second)
        final = _rows(client)
        assert final[drained]["state"] == "lost" and final[other]["state"] == "stopped"
        page = client.get("/organizer/workers", headers=ORGANIZER)
        assert page.status_code == 200 and f'id="worker-{drained}" class="state-lost"' in page.text
    finally:
        _stop(first)
        _stop(second)


def _assert_drained(settings, drained: int, other: int, held: list, quiet: datetime) -> None:
    with transaction(settings) as session:
        for kind, job_id in held:  # what it held when drained, it finished itself
            assert session.get(kind.job_class, job_id).status is JobStatus.DONE
            assert session.scalar(select(JobAttempt.worker_id).where(kind.attempt_column == job_id)
                                  .order_by(JobAttempt.id.desc()).limit(1)) == drained
        after = session.execute(select(JobAttempt.worker_id).where(JobAttempt.started_at > quiet)).scalars().all()
    assert after and drained not in after and set(after) == {other}, after


def test_a_queued_upload_says_why_it_is_not_moving(tmp_path):
    settings = make_settings(tmp_path / "arena", lease_seconds=60)
    synth_dataset(settings, 4, batch_size=2)
    queued = take(settings, pack(SAMPLES / "noop", tmp_path / "noop.tar.gz"), team="red")
    with transaction(settings) as session:
        submission = session.get(Submission, queued.id)
        assert "no worker that checks uploads is running" in workers.why_waiting(session, settings, submission)
        worker = Worker(kind="run", host="h", pid=1, concurrency=1, runtimes=["runc"], queues=[], images=[],
                        engine_version="27", draining=True)
        session.add(worker)
        session.flush()
        assert "draining" in workers.why_waiting(session, settings, submission)
        worker.draining = False
        assert "has its image arena/python:bookworm" in workers.why_waiting(session, settings, submission)
        worker.images = ["sha256:abc", "arena/python:bookworm"]
        assert workers.why_waiting(session, settings, submission) is None
        session.execute(update(Worker).values(last_seen=as_utc(worker.last_seen).replace(year=2020)))
        session.expire_all()
        assert "no worker that checks uploads is running" in workers.why_waiting(session, settings, submission)


def test_the_command_line_lists_the_workers_and_drains_one(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from arena.cli import app
    from arena.config import get_settings

    settings = make_settings(tmp_path / "arena", lease_seconds=60)
    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        with workers.registered(settings, "run", 2) as me:
            listed = CliRunner().invoke(app, ["hosts", "list"])
            assert listed.exit_code == 0 and f"run #{me.id}" in listed.output and "alive" in listed.output
            assert CliRunner().invoke(app, ["hosts", "drain", str(me.id)]).exit_code == 0
            assert "draining" in CliRunner().invoke(app, ["hosts", "list"]).output
            unknown = CliRunner().invoke(app, ["hosts", "drain", "999"])
            assert unknown.exit_code == 1 and "no worker with id 999" in unknown.output
            assert max(map(len, listed.output.splitlines())) <= 100
    finally:
        get_settings.cache_clear()


def test_a_worker_is_said_to_lack_pinned_ids_not_registry_digests_it_pulls_when_needed():
    worker = Worker(kind="celery", host="h", pid=1, concurrency=1, runtimes=["runc"], queues=["cpu"],
                    images=["sha256:" + "a" * 64], engine_version="27")
    digest = "127.0.0.1:5000/arena/python@sha256:" + "c" * 64
    pins = {False: {"sha256:" + "a" * 64, "sha256:" + "b" * 64, digest}, True: {digest}}
    assert workers._missing(worker, pins) == ["sha256:" + "b" * 64]
