"""Query jobs keep attempts and full logs as the batch jobs do (issue 28): each claim of a
query job is a `job_attempts` row, ended with the attack's outcome or a platform error, or
by the reaper; the attack's and the served defense's whole stderr are objects of the store,
each downloaded by its own side's team and organizers only; the hosts page lists the
attempts, and a backup carries both logs. Through a real engine, the sample boundary attack
and decoder defense, each printing more than a tail to stderr."""

import re
import shutil
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from arena import job_states
from arena.admin import teams
from arena.competition import rounds
from arena.config import SandboxLimits
from arena.data import logs
from arena.db import transaction
from arena.execution.leases import claimed
from arena.execution.run import run
from arena.models import Batch, JobAttempt, JobStatus, QueryJob, SubmissionKind, utcnow
from arena.operations.backup import backup
from arena.operations.restore import restore
from arena.web.app import create_app
from conftest import SAMPLES, make_settings
from factories import add_submission, submit_folder, synth_dataset

ORGANIZER = {"Authorization": "Bearer organizer-secret"}
LINES = 300  # past the 200 lines and 4000 bytes of a tail


def _printing(tmp_path, sample: str, entry: str, word: str):
    """A copy of the sample whose ``entry`` script first prints ``LINES`` lines naming ``word``
    to stderr (its only log: stdin and stdout are the query channel)."""
    folder = shutil.copytree(SAMPLES / sample, tmp_path / f"{sample}-{word}")
    script = folder / entry
    body = script.read_text().replace("exec ", f'for i in $(seq 1 {LINES}); do echo "{word} line $i" >&2; done\nexec ', 1)
    script.write_text(body)
    return folder


def _whole(log: str, word: str) -> bool:
    """Whether every line ``word``'s side printed is in ``log``, not its tail alone."""
    return all(f"{word} line {i}\n" in log for i in (1, LINES // 2, LINES))


@pytest.mark.docker
def test_a_query_jobs_attempt_keeps_both_logs_each_for_its_own_side(engine, tmp_path):
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret", epsilons=[8],
                             sandbox=SandboxLimits(memory="512m"), query_seconds_per_image=20.0,
                             serving_start_seconds=30.0)
    synth_dataset(settings, 3, batch_size=3)
    decoder = submit_folder(settings, _printing(tmp_path, "decoder", "serve.sh", "served"), tmp_path, team="blue")
    boundary = submit_folder(settings, _printing(tmp_path, "boundary", "run_attack.sh", "attack"), tmp_path, team="red")
    assert (decoder.status.value, boundary.status.value) == ("accepted", "accepted")
    with transaction(settings) as session:
        rounds.find(session).query_budget = 20
    assert not run(settings).platform_errors
    with transaction(settings) as session:
        job = session.scalars(select(QueryJob)).one()
        attempt = session.scalars(select(JobAttempt).where(JobAttempt.query_job_id == job.id)).one()
        assert job.status is JobStatus.DONE and job.defense_failure is None, job.problems
        assert (attempt.number, attempt.worker_id, attempt.images, attempt.error) == (1, job.worker_id, 3, None)
        assert attempt.ended_at is not None and attempt.exit_code == 0
        kept = {"attack": attempt.log_sha256, "served": attempt.served_log_sha256}
        red = {"Authorization": f"Bearer {teams.issue_token(session, 'red')}"}
        blue = {"Authorization": f"Bearer {teams.issue_token(session, 'blue')}"}
    assert _whole(logs.read(settings, kept["attack"]).decode(), "attack")
    assert _whole(logs.read(settings, kept["served"]).decode(), "served")

    client = TestClient(create_app(settings))
    sides = {"attack": (boundary.id, red, blue, "served"), "served": (decoder.id, blue, red, "attack")}
    for word, (submission_id, owner, other, other_word) in sides.items():
        link = f"/submissions/{submission_id}/runs/{attempt.id}/log"
        listed = client.get(f"/api/submissions/{submission_id}", headers=owner).json()["query_runs"]
        assert [(q["job_id"], q["log_url"]) for q in listed] == [(job.id, link)]
        assert f'href="{link}" class="query-full-log"' in client.get(f"/submissions/{submission_id}", headers=owner).text
        for reader in (owner, ORGANIZER):
            answer = client.get(link, headers=reader)
            assert answer.status_code == 200 and _whole(answer.text, word), (word, answer.text[:200])
            assert f"{other_word} line" not in answer.text  # never the other side's
        for stranger in (other, {}):
            assert client.get(link, headers=stranger).status_code == 404, (word, stranger)
        assert "log_url" not in client.get(f"/api/submissions/{submission_id}", headers=other).json()["query_runs"][0]

    page = client.get("/organizer/workers", headers=ORGANIZER).text
    row = re.search(rf'<tr id="query-attempt-{attempt.id}">(.*?)</tr>', page, re.S).group(1)
    assert "boundary-attack → decoder-served" in row and f"#{job.worker_id}" in row and "exit 0" in row
    assert f'href="/submissions/{boundary.id}/runs/{attempt.id}/log"' in row
    assert f'href="/submissions/{decoder.id}/runs/{attempt.id}/log"' in row
    overview = client.get("/api/workers", headers=ORGANIZER).json()
    assert overview["jobs"]["query"] == {"done": 1}
    assert [(q["job_id"], q["attempt"], q["status"], q["worker_id"]) for q in overview["query_attempts"]] == \
        [(job.id, 1, "done", job.worker_id)]
    assert client.get("/api/workers", headers=red).status_code in (401, 403)

    snapshot = backup(settings, tmp_path / "backups")  # both logs travel with their attempt
    restored = settings.model_copy(update={"data_dir": tmp_path / "restored", "database_url": None})
    restore(restored, snapshot.folder)
    for word, sha256 in kept.items():
        assert logs.read(restored, sha256) == logs.read(settings, sha256), word


def test_a_lost_query_jobs_attempt_is_ended_by_the_reaper_and_the_next_claim_makes_another(settings):
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        attack = add_submission(session, "Q", SubmissionKind.QUERY_ATTACK)
        defense = add_submission(session, "S", SubmissionKind.DEFENSE)
        job = QueryJob(attack_id=attack.id, defense_id=defense.id, batch_id=session.scalar(select(Batch.id)))
        session.add(job)
        session.flush()
        job_id = job.id
        first = claimed(session, settings, QueryJob, (job_id,), None)[job_id]
    with transaction(settings) as session:  # its runner died: the lease runs out
        session.execute(update(QueryJob).where(QueryJob.id == job_id)
                        .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        assert job_states.reap(session) == 1
    with transaction(settings) as session:
        attempt = session.get(JobAttempt, first.attempt_id)
        assert (attempt.query_job_id, attempt.number, attempt.error) == (job_id, 1, job_states.REAPED)
        assert attempt.ended_at is not None and session.get(QueryJob, job_id).status is JobStatus.PENDING
        second = claimed(session, settings, QueryJob, (job_id,), None)[job_id]
    with transaction(settings) as session:
        numbers = session.execute(select(JobAttempt.id, JobAttempt.number, JobAttempt.ended_at)
                                  .where(JobAttempt.query_job_id == job_id).order_by(JobAttempt.id)).all()
        assert [(i, n, ended is None) for i, n, ended in numbers] == [(first.attempt_id, 1, False),
                                                                    (second.attempt_id, 2, True)]
        assert second.token == 2


def test_api_jobs_lists_query_jobs_by_either_side_and_status(tmp_path):
    settings = make_settings(tmp_path / "arena", organizer_token="organizer-secret")
    synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        attack = add_submission(session, "Q", SubmissionKind.QUERY_ATTACK)
        defenses = [add_submission(session, name, SubmissionKind.DEFENSE) for name in ("S1", "S2")]
        batches = session.scalars(select(Batch).order_by(Batch.index)).all()
        jobs = [QueryJob(attack_id=attack.id, defense_id=d.id, batch_id=b.id) for d in defenses for b in batches]
        session.add_all(jobs)
        session.flush()
        job_states.finish(jobs[0])
        ids = [job.id for job in jobs]
        attack_id, defense_ids = attack.id, [d.id for d in defenses]
    client = TestClient(create_app(settings))
    listed = client.get("/api/jobs?kind=query", headers=ORGANIZER).json()
    assert [(j["id"], j["submission_id"], j["defense_id"], j["batch"]) for j in listed] == \
        [(ids[0], attack_id, defense_ids[0], 0), (ids[1], attack_id, defense_ids[0], 1),
         (ids[2], attack_id, defense_ids[1], 0), (ids[3], attack_id, defense_ids[1], 1)]
    assert {j["kind"] for j in listed} == {"query"} and listed[0]["status"] == "done"
    by_defense = client.get(f"/api/jobs?kind=query&submission_id={defense_ids[1]}", headers=ORGANIZER).json()
    assert [j["id"] for j in by_defense] == ids[2:]
    assert [j["id"] for j in client.get("/api/jobs?kind=query&status=done", headers=ORGANIZER).json()] == ids[:1]
    assert client.get("/api/jobs?kind=attack", headers=ORGANIZER).json() == []  # the batch kinds stay theirs
