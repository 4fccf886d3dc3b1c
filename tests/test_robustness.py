"""The worst case per image and the unique contributions, on a tournament computed by hand:
attacks A1, A2 and the targeted T against defenses D and E, 4 images, eps 2 and 8, the
defenses answering as PLAN says (through ``pack_run``, the container replaced), so that the
figures go through the stored classifications, ``judging`` and the SQL that reads them."""

import dataclasses
import itertools
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from arena.competition.entries import Scope
from arena.config import EpsilonSchedule
from arena.db import transaction
from arena.execution import pack_run, planning
from arena.models import (
    AdversarialImage,
    AttackJob,
    ClassificationProblem,
    DefenseJob,
    Image,
    Submission,
    SubmissionKind,
)
from arena.results import robustness
from arena.results.leaderboards import Leaderboards
from arena.results.outcomes import ImageOutcomes
from arena.results.scoring import Standings
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseOutcome
from arena.sandbox.result_csv import Answer
from arena.web.cache import StandingsCache
from conftest import make_settings
from factories import FAKE_CODE, attacked, defense_packs, synth_dataset

EPSILONS = [2, 8]
SUBMISSIONS = [("A1", SubmissionKind.ATTACK), ("A2", SubmissionKind.ATTACK), ("T", SubmissionKind.TARGETED_ATTACK),
               ("D", SubmissionKind.DEFENSE), ("E", SubmissionKind.DEFENSE)]
#: Each defense's answers on images 0..3: Correct, Wrong, or Missing (an error too).
PLAN = {
    "D": {"clean": "CCCW", ("A1", 2): "CWCC", ("A2", 2): "CWCC", ("T", 2): "CCWC",
          ("A1", 8): "WWCC", ("A2", 8): "CWCC", ("T", 8): "CCCM"},
    "E": {"clean": "CCCC", ("A1", 2): "CCCC", ("A2", 2): "WCCC", ("T", 2): "CCCC",
          ("A1", 8): "CCCC", ("A2", 8): "WCCM", ("T", 8): "CWCC"},
}
# By hand, from PLAN:
# D, eps 2: image 0 robust; 1 broken by A1 and A2; 2 broken by T alone; 3 wrong when clean: 1/4.
# D, eps 8: 0 broken by A1 alone; 1 by A1 and A2; 2 robust; 3 wrong when clean: 1/4. Overall 2/8.
# E, eps 2: 0 broken by A2 alone; 1, 2, 3 robust: 3/4.
# E, eps 8: 0 by A2 alone; 1 by T alone; 2 robust; 3 by A2 alone (missing answer): 1/4. Overall 4/8.
# Unique: A1 once (D, 8, image 0); A2 three times (E: 2/0, 8/0, 8/3); T twice (D 2/2, E 8/1).
# Scores (correct answers): D 17 of 24, E 20 of 24.


@pytest.fixture
def tournament(tmp_path, monkeypatch):
    settings, dataset = planned(tmp_path, monkeypatch)
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)
    return settings, dataset


def planned(tmp_path, monkeypatch):
    """The tournament with its attack jobs done and its defense jobs planned, the defenses'
    runs answering as PLAN says."""
    settings = make_settings(tmp_path / "arena", epsilons=EPSILONS)
    dataset = synth_dataset(settings, 4, batch_size=4)
    source_of = {}  # an input's sha256 -> (what it is, image position, true label)
    with transaction(settings) as session:
        attacked(session, dataset, EPSILONS, SUBMISSIONS)
        images = session.scalars(select(Image).order_by(Image.id)).all()
        position = {image.id: i for i, image in enumerate(images)}
        source_of |= {image.sha256: ("clean", i, image.true_label) for i, image in enumerate(images)}
        rows = (select(AdversarialImage, AttackJob, Submission.name)
                .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
                .join(Submission, AttackJob.submission_id == Submission.id))
        for adversarial, job, attack in session.execute(rows):
            # Its own hash, so that a defense can tell which attack's output it is given.
            adversarial.sha256 = f"{attack}-{job.epsilon}-{adversarial.image_id}".ljust(64, "0")
            i = position[adversarial.image_id]
            source_of[adversarial.sha256] = ((attack, job.epsilon), i, images[i].true_label)

    def answer(defense: str, sha256: str) -> Answer:
        source, i, truth = source_of[sha256]
        letter = PLAN[defense][source][i]
        return {"C": Answer(truth), "W": Answer(truth % 1000 + 1), "M": Answer(None, ClassificationProblem.MISSING)}[letter]

    # the fake code's root is the defense's name, for the fake run to answer as that defense
    monkeypatch.setattr(pack_run, "submission_code",
                        lambda _settings, submission: dataclasses.replace(FAKE_CODE, root=Path(submission.name)))
    monkeypatch.setattr(pack_run, "execute_defense", lambda _s, code, inputs, _key: DefenseOutcome(
        RunResult(0, False, None, 0.1, ""), {item.key: answer(code.root.name, item.sha256) for item in inputs}))
    return settings, dataset


def _boards(settings, dataset) -> tuple[Standings, Leaderboards]:
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
        return standings, Leaderboards.load(session, dataset, standings)


def test_the_worst_case_counts_an_image_only_if_no_attack_broke_it(tournament):
    _, boards = _boards(*tournament)
    table = boards.robust_accuracy.set_index("submission")
    assert table.loc["D", ["worst_case", "worst_case_eps=2", "worst_case_eps=8"]].tolist() == [0.25, 0.25, 0.25]
    assert table.loc["E", ["worst_case", "worst_case_eps=2", "worst_case_eps=8"]].tolist() == [0.5, 0.75, 0.25]
    assert table["worst_case_scored"].tolist() == [8, 8] and table["worst_case_scored_eps=2"].tolist() == [4, 4]
    defense = boards.defense.set_index("submission")
    assert defense.loc["D", "worst_case"] == 0.25 <= defense.loc["D", "clean_accuracy"] == 0.75
    # One robust image of 4 at eps 2: resampling the 4 gives Binomial(4, 1/4) robust images,
    # whose CDF is 0.316 at 0 and 0.949 at 2, 0.996 at 3: the interval is 0 to 3 of 4.
    assert defense.loc["D", ["worst_case_eps=2_low", "worst_case_eps=2_high"]].tolist() == [0.0, 0.75]


def test_each_attack_gets_the_images_only_it_broke(tournament):
    _, boards = _boards(*tournament)
    unique = boards.unique_contributions.set_index("submission")
    assert unique.loc[["A1", "A2", "T"], "unique"].tolist() == [1, 3, 2]
    assert unique.loc[["A1", "A2", "T"], "unique_eps=2"].tolist() == [0, 1, 1]
    assert unique.loc[["A1", "A2", "T"], "unique_eps=8"].tolist() == [1, 2, 1]
    assert boards.attack.set_index("submission").loc[["A2", "A1"], "unique"].tolist() == [3, 1]
    assert boards.targeted_attack.set_index("submission").loc["T", "unique"] == 2
    assert (unique["unique_low"] <= unique["unique"]).all() and (unique["unique"] <= unique["unique_high"]).all()


def test_a_chosen_set_of_attacks(tournament):
    """Over A1 alone, D keeps images 0 and 2 at eps 2 and image 2 at eps 8 (3 of 8); E every
    image; and every break of A1 on an image D labels right clean is A1's alone (3)."""
    settings, dataset = tournament
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
        a1 = session.scalar(select(Submission.id).where(Submission.name == "A1"))
        outcomes = ImageOutcomes.load(session, dataset, standings.names, attacks=[a1])
    table = robustness.robust_accuracy(outcomes, standings.names, EPSILONS).set_index("submission")
    assert table["worst_case"].tolist() == [3 / 8, 1.0] and table["worst_case_eps=2"].tolist() == [0.5, 1.0]
    unique = robustness.unique_contributions(outcomes, standings.names, EPSILONS)
    assert unique["submission"].tolist() == ["A1"] and unique["unique"].tolist() == [3]


def test_the_intervals_surround_the_scores_the_tallies_give(tournament):
    standings, boards = _boards(*tournament)
    defense = boards.defense
    assert defense["submission"].tolist() == ["E", "D"] and defense["score"].tolist() == [20, 17]
    assert defense[["submission", "score", "normalized"]].equals(standings.defense_leaderboard()[["submission", "score", "normalized"]])
    for board in (boards.defense, boards.attack, boards.targeted_attack):
        for figure in ("score", "normalized", "eps=2", "eps=8"):
            assert ((board[f"{figure}_low"] <= board[figure]) & (board[figure] <= board[f"{figure}_high"])).all(), figure


def test_the_rank_probability_is_the_paired_bootstrap(tournament):
    """Per image, E's correct answers minus D's are -1, 3, 1 and 0 (images 0..3): E beats D in
    the resamples of the 4 images where their sum is positive, every one of the 4**4 draws
    equally likely."""
    _, boards = _boards(*tournament)
    difference = np.array([-1, 3, 1, 0])
    sums = [difference[list(draw)].sum() for draw in itertools.product(range(4), repeat=4)]
    exact = np.mean([s > 0 for s in sums]) + 0.5 * np.mean([s == 0 for s in sums])
    assert boards.defense["beats_next"].iloc[0] == pytest.approx(exact, abs=0.04)
    assert np.isnan(boards.defense["beats_next"].iloc[1])  # the last row beats no one


def _outcomes(answered, errors, breakers, clean_answered, clean_correct) -> ImageOutcomes:
    """One defense (id 1), attacks 5 and 9, one epsilon, 3 images, given by hand."""
    empty = np.zeros((2, 1, 3), dtype=np.int64)
    return ImageOutcomes(np.array([11, 12, 13]), [4], np.array([1]), np.array([5, 9]), np.array([5, 9]),
                         np.array([[answered]]), np.array([[errors]]), np.array([[breakers]]),
                         np.array([clean_answered], dtype=bool), np.array([clean_correct], dtype=bool),
                         empty, empty, empty)


def test_only_settled_images_count():
    """Image 0: both attacks answered and right; image 1: only one attack answered so far;
    image 2: attack 9 broke it, but its clean answer is not in yet."""
    outcomes = _outcomes([2, 1, 2], [0, 0, 1], [0, 0, 9], [1, 1, 0], [1, 1, 0])
    assert robustness.settled(outcomes)[0, 0].tolist() == [True, False, False]
    assert robustness.robust(outcomes)[0, 0].tolist() == [True, False, False]
    assert robustness.unique_breaks(outcomes).sum() == 0
    settled = _outcomes([2, 1, 2], [0, 0, 1], [0, 0, 9], [1, 1, 1], [1, 1, 1])  # its clean answer lands, right
    assert robustness.unique_breaks(settled)[:, 0].tolist() == [[0, 0, 0], [0, 0, 1]]  # attack 9's alone
    wrong_clean = _outcomes([2, 1, 2], [0, 0, 1], [0, 0, 9], [1, 1, 1], [1, 1, 0])  # wrong clean: no attack needed
    assert robustness.unique_breaks(wrong_clean).sum() == 0


def _same(outcomes: ImageOutcomes, fresh: ImageOutcomes) -> bool:
    return all(np.array_equal(getattr(outcomes, name), getattr(fresh, name)) for name in
               ("answered", "errors", "breakers", "clean_answered", "clean_correct", "attack_answered", "attack_errors",
                "attack_hits")) and outcomes.epsilons == fresh.epsilons


def test_the_cache_adds_the_jobs_that_land_to_the_outcomes_it_had(tmp_path, monkeypatch):
    """When only new defense jobs finished, the web cache reads their answers alone and adds
    them; when anything else changed (a job forgotten, one committed with an older finish
    time than the cache saw) it reads everything again. Either way: what a fresh read gives."""
    settings, dataset = planned(tmp_path, monkeypatch)
    first, second = defense_packs(settings)
    fresh_loads = []
    load = ImageOutcomes.load
    monkeypatch.setattr(ImageOutcomes, "load", classmethod(lambda _cls, *args, **kwargs: fresh_loads.append(1)
                                                           or load(*args, **kwargs)))
    cache = StandingsCache(settings, recheck_seconds=0)

    def current() -> tuple[ImageOutcomes, ImageOutcomes, Leaderboards]:
        snapshot = cache.get(None, Scope.ALL).snapshot  # every entry, as the fresh read below
        with transaction(settings) as session:
            fresh = load(session, dataset, Standings.compute(session, dataset).names)
        return snapshot.outcomes, fresh, snapshot.boards

    pack_run.run_pack(settings, first)
    assert _same(*current()[:2]) and len(fresh_loads) == 1
    pack_run.run_pack(settings, second)
    outcomes, fresh, boards = current()
    assert _same(outcomes, fresh) and len(fresh_loads) == 1, "the second defense's jobs were added, not reread"
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
        assert boards.defense.equals(Leaderboards.compute(standings, load(session, dataset, standings.names)).defense)
        planning.forget(session, session.scalar(select(Submission).where(Submission.name == "D")))
    outcomes, fresh, _ = current()
    assert _same(outcomes, fresh) and len(fresh_loads) == 2 and outcomes.answered[0].sum() == 0  # D forgotten
    with transaction(settings) as session:
        planning.plan(session, dataset, EPSILONS, EpsilonSchedule.ALL)
    for pack in defense_packs(settings):
        pack_run.run_pack(settings, pack)
    with transaction(settings) as session:  # as if committed late, finished before what the cache saw
        d = session.scalar(select(Submission.id).where(Submission.name == "D"))
        session.execute(update(DefenseJob).where(DefenseJob.submission_id == d)
                        .values(finished_at=datetime(2000, 1, 1, tzinfo=timezone.utc)))
    outcomes, fresh, _ = current()
    assert _same(outcomes, fresh) and len(fresh_loads) == 3 and outcomes.answered[0].sum() > 0
