"""The tallies the scores read stay equal to a full recount of the raw rows: after defense
packs stored through ``run_pack``, when an attempt is stale, after ``forget``, and they give
the same matrices as the per-image rows. A fake defense stands in for the container; each
test runs on SQLite and on a real PostgreSQL (where results go in with COPY)."""


import threading

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError

from arena.db import transaction
from arena.execution import pack_run, planning
from arena.models import (
    AdversarialImage,
    CellTally,
    Classification,
    ClassificationProblem,
    CleanTally,
    DefenseJob,
    Submission,
    SubmissionStatus,
)
from arena.results import answers
from arena.results.scoring import Standings, load_results
from conftest import assert_tallies_match_a_rebuild, make_settings, snapshot, wait_until
from factories import attacked, defense_packs, fake_defenses, synth_dataset
from servers import new_database, postgres_server

EPSILONS = [2, 8]


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path):
    """A fresh Arena on SQLite, or on its own database of the module's PostgreSQL server."""
    if request.param == "sqlite":
        return make_settings(tmp_path / "arena")
    return make_settings(tmp_path / "arena", database_url=new_database(request.getfixturevalue("postgres")))


@pytest.fixture
def tournament(settings, monkeypatch):
    """4 images in 2 batches; attacks A and T (targeted), defenses D and E; attack jobs done."""
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        ids = attacked(session, dataset, EPSILONS)
    fake_defenses(monkeypatch, settings)
    return settings, dataset, ids


def test_stored_packs_are_tallied_as_a_recount_would(tournament):
    settings, _, _ = tournament
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    cells, clean = snapshot(settings)
    assert len(cells) == 2 * 2 * len(EPSILONS) and len(clean) == 2
    assert sum(row[4] for row in cells) == 2 * 2 * len(EPSILONS) * 4  # defenses x attacks x eps x images
    assert_tallies_match_a_rebuild(settings)
    with transaction(settings) as session:  # stored by value, as the ORM reads them back
        problems = set(session.scalars(select(Classification.problem)))
    assert problems == {None, ClassificationProblem.MISSING, ClassificationProblem.INVALID}


def test_the_standings_equal_the_per_image_rows(tournament):
    settings, dataset, _ = tournament
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
        results = load_results(session, dataset)
    for value in ("error", "hit"):
        for eps in [None, *EPSILONS]:
            rows = results if eps is None else results[results["epsilon"] == eps]
            expected = rows.groupby(["attack_id", "defense_id"])[value].sum()
            shown = standings.matrix(value, eps)
            assert shown.to_numpy().sum() == expected.sum() and shown.to_numpy().sum() > 0
    assert standings.matrix("error").to_numpy().sum() + standings.matrix("correct").to_numpy().sum() == len(results)
    assert standings.epsilons == EPSILONS


def test_a_stale_attempt_adds_nothing(tournament, monkeypatch):
    settings, _, _ = tournament
    pack = defense_packs(settings)[0]
    stolen = pack.job_ids[0]
    run = pack_run.execute_defense

    def taken_over(*arguments):
        with transaction(settings) as session:  # another worker claimed it meanwhile
            session.execute(update(DefenseJob).where(DefenseJob.id == stolen).values(attempt=DefenseJob.attempt + 1))
        return run(*arguments)

    monkeypatch.setattr(pack_run, "execute_defense", taken_over)
    assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids) - 1
    assert_tallies_match_a_rebuild(settings)
    with transaction(settings) as session:
        job = session.get(DefenseJob, stolen)
        counted = session.scalar(select(CleanTally.scored).where(CleanTally.defense_id == job.submission_id)) or 0
        clean_jobs = session.scalars(select(DefenseJob.id).where(DefenseJob.submission_id == job.submission_id,
                                                                  DefenseJob.attack_job_id.is_(None))).all()
    assert stolen in clean_jobs and counted == 2 * (len(clean_jobs) - 1)  # the stolen batch is not counted


@pytest.mark.parametrize("forgotten", ["A", "D", None])
def test_forgetting_results_forgets_their_tallies(tournament, forgotten):
    settings, _, ids = tournament
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    with transaction(settings) as session:
        planning.forget(session, session.get(Submission, ids[forgotten]) if forgotten else None)
    cells, _ = snapshot(settings)
    assert len(cells) == {"A": 4, "D": 4, None: 0}[forgotten]
    assert_tallies_match_a_rebuild(settings)
    with transaction(settings) as session:  # the answers went with their jobs: none refers to a deleted row
        orphans = select(func.count()).select_from(Classification).where(
            Classification.defense_job_id.not_in(select(DefenseJob.id))
            | Classification.adversarial_image_id.not_in(select(AdversarialImage.id)))
        assert session.scalar(orphans) == 0
        assert session.scalar(select(func.count()).select_from(Classification)) == {"A": 24, "D": 20, None: 0}[forgotten]  # of 40


def test_a_disqualified_attack_leaves_the_tables_but_keeps_its_tallies(tournament):
    settings, dataset, ids = tournament
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    with transaction(settings) as session:
        session.get(Submission, ids["T"]).status = SubmissionStatus.DISQUALIFIED
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
    assert list(standings.matrix("hit").index) == ["A"]
    assert standings.targeted_attack_leaderboard().empty
    assert standings.defense_leaderboard()["scored"].tolist() == [len(EPSILONS) * 4] * 2  # A's cells only
    assert len(snapshot(settings)[0]) == 2 * 2 * len(EPSILONS)



def _stored_rows(settings, *where) -> list[dict]:
    with transaction(settings) as session:
        query = select(*Classification.__table__.columns).where(*where)
        return [dict(row._mapping) for row in session.execute(query.order_by(*Classification.__table__.primary_key))]


def test_answers_stored_in_pieces_of_one_transaction_count_as_the_packs_did(tournament):
    """The statement that moves the staged rows empties the staging table, so a transaction
    may store several times; the counts are those the packs' own transactions added."""
    settings, _, _ = tournament
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    rows, counted = _stored_rows(settings), snapshot(settings)
    with transaction(settings) as session:
        for table in (Classification, CellTally, CleanTally):
            session.execute(delete(table))
    with transaction(settings) as session:
        answers.store(session, rows[:len(rows) // 3])
        answers.store(session, rows[len(rows) // 3:])
    assert snapshot(settings) == counted and _stored_rows(settings) == rows


@pytest.mark.parametrize("twice", ["in another transaction", "in the same rows"])
def test_a_second_answer_to_an_image_of_a_job_is_refused_and_counts_nothing(tournament, twice):
    settings, _, _ = tournament
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    rows, counted = _stored_rows(settings), snapshot(settings)
    other = [row for row in rows if row["defense_job_id"] == rows[-1]["defense_job_id"]]
    with transaction(settings) as session:  # a job whose answers are to store again
        session.execute(delete(Classification).where(Classification.defense_job_id == other[0]["defense_job_id"]))
    if twice == "in another transaction":  # an answer of a stored job
        again = [dict(rows[0], label=7)]
    else:  # the other job's answers, one image twice
        again = [*other, dict(other[0], label=7)]
    with pytest.raises(IntegrityError), transaction(settings) as session:
        answers.store(session, again)
    assert snapshot(settings) == counted
    assert _stored_rows(settings) == [row for row in rows if row not in other]


def test_forgetting_waits_for_answers_being_stored_and_deletes_them_too(tournament):
    """PostgreSQL: a defense's answers committed while ``forget`` waits on their job's lock
    are deleted with the job, though no foreign key reaches them."""
    settings, _, ids = tournament
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: no store can be in flight")
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    job_id = _stored_rows(settings)[0]["defense_job_id"]
    rows = _stored_rows(settings, Classification.defense_job_id == job_id)
    with transaction(settings) as session:
        session.execute(delete(Classification).where(Classification.defense_job_id == job_id))
    failures = []

    def forget_the_defense() -> None:
        try:
            with transaction(settings) as session:
                planning.forget(session, session.get(Submission, rows[0]["defense_id"]))
        except Exception as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    forgetting = threading.Thread(target=forget_the_defense)
    with transaction(settings) as storing:
        storing.execute(select(DefenseJob).where(DefenseJob.id == job_id).with_for_update())  # as _store holds it
        answers.store(storing, rows)
        forgetting.start()
        wait_until(lambda: _waiting_on_a_lock(settings), 30, "forget to wait on the job's lock")
    forgetting.join(timeout=60)
    assert not forgetting.is_alive() and failures == []
    assert _stored_rows(settings, Classification.defense_id == rows[0]["defense_id"]) == []
    assert _stored_rows(settings, Classification.defense_job_id.not_in(select(DefenseJob.id))) == []
    assert_tallies_match_a_rebuild(settings)


def _waiting_on_a_lock(settings) -> bool:
    with transaction(settings) as session:
        return bool(session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()")))
