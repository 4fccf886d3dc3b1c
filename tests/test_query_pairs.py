"""Which pairs and batches the query track runs, against hand-worked cases, its jobs
forgotten with a submission, and its jobs held under the leases and fencing of the other
jobs and queued for the Celery workers (docs/query-track.md). No container: the runs are
stand-ins."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from arena import actions, job_states
from arena.db import transaction
from arena.errors import ConflictError
from arena.execution import distributed, planning, query_jobs, query_pairs
from arena.execution.broker import QUERY_TASK
from arena.execution.query_pairs import chosen_batches, chosen_pairs, ranks_matter
from arena.models import DefenseJob, Image, JobStatus, QueryJob, QueryResult, Round, SubmissionKind, utcnow
from arena.sandbox.containers import RunResult
from arena.sandbox.query_run import QueryImageResult, QueryOutcome
from factories import add_submission, synth_dataset


def test_all_pairs_without_a_top_k():
    assert chosen_pairs([1, 2], [10, 20], [], [], None) == {(1, 10), (1, 20), (2, 10), (2, 20)}


def test_top_k_pairs_each_attack_with_the_best_defenses_and_each_defense_with_the_best_attacks():
    # defenses ranked 30, 10, 20; attacks ranked 2, 1, 3: K = 1
    pairs = chosen_pairs([1, 2, 3], [10, 20, 30], [2, 1, 3], [30, 10, 20], 1)
    assert pairs == {(1, 30), (2, 30), (3, 30), (2, 10), (2, 20)}


def test_an_entry_not_ranked_yet_comes_after_the_ranked_ones():
    # defense 40 is new (unranked): it still meets the top attack; attack 4 (unranked) meets the top defense
    pairs = chosen_pairs([1, 4], [10, 40], [1], [10], 1)
    assert pairs == {(1, 10), (4, 10), (1, 40)}


def test_the_ranks_are_read_only_when_they_change_the_pairs():
    """Every pair is chosen while each side has K entries or fewer: the planner reads no
    leaderboard then (it plans at every turn of a run)."""
    assert not ranks_matter(3, 3, None) and not ranks_matter(2, 3, 3)
    assert ranks_matter(4, 3, 3) and ranks_matter(1, 4, 3)
    for attacks, defenses in (([1, 2], [10, 20, 30]), ([1, 2, 3], [10])):
        assert chosen_pairs(attacks, defenses, [2, 1], [30, 20, 10], 3) == chosen_pairs(attacks, defenses, [], [], None)


def test_planning_under_k_entries_a_side_reads_no_leaderboard(settings, monkeypatch):
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "q1", SubmissionKind.QUERY_ATTACK)
        add_submission(session, "d1", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"})
        round_ = session.scalars(select(Round)).one()
        round_.query_top_k = 2

        def unread(*_args):
            raise AssertionError("the planner read a leaderboard it did not need")

        monkeypatch.setattr(query_pairs, "attack_order", unread)
        monkeypatch.setattr(query_pairs, "defense_order", unread)
        assert query_jobs.plan(session, round_) == 1


def test_the_attack_order_is_ranked_again_only_when_a_query_job_has_finished_since(settings, monkeypatch):
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        attack = add_submission(session, "q1", SubmissionKind.QUERY_ATTACK)
        defense = add_submission(session, "d1", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"})
        round_ = session.scalars(select(Round)).one()
        job = QueryJob(attack_id=attack.id, defense_id=defense.id, batch_id=session.scalars(select(Image)).first().batch_id)
        session.add(job)
        session.flush()
        reads = []
        frame = query_pairs.results_frame
        monkeypatch.setattr(query_pairs, "results_frame", lambda *a: reads.append(1) or frame(*a))
        assert query_pairs.attack_order(session, round_) == query_pairs.attack_order(session, round_) == []
        assert len(reads) == 1
        job_states.finish(job)
        session.flush()
        query_pairs.attack_order(session, round_)
        assert len(reads) == 2  # a job finished: the results may rank otherwise


def test_the_defense_order_is_ranked_again_only_when_a_defense_job_has_finished_since(settings, monkeypatch):
    """The batch leaderboard behind the served defenses' order, likewise (0.2 s a turn at the 2017 size)."""
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        defense = add_submission(session, "d1", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"})
        round_ = session.scalars(select(Round)).one()
        job = DefenseJob(submission=defense, batch_id=session.scalars(select(Image)).first().batch_id)
        session.add(job)
        session.flush()
        computed = []
        compute = query_pairs.Standings.compute
        monkeypatch.setattr(query_pairs.Standings, "compute", lambda *a: computed.append(1) or compute(*a))
        assert query_pairs.defense_order(session, round_) == query_pairs.defense_order(session, round_)
        assert len(computed) == 1
        job_states.finish(job)
        session.flush()
        query_pairs.defense_order(session, round_)
        assert len(computed) == 2


def test_the_first_batches_that_hold_the_images_asked_for():
    batches = [(7, 100), (8, 100), (9, 50)]
    assert chosen_batches(batches, None) == [7, 8, 9]
    assert chosen_batches(batches, 100) == [7]
    assert chosen_batches(batches, 101) == [7, 8]
    assert chosen_batches(batches, 1000) == [7, 8, 9]


def test_planning_inserts_the_chosen_pairs_on_the_chosen_batches_once(settings):
    synth_dataset(settings, 4, batch_size=2)  # two batches
    with transaction(settings) as session:
        attacks = [add_submission(session, f"q{i}", SubmissionKind.QUERY_ATTACK).id for i in (1, 2)]
        defenses = [add_submission(session, f"d{i}", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"}).id
                    for i in (1, 2, 3)]
        add_submission(session, "batch-only", SubmissionKind.DEFENSE)  # serves no queries: never paired
        round_ = session.scalars(select(Round)).one()
        round_.query_top_k, round_.query_images = 1, 2
        assert query_jobs.plan(session, round_) == 4  # q1 x d1..d3, q2 x d1: nothing ranked yet, by id
        assert query_jobs.plan(session, round_) == 0
        planned = set(session.execute(select(QueryJob.attack_id, QueryJob.defense_id)))
    assert planned == {(attacks[0], d) for d in defenses} | {(attacks[1], defenses[0])}


def test_forgetting_a_submission_forgets_its_query_jobs_and_results(settings):
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        attack = add_submission(session, "q", SubmissionKind.QUERY_ATTACK)
        defense = add_submission(session, "d", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"})
        query_jobs.plan(session, session.scalars(select(Round)).one())
        job = session.scalars(select(QueryJob)).one()
        image = session.scalars(select(Image)).first()
        session.add(QueryResult(query_job_id=job.id, image_id=image.id, queries=1, refused=0, sha256=image.sha256,
                                linf=0, l2=0.0, missing=False, label=1, labels_at={}))
        session.flush()
        planning.forget(session, defense)
        assert session.scalars(select(QueryJob)).all() == [] and session.scalars(select(QueryResult)).all() == []
        assert query_jobs.plan(session, session.scalars(select(Round)).one()) == 1  # planned again
        planning.forget(session, attack)
        assert session.scalars(select(QueryJob)).all() == []


def _one_query_job(settings) -> int:
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "q", SubmissionKind.QUERY_ATTACK)
        add_submission(session, "d", SubmissionKind.DEFENSE, meta={"serving_entry_point": "s.sh"})
        query_jobs.plan(session, session.scalars(select(Round)).one())
        return session.scalars(select(QueryJob.id)).one()


def _outcome(task, label: int) -> QueryOutcome:
    return QueryOutcome(RunResult(0, False, None, 1.0, ""), None, "", [
        QueryImageResult(i.image_id, i.sha256, 0, 0.0, 1, 0, False, label, {e: label for e in task.epsilons})
        for i in task.inputs])


def test_a_query_job_whose_lease_ran_out_is_taken_over_and_its_results_stored_once(settings, monkeypatch):
    """The first runner stalls past its lease; the reaper puts the job back, a second runner
    claims and stores it; the first runner's results, when it comes back, are dropped."""
    job_id = _one_query_job(settings)
    monkeypatch.setattr(query_jobs, "submission_code", lambda settings, submission: submission.name)
    runs = []

    def execute(run_settings, task):
        runs.append(task)
        if len(runs) == 1:
            with transaction(settings) as session:
                session.execute(update(QueryJob).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
                assert job_states.reap(session) == 1
            assert query_jobs.run_job(settings, job_id) is True  # the second runner, its label 2
        return _outcome(task, label=len(runs))

    monkeypatch.setattr(query_jobs, "execute_query_attack", execute)
    assert query_jobs.run_job(settings, job_id) is False
    assert query_jobs.run_job(settings, job_id) is False  # done: nobody claims it again
    with transaction(settings) as session:
        job = session.get_one(QueryJob, job_id)
        assert (job.status, job.attempt, job.lease_expires_at) == (JobStatus.DONE, 2, None)
        assert sorted(session.scalars(select(QueryResult.label))) == [2, 2]  # the second run's, once per image
    assert len(runs) == 2


def test_the_distributed_dispatch_queues_query_jobs_for_the_workers(settings, monkeypatch):
    job_id = _one_query_job(settings)
    sent = []

    class Broker:
        def send_task(self, name, args, queue):
            sent.append((name, args, queue))

    monkeypatch.setattr(distributed, "celery_app", lambda settings: Broker())
    with transaction(settings) as session:
        dataset_id = session.scalars(select(Round.dataset_id)).one()
    distributed.dispatch(settings, dataset_id, wait=False)
    assert (QUERY_TASK, [job_id], "cpu") in sent
    with transaction(settings) as session:
        assert session.get_one(QueryJob, job_id).status is JobStatus.QUEUED
    distributed.dispatch(settings, dataset_id, wait=False)  # queued under a live lease: not sent again
    assert [s for s in sent if s[0] == QUERY_TASK] == [(QUERY_TASK, [job_id], "cpu")]


def test_a_round_with_a_query_job_not_done_is_not_published(settings):
    job_id = _one_query_job(settings)
    with pytest.raises(ConflictError, match="2 jobs not done"):  # the query job and the defense's clean batch
        actions.publish_round(settings, "synthetic")
    with transaction(settings) as session:
        job_states.finish(session.get_one(QueryJob, job_id))
    with pytest.raises(ConflictError, match="1 jobs not done"):
        actions.publish_round(settings, "synthetic")
