"""Faults of the platform itself, not of a submission: each is reported as a platform
error, the run resumes, and nothing already stored is lost or blamed on a submission."""

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
from sqlalchemy import select

from arena.db import get_engine, transaction
from arena.execution.checking import DryRunUnavailable
from arena.execution.run import run
from arena.models import AttackJob, JobAttempt, JobStatus, Submission, SubmissionStatus
from arena.sandbox import containers
from arena.sandbox.containers import docker_client
from conftest import containers_mounting, wait_until
from hostile.tournament import (
    ATTACK_GUARD,
    IMAGE,
    MAX_OUTPUT_BYTES,
    Tournament,
    attack_outcome,
    build,
    disqualify,
    take_in,
)
from servers import PrivateDockerd, postgres_cluster, private_dockerd

pytestmark = [pytest.mark.docker]
SLOW_NOOP = 'sleep 2\ncp "$1"/*.png "$2"/\n'  # slow enough for a fault to land mid-run


@pytest.fixture
def private_engine(tournament, tmp_path_factory, monkeypatch) -> Iterator[PrivateDockerd]:
    """The code under test talks to a private dockerd, which the test may restart at will
    (the host's engine is shared and is never restarted)."""
    try:
        with private_dockerd(tmp_path_factory.mktemp("dockerd"), [IMAGE]) as engine:
            monkeypatch.setenv("DOCKER_HOST", engine.host)
            docker_client.cache_clear()
            yield engine
    except RuntimeError as exc:
        if os.environ.get("ARENA_REQUIRE_DOCKER"):
            raise
        pytest.skip(str(exc))
    finally:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        docker_client.cache_clear()


def _when_a_container_runs(engine: PrivateDockerd, run: Future) -> None:
    """Return once the private engine runs a container (``run``'s first); fail when ``run``
    ends first or none starts within a minute, rather than wait for ever."""
    client = docker.DockerClient(base_url=engine.host)
    try:
        wait_until(lambda: client.containers.list(filters={"status": "running"}) or run.done(), 60,
                   "a container running on the private engine")
        assert not run.done(), f"the run ended before any container ran: {run.result()}"
    finally:
        client.close()


def _jobs_with_errors(tournament: Tournament, submission_id: int) -> list[str]:
    with transaction(tournament.settings) as session:
        return list(session.scalars(
            select(JobAttempt.error).join(AttackJob, JobAttempt.attack_job_id == AttackJob.id)
            .where(AttackJob.submission_id == submission_id, JobAttempt.error.is_not(None))
        ))


def test_dockerd_restarted_during_a_run(tournament, private_engine):
    submission = take_in(tournament, "slow_noop", "attack", SLOW_NOOP)
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(run, tournament.settings)
            _when_a_container_runs(private_engine, running)
            private_engine.restart()
            interrupted = running.result()
        assert any("Docker engine" in e for e in interrupted.platform_errors), interrupted.platform_errors
        errors = _jobs_with_errors(tournament, submission.id)
        assert errors and all("Docker engine" in e or "cannot" in e for e in errors)
        tournament.check_unchanged()

        _resumes_with_nothing_blamed(tournament, submission.id)
        tournament.check_unchanged()
    finally:
        disqualify(tournament.settings, submission.id)


@pytest.fixture
def small_work_storage(tournament) -> Iterator[Path]:
    """The tournament's work folder (where outputs are written) on a 32 MiB tmpfs."""
    work = tournament.settings.work_dir
    work.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(work)],
                             check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if mounted.returncode:
        if os.environ.get("ARENA_REQUIRE_DOCKER"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr}")
    try:
        yield work
    finally:
        subprocess.run(["umount", str(work)], check=True, stdin=subprocess.DEVNULL)


def _resumes_with_nothing_blamed(tournament: Tournament, submission_id: int) -> None:
    """The next run redoes what the fault interrupted: every job done, every image the
    attack's own (none replaced as missing), no platform error left."""
    resumed = run(tournament.settings)
    assert resumed.platform_errors == []
    for epsilon in tournament.settings.epsilons:
        jobs, images, _ = attack_outcome(tournament.settings, submission_id, epsilon)
        assert all(j.status is JobStatus.DONE for j in jobs)
        assert len(images) == 6 and not any(i.missing for i in images)


def _disqualify_named(tournament: Tournament, name: str) -> None:
    with transaction(tournament.settings) as session:
        submission_id = session.scalar(select(Submission.id).where(Submission.name == name))
    disqualify(tournament.settings, submission_id)


def _fill(folder: Path, leave: int) -> Path:
    """Write a ballast file until only about ``leave`` bytes remain free."""
    ballast = folder / "ballast"
    with ballast.open("wb") as handle:
        while shutil.disk_usage(folder).free > leave:
            handle.write(bytes(2**20))
            handle.flush()
    return ballast


def test_full_output_storage(tournament, small_work_storage, tmp_path):
    submission = take_in(tournament, "late_noop", "attack", SLOW_NOOP.replace("sleep 2", "true"))
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    try:
        ballast = _fill(small_work_storage, leave=MAX_OUTPUT_BYTES // 2)
        full = run(tournament.settings)
        assert full.platform_errors and all("output storage is full" in e for e in full.platform_errors)
        assert _jobs_with_errors(tournament, submission.id)
        with pytest.raises(DryRunUnavailable, match="could not run.*output storage is full.*stays queued"):
            take_in(tournament, "while_full", "attack", 'cp "$1"/*.png "$2"/ # while full\n')
        _disqualify_named(tournament, "while_full")  # kept, queued: out of the shared tournament
        tournament.check_unchanged()

        ballast.unlink()
        _resumes_with_nothing_blamed(tournament, submission.id)
        tournament.check_unchanged()
    finally:
        disqualify(tournament.settings, submission.id)


def test_database_unreachable_for_a_while(engine, tmp_path, monkeypatch, caplog):
    """PostgreSQL stops as a container run ends and comes back seconds later: the results
    wait for it instead of being lost, and the wait is logged."""
    with postgres_cluster() as database:
        pg = build(tmp_path, database_url=database.url)
        submission = take_in(pg, "late_noop", "attack", SLOW_NOOP.replace("sleep 2", "true"))
        run_container = containers.run
        outage = threading.Event()

        def run_then_lose_the_database(*args, **kwargs):
            result = run_container(*args, **kwargs)
            if not outage.is_set():
                outage.set()
                database.stop()
                threading.Timer(3, database.start).start()
            return result

        monkeypatch.setattr(containers, "run", run_then_lose_the_database)
        caplog.set_level(logging.WARNING, logger="arena.db")
        summary = run(pg.settings)
        assert outage.is_set() and summary.platform_errors == []
        assert "OperationalError" in caplog.text  # each retry is reported
        for epsilon in pg.settings.epsilons:
            jobs, images, _ = attack_outcome(pg.settings, submission.id, epsilon)
            assert jobs and all(j.status is JobStatus.DONE for j in jobs)
            assert len(images) == 6 and not any(i.missing for i in images)
        pg.check_unchanged()
        get_engine(database.url).dispose()


def _arena_env(settings) -> dict[str, str]:
    """The environment under which an ``arena`` process sees the same tournament and limits."""
    limits = settings.sandbox
    return {**os.environ, "ARENA_DATA_DIR": str(settings.data_dir), "ARENA_EPSILONS": ",".join(map(str, settings.epsilons)),
            "ARENA_SECONDS_PER_IMAGE": str(settings.seconds_per_image), "ARENA_SANDBOX_MEMORY": limits.memory,
            "ARENA_SANDBOX_MAX_OUTPUT_BYTES": str(limits.max_output_bytes),
            "ARENA_SANDBOX_MAX_OUTPUT_FILES": str(limits.max_output_files),
            # The next run follows the killed runner's jobs until their lease runs out: keep it short.
            "ARENA_LEASE_SECONDS": "4"}


def _running_attempts(tournament: Tournament, submission_id: int) -> list[JobAttempt]:
    with transaction(tournament.settings) as session:
        return list(session.scalars(
            select(JobAttempt).join(AttackJob, JobAttempt.attack_job_id == AttackJob.id)
            .where(AttackJob.submission_id == submission_id, JobAttempt.ended_at.is_(None))
        ))


def test_runner_killed_during_a_run(tournament, tmp_path):
    """``arena run`` killed with SIGKILL while a container runs: the next run releases what it
    held, finishes the work, and loses nothing. (What the killed runner leaves, its container
    and scratch folder, is removed by the test: a sweep takes the container at once only while
    it still runs, and a finished one past its deadline's grace, and nothing takes the scratch
    folder; see docs/security.md.)"""
    # Quick in the dry run (a 4 s sleep there took 18 s of its 12 s on a loaded machine), 4 s in
    # the tournament's packs of 24 s, a window wide enough to see the container running.
    submission = take_in(tournament, "killed_noop", "attack", ATTACK_GUARD + SLOW_NOOP.replace("sleep 2", "sleep 4"))
    assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
    arena = Path(sys.executable).parent / "arena"
    runner = subprocess.Popen([str(arena), "run"], env=_arena_env(tournament.settings), stdin=subprocess.DEVNULL,
                              stdout=(tmp_path / "run.log").open("w"), stderr=subprocess.STDOUT)

    def inside_the_container_run() -> bool:
        """The attack's job claimed and its container running: the state the kill is about."""
        assert runner.poll() is None, (tmp_path / "run.log").read_text()
        return bool(_running_attempts(tournament, submission.id)) and any(
            container.status == "running" for container in containers_mounting(tournament.settings.work_dir))

    try:
        wait_until(inside_the_container_run, 120, "`arena run` to start the attack's container")
    finally:
        runner.kill()
        runner.wait()
    orphans = _running_attempts(tournament, submission.id)
    try:
        assert orphans
        _resumes_with_nothing_blamed(tournament, submission.id)
        with transaction(tournament.settings) as session:
            for orphan in orphans:
                assert session.get(AttackJob, orphan.attack_job_id).attempt > orphan.number
        tournament.check_unchanged()
    finally:
        disqualify(tournament.settings, submission.id)
        _remove_leftovers(tournament.settings.work_dir)


def _remove_leftovers(work: Path) -> None:
    """The killed runner's container, found on the shared engine by its mounts of our work
    folder (so only ours), and its scratch folders; a sweep (any runner's on the host) may
    have removed the container meanwhile."""
    for container in containers_mounting(work):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    for folder in work.iterdir():
        shutil.rmtree(folder)
