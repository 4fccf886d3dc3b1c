"""Celery workers over a real Redis, results in a real PostgreSQL: the same matrix as the
embedded run on three hosts that share nothing else, and no result lost or stored twice
when a host is killed mid-run and Redis restarts."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from arena import job_states
from arena.competition import rounds
from arena.config import Settings
from arena.db import transaction
from arena.execution import planning
from arena.execution.distributed import dispatch
from arena.execution.run import run
from arena.models import (
    AdversarialImage,
    AttackJob,
    Classification,
    DefenseJob,
    JobAttempt,
    JobKind,
    JobStatus,
    QueryJob,
    QueryResult,
    Submission,
    SubmissionStatus,
    Worker,
)
from arena.results.scoring import Standings
from arena.sandbox.containers import docker_client
from conftest import (
    SAMPLES,
    assert_tallies_match_a_rebuild,
    make_settings,
    require_runtime,
    wait_until,
)
from factories import adversarial_outputs, stream_attack, submit_folder, synth_dataset, write_submission
from servers import new_database, postgres_server, private_dockerd, redis_server, registry_server, seaweed_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
SUBMISSIONS = ["noop", "random_noise", "step_to_target", "decoder", "smoothed_decoder"]
EPSILONS = [4, 16]
ARENA = Path(sys.executable).parent / "arena"


@pytest.fixture(scope="module")
def servers():
    with redis_server() as redis, postgres_server() as postgres:
        yield redis, postgres


def _prepare(settings: Settings, root: Path):
    dataset = synth_dataset(settings, 40, batch_size=10)
    for name in SUBMISSIONS:
        submit_folder(settings, SAMPLES / name, root)
    return dataset


def _matrices(settings: Settings, dataset) -> dict:
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
        counts = (session.scalar(select(func.count(AdversarialImage.id))), session.scalar(select(func.count()).select_from(Classification)))
    return {"error": standings.matrix("error"), "hit": standings.matrix("hit"), "counts": counts}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    settings = make_settings(root / "arena", epsilons=EPSILONS)
    dataset = _prepare(settings, root)
    run(settings)
    return _matrices(settings, dataset)


def _distributed_settings(root: Path, redis, postgres: str) -> tuple[Settings, dict]:
    env = {
        "ARENA_DATA_DIR": str(root / "arena"),
        "ARENA_DATABASE_URL": new_database(postgres),
        "ARENA_BROKER_URL": redis.url,
        "ARENA_EPSILONS": ",".join(map(str, EPSILONS)),
        "ARENA_LEASE_SECONDS": "6",
        "ARENA_QUEUE_LEASE_SECONDS": "20",
        "ARENA_SANDBOX_MEMORY": "512m",
    }
    settings = make_settings(root / "arena", database_url=env["ARENA_DATABASE_URL"], broker_url=redis.url,
                             epsilons=EPSILONS, lease_seconds=6, queue_lease_seconds=20)
    return settings, env


def _workers(env: dict, count: int, root: Path) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([str(ARENA), "worker", "--concurrency", "1"], env={**os.environ, **env},
                         stdin=subprocess.DEVNULL, stdout=(root / f"worker{k}.log").open("w"), stderr=subprocess.STDOUT)
        for k in range(count)
    ]


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_three_hosts_that_share_only_the_database_queue_store_and_registry_give_the_embedded_matrix(
        servers, embedded, tmp_path, tmp_path_factory):
    """Three Docker engines on this machine as three hosts, each with its own data folder:
    intake on the first (the suite's engine, where the images were built) pushes each image
    it checked to the registry and its objects to the S3 store; the workers run on two
    private engines that start with no image at all and pull the pinned digests. The
    second host's worker and engine are killed mid-run, and Redis restarted (every queued
    message lost): the third host finishes the round, the leases bringing the lost jobs
    back, and the matrix and counts equal the embedded run's, with no result lost or stored twice."""
    redis, postgres = servers
    with seaweed_server(tmp_path) as store, registry_server() as registry:
        store.bucket("arena")
        shared = {**store.settings("s3://arena/final"), "registry": registry.address}
        settings, env = _distributed_settings(tmp_path / "host1", redis, postgres)
        settings = settings.model_copy(update={**shared, "store_secret_key": SecretStr(shared["store_secret_key"])})
        dataset = _prepare(settings, tmp_path / "host1")
        env = {**env, "ARENA_STORE_URL": shared["store_url"], "ARENA_STORE_ENDPOINT": shared["store_endpoint"],
               "ARENA_STORE_ACCESS_KEY": shared["store_access_key"], "ARENA_STORE_SECRET_KEY": shared["store_secret_key"],
               "ARENA_REGISTRY": registry.address}
        try:
            # short folders: containerd's sockets lie under them, and a socket's path has 107 bytes at most
            with (private_dockerd(tmp_path_factory.mktemp("engine"), []) as engine2,
                  private_dockerd(tmp_path_factory.mktemp("engine"), []) as engine3):
                assert _images(engine2) == _images(engine3) == set()
                summary, killed = _run_on_two_hosts(settings, dataset, env, tmp_path, redis, engine2, engine3)
                pulled = _images(engine3)
        finally:
            _untag_pushed(registry.address)
    assert summary.platform_errors == []
    result = _matrices(settings, dataset)
    assert result["counts"] == embedded["counts"]
    assert result["error"].equals(embedded["error"]) and result["hit"].equals(embedded["hit"])
    assert_tallies_match_a_rebuild(settings)
    _every_attempt_ran_the_pinned_image(settings)
    with transaction(settings) as session:
        pins = set(session.scalars(select(Submission.container_image)))
        assert all(pin.startswith(f"{registry.address}/arena/python@sha256:") for pin in pins), pins
        hosts = dict(session.execute(select(JobAttempt.worker_id, func.count()).group_by(JobAttempt.worker_id)).all())
    assert pins <= pulled  # the third host ran the pinned digests, which it had to pull
    assert killed in hosts and len(hosts) == 2, hosts  # both workers ran jobs
    _the_killed_hosts_attempts_were_reaped_and_run_again(settings, killed)
    assert not (tmp_path / "host3" / "arena" / "store").exists()  # nothing of a host's own went to a shared folder


def _the_killed_hosts_attempts_were_reaped_and_run_again(settings: Settings, killed: int) -> None:
    """The attempt the killed host was running is closed by the reaper with the reason the
    page shows, and its job was done by a later attempt."""
    with transaction(settings) as session:
        orphans = session.scalars(select(JobAttempt).where(JobAttempt.worker_id == killed,
                                                           JobAttempt.error == job_states.REAPED)).all()
        assert orphans, "the killed host left no reaped attempt: it was not killed mid-run"
        for attempt in orphans:
            assert attempt.ended_at is not None
            job = session.get(AttackJob, attempt.attack_job_id) if attempt.attack_job_id else session.get(DefenseJob, attempt.defense_job_id)
            assert job.status is JobStatus.DONE and job.attempt > attempt.number


def _run_on_two_hosts(settings: Settings, dataset, env: dict, tmp_path: Path, redis, engine2, engine3):
    """Dispatch the round to a worker on each private engine; once the second host's worker
    has ended an attempt and runs another, kill it and its engine, and restart Redis. Return
    the run's summary and the killed worker's id."""
    hosts = {}
    for name, engine in (("host2", engine2), ("host3", engine3)):
        (tmp_path / name).mkdir()
        [hosts[name]] = _workers({**env, "DOCKER_HOST": engine.host, "ARENA_DATA_DIR": str(tmp_path / name / "arena")},
                                 1, tmp_path / name)
    killed: list[int] = []

    def kill_host2() -> None:
        killed.append(wait_until(lambda: _worker_with_results_running(settings, hosts["host2"].pid), 300,
                                 "the second host's worker to store a result and start another pack", every=0.2))
        hosts["host2"].send_signal(signal.SIGKILL)
        engine2.kill()
        redis.restart()

    saboteur = ThreadPoolExecutor(1)
    sabotage = saboteur.submit(kill_host2)
    try:
        summary = dispatch(settings, dataset.id, timeout=600)
    finally:
        saboteur.shutdown()
        _stop(list(hosts.values()))
    sabotage.result()  # a failed wait fails the test here
    return summary, killed[0]


def _worker_with_results_running(settings: Settings, pid: int) -> int | None:
    """The id of the worker process ``pid`` once an attempt of it has ended and another runs
    its container: by then that attempt has recorded the image it runs (one killed between
    its claim and its load, a pull say, would record none)."""
    with transaction(settings) as session:
        worker = session.scalar(select(Worker.id).where(Worker.pid == pid))
        if worker is None:
            return None
        ended = session.scalar(select(func.count()).select_from(JobAttempt)
                               .where(JobAttempt.worker_id == worker, JobAttempt.ended_at.is_not(None)))
        running = session.scalar(select(func.count()).select_from(JobAttempt)  # loaded: its image recorded
                                 .where(JobAttempt.worker_id == worker, JobAttempt.ended_at.is_(None),
                                        JobAttempt.container_image.is_not(None)))
    return worker if ended and running else None


def _images(engine) -> set[str]:
    """Every reference an engine holds: its tags and its digests."""
    client = docker.DockerClient(base_url=engine.host, timeout=60)
    try:
        return {ref for image in client.images.list() for ref in (*image.tags, *(image.attrs.get("RepoDigests") or []))}
    finally:
        client.close()


def _untag_pushed(address: str) -> None:
    """Take away the registry's tags intake put on the suite's engine (the images stay)."""
    client = docker_client()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{address}/"):
                client.images.remove(tag)


def _every_attempt_ran_the_pinned_image(settings: Settings) -> None:
    with transaction(settings) as session:
        pinned = dict(session.execute(select(Submission.id, Submission.container_image)).all())
        for kind in JobKind:
            job = kind.job_class
            ran = session.execute(select(job.submission_id, JobAttempt.container_image)
                                  .join(JobAttempt, kind.attempt_column == job.id)).all()
            assert ran and all(image == pinned[submission] is not None for submission, image in ran)


def test_results_that_depend_on_the_run_are_the_same_on_the_workers(servers, tmp_path):
    """Which images share a run is fixed by the submission (at its dry run) and the dataset,
    and input names by the installation's key: an attack drawing one random stream over its
    run gives the same outputs, hence the same matrix, in-process and on the workers."""
    redis, postgres = servers
    settings, env = _distributed_settings(tmp_path, redis, postgres)
    settings = settings.model_copy(update={"pack_seconds": 600})  # the dry run packs all four batches
    dataset = synth_dataset(settings, 40, batch_size=10)
    assert submit_folder(settings, stream_attack(tmp_path / "stream"), tmp_path).pack_images >= 40
    submit_folder(settings, SAMPLES / "decoder", tmp_path)
    assert not run(settings.model_copy(update={"broker_url": None})).platform_errors
    in_process, matrices = adversarial_outputs(settings), _matrices(settings, dataset)
    with transaction(settings) as session:
        planning.forget(session, None)
    workers = _workers(env, 2, tmp_path)  # their ARENA_PACK_SECONDS is the default: the stored choice rules
    try:
        assert dispatch(settings, dataset.id, timeout=600).platform_errors == []
    finally:
        _stop(workers)
    assert adversarial_outputs(settings) == in_process
    assert _matrices(settings, dataset)["error"].equals(matrices["error"]) and matrices["error"].to_numpy().sum() > 0


def test_a_worker_host_runs_its_packs_under_its_own_runtime(servers, tmp_path):
    """ARENA_SANDBOX_RUNTIME=runsc on a worker host: every pack it runs goes through gVisor,
    whatever the runtime where the submission was taken in (its dry run ran under runc here)."""
    require_runtime("runsc")
    redis, postgres = servers
    settings, env = _distributed_settings(tmp_path, redis, postgres)
    dataset = synth_dataset(settings, 20, batch_size=10)
    kernel = write_submission(tmp_path / "kernel", {"type": "attack", "container": "arena/python:bookworm",
                                                    "entry_point": "run_attack.sh"},
                              {"run_attack.sh": '#!/bin/sh\ndmesg 2>&1 | head -1\ncp "$1"/*.png "$2"/\n'})
    submission = submit_folder(settings, kernel, tmp_path)
    assert "Starting gVisor" not in submission.validation_report["log_tail"]
    workers = _workers({**env, "ARENA_SANDBOX_RUNTIME": "runsc"}, 1, tmp_path)
    try:
        assert dispatch(settings, dataset.id, timeout=600).platform_errors == []
    finally:
        _stop(workers)
    with transaction(settings) as session:
        logs = session.scalars(select(JobAttempt.log_excerpt).where(JobAttempt.attack_job_id.is_not(None))).all()
    assert len(logs) >= 2 and all("Starting gVisor" in log for log in logs), logs


def test_an_upload_is_checked_on_its_own_queue_while_the_tournament_s_packs_wait(servers, tmp_path):
    """A tournament's packs are queued on ``cpu``; a worker that takes only ``dryrun`` checks
    the new upload meanwhile: a dry run never waits behind a tournament's backlog."""
    redis, postgres = servers
    settings, env = _distributed_settings(tmp_path, redis, postgres)
    dataset = synth_dataset(settings, 20, batch_size=10)
    for name in ("noop", "decoder"):
        submit_folder(settings, SAMPLES / name, tmp_path)  # checked here, in the foreground
    dispatch(settings, dataset.id, wait=False)  # the tournament's packs, queued for cpu workers (none run)
    from arena.execution import broker
    from arena.execution.checking import waiting
    from arena.intake.archive import pack
    from arena.intake.submit import take

    late = take(settings, pack(SAMPLES / "random_noise", tmp_path / "random_noise.tar.gz"), team="late")
    broker.enqueue_dry_runs(settings, broker.celery_app(settings), waiting(settings))
    [worker] = [subprocess.Popen([str(ARENA), "worker", "--concurrency", "1", "--queues", "dryrun"],
                                 env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                 stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT)]
    try:
        def checked() -> bool:
            with transaction(settings) as session:
                return session.get(Submission, late.id).status.value == "accepted"

        wait_until(checked, 180, "the dryrun worker to accept the late upload")
    finally:
        _stop([worker])
    with transaction(settings) as session:  # not one of the tournament's packs ran: they wait on cpu
        queued = session.scalar(select(func.count(AttackJob.id)).where(AttackJob.status == JobStatus.QUEUED))
        assert queued > 0 and session.scalar(select(func.count(JobAttempt.id))) == 0


def test_a_query_job_is_queued_for_a_celery_worker_which_runs_and_stores_it(servers, tmp_path):
    """The query track through the broker: the dispatcher queues the query job beside the
    served defense's batch job, one worker claims, runs and stores both."""
    redis, postgres = servers
    settings, env = _distributed_settings(tmp_path, redis, postgres)
    dataset = synth_dataset(settings, 3, batch_size=3)
    for name in ("decoder", "boundary"):
        assert submit_folder(settings, SAMPLES / name, tmp_path).status is SubmissionStatus.ACCEPTED
    with transaction(settings) as session:
        rounds.find(session).query_budget = 20
    worker = _workers(env, 1, tmp_path)
    try:
        summary = dispatch(settings, dataset.id, timeout=300)
    finally:
        _stop(worker)
    assert summary.platform_errors == [] and (summary.query_jobs, summary.defense_jobs) == (1, 1)
    with transaction(settings) as session:
        job = session.scalars(select(QueryJob)).one()
        assert (job.status, job.attempt, job.defense_failure) == (JobStatus.DONE, 1, None), job.problems
        attempt = session.scalars(select(JobAttempt).where(JobAttempt.query_job_id == job.id)).one()
        assert job.worker_id is not None and (attempt.worker_id, attempt.number, attempt.error) == (job.worker_id, 1, None)
        assert attempt.ended_at is not None and attempt.log_sha256 and attempt.served_log_sha256
        assert session.scalar(select(func.count()).select_from(QueryResult)) == 3
