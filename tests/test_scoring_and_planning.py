"""Scoring and planning on a hand-made tournament in a real SQLite database (no containers)."""

import pytest
from sqlalchemy import func, select

from arena.config import EpsilonSchedule
from arena.db import transaction
from arena.execution import planning
from arena.models import (
    AdversarialImage,
    AttackJob,
    ClassificationProblem,
    DefenseJob,
    Image,
    JobStatus,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from arena.results import answers
from arena.results.scoring import Standings
from factories import add_submission, synth_dataset


@pytest.fixture
def tournament(settings):
    """4 images in 2 batches; attacks A (untargeted) and T (targeted); defense D; eps 2 and 8."""
    dataset = synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        ids = {name: add_submission(session, name, kind).id for name, kind in
               [("A", SubmissionKind.ATTACK), ("T", SubmissionKind.TARGETED_ATTACK), ("D", SubmissionKind.DEFENSE)]}
        planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL)
    return settings, dataset, ids


def _finish_attacks(session):
    for job in session.scalars(select(AttackJob)):
        job.status = JobStatus.DONE
        for image in job.batch.images:
            session.add(AdversarialImage(attack_job=job, image_id=image.id, sha256=image.sha256, linf=0))


def test_planning_covers_the_grid_once(tournament):
    settings, dataset, ids = tournament
    with transaction(settings) as session:
        assert session.scalar(select(func.count(AttackJob.id))) == 2 * 2 * 2  # attacks x eps x batches
        assert session.scalar(select(func.count(DefenseJob.id))) == 2  # clean batches only, for now
        _finish_attacks(session)
        session.flush()
        assert planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL) == planning.Plan(0, 8)
        assert planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL) == planning.Plan(0, 0)


def test_a_new_defense_adds_only_its_column_and_a_new_epsilon_only_its_jobs(tournament):
    settings, dataset, ids = tournament
    with transaction(settings) as session:
        _finish_attacks(session)
        session.flush()
        planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL)
        add_submission(session, "D2", SubmissionKind.DEFENSE)
        plan = planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL)
        assert plan == planning.Plan(attack_jobs=0, defense_jobs=8 + 2)
        new = session.scalars(select(DefenseJob).join(Submission).where(Submission.name == "D2")).all()
        assert len(new) == 10
        assert planning.plan(session, dataset, [2, 4, 8], EpsilonSchedule.ALL) == planning.Plan(attack_jobs=2 * 2, defense_jobs=0)


def test_rejected_and_disqualified_submissions_are_not_planned(settings):
    dataset = synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "R", SubmissionKind.ATTACK, status=SubmissionStatus.REJECTED)
        add_submission(session, "Q", SubmissionKind.DEFENSE, status=SubmissionStatus.DISQUALIFIED)
        assert planning.plan(session, dataset, [2], EpsilonSchedule.ALL) == planning.Plan(0, 0)


def test_scores_follow_the_2017_rules(tournament):
    settings, dataset, ids = tournament
    with transaction(settings) as session:
        _finish_attacks(session)
        session.flush()
        planning.plan(session, dataset, [2, 8], EpsilonSchedule.ALL)
        images = {i.id: i for i in session.scalars(select(Image))}
        first = min(images)
        rows = []
        for job in session.scalars(select(DefenseJob)):
            job.status = JobStatus.DONE
            if job.attack_job_id is None:
                targets = [(img, None) for img in job.batch.images]
            else:
                targets = [(session.get(Image, a.image_id), a.id) for a in job.attack_job.adversarial_images]
            for image, adversarial_id in targets:
                attack = job.attack_job.submission.name if job.attack_job else None
                eps = job.attack_job.epsilon if job.attack_job else None
                # D is right on clean images; against A it errs at eps 8 only; against T it
                # answers the target at eps 8 and gives no answer at all for the first image.
                label, problem = image.true_label, None
                if attack == "A" and eps == 8:
                    label = image.true_label % 1000 + 1
                if attack == "T" and eps == 8:
                    label = image.target_class
                if attack == "T" and image.id == first:
                    label, problem = None, ClassificationProblem.MISSING
                rows.append(dict(defense_job_id=job.id, defense_id=ids["D"], image_id=image.id,
                                 adversarial_image_id=adversarial_id, label=label, problem=problem))
        answers.store(session, rows)  # as pack_run._store does
        standings = Standings.compute(session, dataset)

    errors = standings.matrix("error")
    assert errors.loc["A", "D"] == 4  # 4 images at eps 8
    assert errors.loc["T", "D"] == 4 + 1  # 4 at eps 8, plus the missing answer at eps 2
    assert standings.matrix("error", 2).loc["A", "D"] == 0
    assert standings.matrix("hit", 8).loc["T", "D"] == 3  # the missing answer is no hit
    assert standings.matrix("correct").loc["A", "D"] == 4

    defense = standings.defense_leaderboard().set_index("submission")
    assert defense.loc["D", "score"] == 16 - 9
    assert defense.loc["D", "normalized"] == pytest.approx(7 / 16)
    assert defense.loc["D", "eps=2"] == pytest.approx(7 / 8)
    assert defense.loc["D", "clean_accuracy"] == 1.0
    attack = standings.attack_leaderboard().set_index("submission")
    assert list(attack.index) == ["A"] and attack.loc["A", "score"] == 4
    targeted = standings.targeted_attack_leaderboard().set_index("submission")
    assert targeted.loc["T", "score"] == 3 and targeted.loc["T", "eps=8"] == pytest.approx(3 / 4)


def test_a_disqualified_defense_leaves_every_table(tournament):
    settings, dataset, ids = tournament
    with transaction(settings) as session:
        session.get(Submission, ids["D"]).status = SubmissionStatus.DISQUALIFIED
        session.flush()
        standings = Standings.compute(session, dataset)
    assert "D" not in standings.matrix("error").columns
    assert standings.defense_leaderboard().empty


def test_equal_scores_share_a_rank_and_nothing_scored_has_none():
    """Two equal attack scores were ranked 1 and 2, and an entry before any job ran showed
    "rank 1 of 1" with score 0. One rule: equal scores share a rank (1, 1, 3); nothing scored,
    no rank; baselines keep their place unranked (the round may rank them)."""
    import pandas as pd

    from arena.results.scoring import _leaderboard

    subjects = pd.DataFrame({"submission": ["b", "a", "c", "base", "late"], "team": ["t1", "t2", "t3", "o", "t4"],
                             "baseline": [False, False, False, True, False], "nondeterministic": 0.0},
                            index=[1, 2, 3, 4, 5])
    table = pd.DataFrame({"score": [7, 7, 5, 9], "scored": [10, 10, 10, 10]}, index=[1, 2, 3, 4])
    board = _leaderboard(table, subjects, rank_baselines=False)
    assert list(board["submission"]) == ["base", "a", "b", "c", "late"]
    assert board["rank"].tolist() == [pd.NA, 1, 1, 3, pd.NA]
    assert _leaderboard(table, subjects, rank_baselines=True)["rank"].tolist() == [1, 2, 2, 4, pd.NA]
