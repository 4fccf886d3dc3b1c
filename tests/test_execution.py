"""One execution model: whoever runs the tournament, a job under someone's live lease is
theirs, an expired lease is reaped, and two runners at once run every job exactly once."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from arena import job_states
from arena.data.objects import ObjectMissing
from arena.db import get_engine, transaction
from arena.execution import checking, leases, local, pack_run, query_jobs
from arena.execution.run import run
from arena.intake.archive import pack
from arena.intake.submit import take
from arena.models import (
    Batch,
    DefenseJob,
    DryRun,
    Image,
    JobAttempt,
    JobKind,
    JobStatus,
    QueryJob,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    utcnow,
)
from arena.results.scoring import Standings
from arena.sandbox import code, pinning
from arena.sandbox.containers import RunResult, SandboxError
from arena.sandbox.defense_run import DefenseOutcome
from arena.sandbox.result_csv import Answer
from conftest import SAMPLES, make_settings, wait_until
from factories import FAKE_CODE, Labels, add_submission, attacked, fake_defenses, submit_folder, synth_dataset

DEADLINE_SECONDS = 120


def _right(labels: Labels, inputs) -> DefenseOutcome:
    return DefenseOutcome(RunResult(0, False, None, 0.01, ""), {item.key: Answer(labels[item.sha256][0]) for item in inputs})


@pytest.fixture
def attacked_tournament(settings, monkeypatch):
    """Two batches attacked by one attack (its jobs done), one defense whose runs are faked
    (every answer right): the defense jobs are what the runners share."""
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        attacked(session, dataset, settings.epsilons, [("A", SubmissionKind.ATTACK), ("D", SubmissionKind.DEFENSE)])
    fake_defenses(monkeypatch, settings, _right)
    return settings


def _lease(settings, job_id: int, seconds: float, token: int = 7) -> None:
    """Someone else holds the job: running under attempt ``token``, lease ending in ``seconds``."""
    with transaction(settings) as session:
        session.execute(update(DefenseJob).where(DefenseJob.id == job_id).values(
            status=JobStatus.RUNNING, attempt=token, lease_expires_at=utcnow() + timedelta(seconds=seconds)))


def _job(settings, job_id: int) -> DefenseJob:
    with transaction(settings) as session:
        return session.get(DefenseJob, job_id)


def test_an_attempt_whose_runner_died_before_loading_records_nothing_it_did_not_do(attacked_tournament):
    """Claimed, then its runner gone before the pack's inputs were loaded: the attempt records
    no image, no image count and no end; the attempt that takes the job over, the run."""
    settings = attacked_tournament
    with transaction(settings) as session:
        job_id = session.scalars(select(DefenseJob.id).order_by(DefenseJob.id)).first()
    [dead] = leases.claim(settings, JobKind.DEFENSE, (job_id,)).values()
    _lease(settings, job_id, seconds=-1, token=dead.token)  # its lease ran out: nobody renews it
    assert pack_run.run_pack(settings, pack_run.Pack(JobKind.DEFENSE, (job_id,))).finished == 1
    with transaction(settings) as session:
        orphan, taken_over = session.scalars(select(JobAttempt).where(JobAttempt.defense_job_id == job_id)
                                             .order_by(JobAttempt.number)).all()
        assert (orphan.id, orphan.container_image, orphan.images, orphan.ended_at) == (dead.attempt_id, None, None, None)
        assert taken_over.number == orphan.number + 1 and taken_over.ended_at is not None
        assert taken_over.container_image == FAKE_CODE.pins["container"] and taken_over.images == 2
        assert session.get(DefenseJob, job_id).status is JobStatus.DONE


def test_a_job_past_the_retry_cap_is_claimed_by_nobody_not_even_a_late_queue_message(attacked_tournament):
    """The planner stops repacking a job that failed on the platform ``max_attempts`` times,
    but the claim had its own, broader idea of what may run: a repeated or late queue
    message for that job claimed it and ran it once more. Now both ask one rule."""
    settings = attacked_tournament
    with transaction(settings) as session:
        capped, under_cap = session.scalars(select(DefenseJob.id).order_by(DefenseJob.id)).all()[:2]
        for job_id, attempts in ((capped, settings.max_attempts), (under_cap, settings.max_attempts - 1)):
            session.execute(update(DefenseJob).where(DefenseJob.id == job_id)
                            .values(status=JobStatus.ERROR, attempt=attempts))
    claims = leases.claim(settings, JobKind.DEFENSE, (capped, under_cap))
    assert set(claims) == {under_cap}
    assert (_job(settings, capped).status, _attempts(settings, capped)) == (JobStatus.ERROR, 0)


def _attempts(settings, job_id: int) -> int:
    with transaction(settings) as session:
        return session.scalar(select(func.count(JobAttempt.id)).where(JobAttempt.defense_job_id == job_id))


@pytest.mark.docker  # the run sweeps the engine for a dead runner's containers first
@pytest.mark.usefixtures("engine")
def test_a_live_lease_is_followed_and_an_expired_one_reaped(attacked_tournament):
    """The in-process runner used to reset every running job at start, taking over jobs that
    another runner held under a live lease. Now it leaves them alone, follows them until
    their holder finishes, and takes over only a job whose lease ran out."""
    settings = attacked_tournament
    with transaction(settings) as session:
        live, expired, *_ = session.scalars(select(DefenseJob.id).order_by(DefenseJob.id))
    _lease(settings, live, seconds=60)
    _lease(settings, expired, seconds=-1)
    finished, following = [], []

    def progress(_done: int, _total: int, status: str) -> None:
        if status == "waiting for 1 job(s) held by another runner":
            following.append(status)  # a whole turn of the runner, which looked at the held job again

    runner = threading.Thread(target=lambda: finished.append(run(settings, progress=progress)), daemon=True)
    runner.start()
    wait_until(lambda: _job(settings, expired).status is JobStatus.DONE, DEADLINE_SECONDS,
               "the expired job to be taken over")  # the rest of the work goes on meanwhile
    seen = len(following)
    wait_until(lambda: len(following) >= seen + 2, DEADLINE_SECONDS, "two more turns of the runner following the live job")
    assert runner.is_alive() and _job(settings, live).attempt == 7 and _attempts(settings, live) == 0
    with transaction(settings) as session:  # the holder finishes its job
        session.execute(update(DefenseJob).where(DefenseJob.id == live).values(status=JobStatus.DONE))
    runner.join(DEADLINE_SECONDS)
    assert not runner.is_alive(), "the runner did not stop once the held job was done"
    summary = finished[0]
    assert _job(settings, expired).attempt == 8 and _attempts(settings, expired) == 1
    assert summary.defense_jobs == summary.jobs and summary.container_runs >= 1
    assert summary.describe().startswith(f"ran 0 attack jobs and {summary.defense_jobs} defense jobs in-process")


@pytest.mark.docker  # the run sweeps the engine for a dead runner's containers first
@pytest.mark.usefixtures("engine")
def test_the_retry_cap_holds_in_process_as_on_workers(attacked_tournament):
    """A job that failed on the platform ``max_attempts`` times is left in error by the
    in-process runner too (it used to retry it on every run, forever)."""
    settings = attacked_tournament.model_copy(update={"max_attempts": 2})
    with transaction(settings) as session:
        capped, *_ = session.scalars(select(DefenseJob.id).order_by(DefenseJob.id))
        session.execute(update(DefenseJob).where(DefenseJob.id == capped).values(status=JobStatus.ERROR, attempt=2))
    summary = run(settings)
    assert _job(settings, capped).status is JobStatus.ERROR and _attempts(settings, capped) == 0
    with transaction(settings) as session:
        others = session.scalars(select(DefenseJob.status).where(DefenseJob.id != capped)).all()
    assert set(others) == {JobStatus.DONE} and summary.defense_jobs == len(others)


def _arena_env(settings) -> dict[str, str]:
    return {**os.environ, "ARENA_DATA_DIR": str(settings.data_dir), "ARENA_EPSILONS": ",".join(map(str, settings.epsilons)),
            "ARENA_SANDBOX_MEMORY": settings.sandbox.memory, "ARENA_PACK_SECONDS": "0", "ARENA_CONCURRENCY": "2"}


def _tournament(root: Path):
    """Twelve images in batches of three, one attack and one defense at two epsilons: 8
    attack jobs and 12 defense jobs, one container run each (packing off)."""
    settings = make_settings(root / "arena", epsilons=[4, 16], pack_seconds=0)
    dataset = synth_dataset(settings, 12, batch_size=3)
    for sample in ("random_noise", "decoder"):
        assert submit_folder(settings, SAMPLES / sample, root).status.value == "accepted"
    return settings, dataset


def _matrix(settings, dataset):
    with transaction(settings) as session:
        return Standings.compute(session, dataset).matrix("error", None)


def _running_jobs(settings) -> int:
    with transaction(settings) as session:
        return sum(session.scalar(select(func.count(kind.job_class.id)).where(kind.job_class.status == JobStatus.RUNNING))
                   for kind in JobKind)


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_the_tournament_runs_beside_a_dry_run_not_after_it(attacked_tournament, monkeypatch, tmp_path):
    """A dry run under way holds one of the two slots and the tournament's packs take the other;
    before, every dry run of a run was done before its first pack started."""
    take(attacked_tournament, pack(SAMPLES / "decoder", tmp_path / "late.tar.gz"), team="late")
    packed = threading.Event()
    run_pack = local.run_pack

    def noted(*arguments):
        packed.set()
        return run_pack(*arguments)

    overlapped: list[bool] = []

    def check(_settings, _dry_run_id, _worker_id=None):  # as if another runner held it: left queued
        overlapped.append(packed.wait(timeout=30))

    monkeypatch.setattr(local, "run_pack", noted)
    monkeypatch.setattr(checking, "check", check)
    summary = run(attacked_tournament)
    assert overlapped == [True]
    assert summary.finished[JobKind.DEFENSE] > 0 and not summary.platform_errors


def test_two_runs_at_once_run_every_job_exactly_once(tmp_path):
    """The second `arena run` starts while the first holds running jobs: it used to release
    them all at start and run them again (22 container runs for 20 jobs, run by hand on the
    code before the fix), the first one's results then dropped as stale."""
    shared, dataset = _tournament(tmp_path / "shared")
    arena = Path(sys.executable).parent / "arena"
    logs = [tmp_path / f"run{k}.log" for k in (1, 2)]

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen([str(arena), "run"], env=_arena_env(shared), stdin=subprocess.DEVNULL,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)

    runners = [start(logs[0])]
    try:
        wait_until(lambda: _running_jobs(shared) > 0 or runners[0].poll() is not None, 120,
                   "the first run to hold a running job")
        runners.append(start(logs[1]))
        codes = [runner.wait(timeout=600) for runner in runners]
    finally:
        for runner in runners:
            runner.kill()
    assert codes == [0, 0], [log.read_text() for log in logs]
    with transaction(shared) as session:
        for kind in JobKind:
            jobs = session.scalars(select(kind.job_class)).all()
            runs = dict(session.execute(select(kind.attempt_column, func.count(JobAttempt.id))
                                        .where(kind.attempt_column.is_not(None)).group_by(kind.attempt_column)).all())
            assert jobs and all(job.status is JobStatus.DONE for job in jobs)
            assert {job.id: runs.get(job.id, 0) for job in jobs} == {job.id: 1 for job in jobs}, f"{kind} jobs"
    alone, alone_dataset = _tournament(tmp_path / "alone")
    assert not run(alone).platform_errors
    assert _matrix(shared, dataset).equals(_matrix(alone, alone_dataset))
    assert _matrix(shared, dataset).to_numpy().sum() > 0


def test_the_broker_app_is_built_from_the_settings_it_is_given(tmp_path):
    """No Celery app is configured at import; each caller builds its own from its settings."""
    from arena.config import Settings
    from arena.execution import broker

    assert not hasattr(broker, "app")
    one = broker.celery_app(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0", visibility_timeout=5))
    other = broker.celery_app(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:2/0"))
    assert one.conf.broker_url != other.conf.broker_url
    assert one.conf.broker_transport_options["visibility_timeout"] == 5 and broker.TASK in one.tasks
    assert one.tasks[broker.TASK] is not other.tasks[broker.TASK]  # each runs packs with its own settings


def test_a_gpu_worker_changes_its_own_settings_only(tmp_path, monkeypatch):
    """``arena worker --gpu`` used to set ``gpu`` on the process's shared settings object."""
    from typer.testing import CliRunner

    from arena.cli import app
    from arena.config import get_settings
    from arena.execution import broker

    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path / "arena"))
    monkeypatch.setenv("ARENA_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    given = []

    class Worker:
        def __init__(self, settings, registration):
            given.append(settings)

        def worker_main(self, argv):
            given.append(argv)

    monkeypatch.setattr(broker, "celery_app", Worker)
    try:
        assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
        result = CliRunner().invoke(app, ["worker", "--gpu"])
        assert result.exit_code == 0, result.output
        assert given[0].sandbox.gpu and not get_settings().sandbox.gpu
        assert given[1][given[1].index("--queues") + 1] == "gpu"
    finally:
        get_settings.cache_clear()


def test_the_attempts_of_one_container_run_share_its_run_id(attacked_tournament):
    """Claimed together, run together: the submission page groups by this, not by guessing."""
    settings = attacked_tournament
    with transaction(settings) as session:
        first, *rest = session.scalars(select(DefenseJob.id).order_by(DefenseJob.id))
    assert pack_run.run_pack(settings, pack_run.Pack("defense", tuple(rest))).finished == len(rest)
    assert pack_run.run_pack(settings, pack_run.Pack("defense", (first,))).finished == 1
    with transaction(settings) as session:
        runs = dict(session.execute(select(JobAttempt.defense_job_id, JobAttempt.run_id)).all())
        attempt_ids = dict(session.execute(select(JobAttempt.defense_job_id, JobAttempt.id)).all())
    assert {runs[job] for job in rest} == {min(attempt_ids[job] for job in rest)}
    assert runs[first] == attempt_ids[first] and runs[first] not in {runs[job] for job in rest}


def _held_since(moment) -> bool:
    """Whether ``moment`` (a lease's end as the database gives it back: naive on SQLite) is past."""
    return utcnow() > (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


def test_a_pack_is_prepared_with_no_transaction_open_and_under_its_lease(tmp_path, monkeypatch):
    """Making the code and the image present (a download, a registry pull: here a ``require``
    that waits for the test) may take minutes. Meanwhile the runner holds no database
    connection, so another writer commits at once (the late pin is stored in a transaction
    of its own, before the pull), and its heartbeat renews the lease, so the reaper leaves
    the job alone once the claim's lease has run out. The pin made late is stored once, and
    it is what the attempt records as run."""
    settings = make_settings(tmp_path / "arena", lease_seconds=2)
    dataset = synth_dataset(settings, 2, batch_size=2)
    meta = {"type": "defense", "container": "arena/python:bookworm", "entry_point": "run.sh"}
    with transaction(settings) as session:
        ids = attacked(session, dataset, [4], [("A", SubmissionKind.ATTACK), ("D", SubmissionKind.DEFENSE)])
        session.get(Submission, ids["D"]).meta = meta  # unpinned: the run pins it
        job_id = session.scalar(select(DefenseJob.id))
        labels = {i.sha256: (i.true_label, i.target_class) for i in session.scalars(select(Image))}
    late_pin, resolved = "sha256:" + "1" * 64, []
    preparing, release = threading.Event(), threading.Event()

    def pulled(pin: str, _tag: str, _submission: str) -> None:
        preparing.set()
        assert release.wait(4 * DEADLINE_SECONDS), "the test never let the pull end"  # past the test's waits

    monkeypatch.setattr(pinning, "resolve", lambda tag, _registry: resolved.append(tag) or late_pin)
    monkeypatch.setattr(pinning, "require", pulled)
    monkeypatch.setattr(pack_run, "execute_defense", lambda _s, _c, inputs, _key: _right(labels, inputs))
    connections = get_engine(settings.resolved_database_url).pool
    with ThreadPoolExecutor(max_workers=1) as runner:
        running = runner.submit(pack_run.run_pack, settings, pack_run.Pack(JobKind.DEFENSE, (job_id,)))
        try:
            assert preparing.wait(DEADLINE_SECONDS), "the run never reached its pull"
            claimed = _job(settings, job_id)
            # (1) no connection out of the pool but the heartbeat's, for a moment every quarter lease
            wait_until(lambda: connections.checkedout() == 0, DEADLINE_SECONDS, "the runner to hold no connection")
            assert not running.done(), running.exception()  # still pulling
            with transaction(settings) as session:  # it would wait for a runner's open write, and fail
                session.execute(update(Submission).where(Submission.id == ids["D"]).values(reason="written meanwhile"))
            # (2) the lease moves on, and outlives the claim's
            wait_until(lambda: _job(settings, job_id).lease_expires_at > claimed.lease_expires_at, DEADLINE_SECONDS,
                       "the heartbeat to renew the lease during the pull")
            wait_until(lambda: _held_since(claimed.lease_expires_at), DEADLINE_SECONDS, "the claim's lease to run out")
            with transaction(settings) as session:
                assert job_states.reap(session) == 0
            held = _job(settings, job_id)
            assert (held.status, held.attempt) == (JobStatus.RUNNING, claimed.attempt)
        finally:
            release.set()
        assert running.result(timeout=DEADLINE_SECONDS).finished == 1
    with transaction(settings) as session:
        assert session.get(Submission, ids["D"]).container_image == late_pin and resolved == [meta["container"]]
        attempt = session.scalar(select(JobAttempt).where(JobAttempt.defense_job_id == job_id))
        assert (attempt.container_image, attempt.images, attempt.error) == (late_pin, 2, None)
        assert session.get(DefenseJob, job_id).status is JobStatus.DONE


def test_a_dry_run_whose_code_cannot_be_fetched_fails_on_the_platform_under_its_claim(settings, tmp_path, monkeypatch):
    """The dry run fetches the code after its claim, under its lease, not in the claim's
    transaction: an object store that lost the code fails that attempt as the platform's error
    (the submission stays queued, its dry run tried again), rather than undoing the claim."""
    synth_dataset(settings, 2, batch_size=2)
    submission = take(settings, pack(SAMPLES / "noop", tmp_path / "noop.tar.gz"), team="red")

    def lost(_settings, sha256: str):
        raise ObjectMissing(f"the object store has no code/{sha256}.tar")

    monkeypatch.setattr(code, "fetched", lost)
    dry_run_id = submission.dry_run.id
    assert checking.check(settings, dry_run_id) is False
    with transaction(settings) as session:
        dry_run = session.get(DryRun, dry_run_id)
        assert (dry_run.status, dry_run.attempt) == (JobStatus.ERROR, 1) and "has no code/" in dry_run.error
        assert dry_run.submission.status is SubmissionStatus.QUEUED


def test_a_query_job_whose_image_cannot_be_had_fails_on_the_platform_after_its_claim(settings, monkeypatch):
    """The query track makes both submissions' code and images present after the claim's
    transaction: a pull that fails puts the job in error (to be run again), under its claim."""
    dataset = synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        attack = add_submission(session, "Q", SubmissionKind.QUERY_ATTACK)
        defense = add_submission(session, "S", SubmissionKind.DEFENSE)
        batch_id = session.scalar(select(Batch.id).where(Batch.dataset_id == dataset.id))
        job = QueryJob(attack_id=attack.id, defense_id=defense.id, batch_id=batch_id)
        session.add(job)
        session.flush()
        job_id = job.id

    def unpulled(_settings, submission):
        with transaction(settings) as session:  # no transaction of the runner's in the way
            session.execute(update(Submission).where(Submission.id == submission.id).values(reason="written meanwhile"))
        raise SandboxError(f"cannot pull the image {submission.name} is pinned to")

    monkeypatch.setattr(query_jobs, "submission_code", unpulled)
    with pytest.raises(SandboxError, match="cannot pull"):
        query_jobs.run_job(settings, job_id)
    with transaction(settings) as session:
        job = session.get(QueryJob, job_id)
        assert (job.status, job.attempt) == (JobStatus.ERROR, 1)
        attempt = session.scalars(select(JobAttempt).where(JobAttempt.query_job_id == job_id)).one()
        assert attempt.number == 1 and attempt.ended_at is not None and "cannot pull" in attempt.error
