"""Rounds, entries, quotas, counting submissions and baselines, on a real SQLite database
(no containers: the rows are what intake and the runners would leave)."""

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from arena.competition import entries, quotas, rounds
from arena.competition.entries import Scope
from arena.config import EpsilonSchedule
from arena.db import transaction
from arena.errors import ConflictError, ForbiddenError, NotFoundError, QuotaError
from arena.execution import pack_run, packing, planning
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    Dataset,
    DefenseJob,
    Entry,
    JobStatus,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Visibility,
    utcnow,
)
from arena.results.scoring import Standings
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseOutcome
from arena.sandbox.result_csv import Answer
from conftest import make_settings
from factories import defense_packs, fake_defenses, synth_dataset, team_named


def _round(session, name: str) -> Round:
    return rounds.find(session, name)


def _entered(session, round_: Round, name: str, kind=SubmissionKind.DEFENSE, owner="red", ago=timedelta(0),
             carried=False) -> Submission:
    """A submission entered into ``round_`` only, ``ago`` before now."""
    submission = Submission(team=team_named(session, owner), name=name, kind=kind, sha256=name.ljust(64, "0"), meta={},
                            status=SubmissionStatus.ACCEPTED)
    session.add(submission)
    session.add(Entry(round=round_, submission=submission, entered_at=utcnow() - ago, carried=carried))
    session.flush()
    return submission


@pytest.fixture
def two_rounds(settings):
    """Round "dev" (2 images, eps 2 and 8) and round "final" (2 other images, eps 16 only)."""
    synth_dataset(settings, 2, batch_size=2, name="dev")
    final = synth_dataset(settings, 2, batch_size=2, name="final-images")
    with transaction(settings) as session:
        session.delete(rounds.of_dataset(session, final.id))
        session.flush()
        rounds.create(session, settings, "final", session.get(Dataset, final.id), epsilons=[16], seconds_per_image=2.0)
        dev = session.get(Round, _round(session, "dev").id)
        dev.epsilons = [2, 8]
    return settings


# --- the upload window --------------------------------------------------------------


def test_uploads_go_to_the_one_open_round_and_are_refused_when_none_is(two_rounds):
    with transaction(two_rounds) as session:
        with pytest.raises(rounds.RoundError, match="several rounds take uploads .*dev, final"):
            rounds.for_uploads(session)
        rounds.close(_round(session, "dev"))
        assert rounds.for_uploads(session).name == "final"
        with pytest.raises(ForbiddenError, match="round 'dev' closed at"):
            rounds.for_uploads(session, "dev")
        later = utcnow() + timedelta(days=2)
        rounds.update(_round(session, "final"), opens_at=later)
        with pytest.raises(ForbiddenError, match=f"no round takes uploads now; the next round opens at {later:%Y-%m-%d %H:%M}"):
            rounds.for_uploads(session)
        with pytest.raises(rounds.RoundError, match="close after it opens"):
            rounds.update(_round(session, "final"), closes_at=utcnow())


def test_a_round_needs_a_dataset_of_its_own(two_rounds):
    with transaction(two_rounds) as session:
        dev = session.scalar(select(Dataset).where(Dataset.name == "dev"))
        with pytest.raises(ConflictError, match="already belongs to a round"):
            rounds.create(session, two_rounds, "again", dev)
        with pytest.raises(rounds.RoundError, match="epsilons must be"):
            rounds.create(session, two_rounds, "bad", dev, epsilons=[300])


# --- quotas ------------------------------------------------------------------------------


def test_the_daily_quota_says_when_the_next_upload_is_allowed(two_rounds):
    with transaction(two_rounds) as session:
        dev = rounds.update(_round(session, "dev"), daily_quota=2)
        first = _entered(session, dev, "d1", ago=timedelta(hours=30))
        _entered(session, dev, "d2", ago=timedelta(hours=5))
        _entered(session, dev, "d3", ago=timedelta(hours=1))
        _entered(session, dev, "a1", kind=SubmissionKind.ATTACK, ago=timedelta(hours=1))
        _entered(session, dev, "carried", ago=timedelta(0), carried=True)
        red = first.team
        now = utcnow()
        with pytest.raises(QuotaError, match="its 2 defense uploads of the last 24 hours") as refused:
            quotas.check(session, dev, red, SubmissionKind.DEFENSE, now)
        oldest_in_window = now - timedelta(hours=5)
        assert abs((refused.value.retry_at - (oldest_in_window + quotas.DAY)).total_seconds()) < 5
        assert quotas.left(session, dev, red, SubmissionKind.DEFENSE, now) == 0
        # another track keeps its own count; carried entries count for none
        quotas.check(session, dev, red, SubmissionKind.ATTACK, now)
        assert quotas.left(session, dev, red, SubmissionKind.ATTACK, now) == 1
        # two days later the daily quota has room again, but a total of 3 is reached
        assert quotas.left(session, dev, red, SubmissionKind.DEFENSE, now + timedelta(days=2)) == 2
        rounds.update(dev, total_quota=3)
        with pytest.raises(QuotaError, match="used its 3 defense uploads in round 'dev'") as total:
            quotas.check(session, dev, red, SubmissionKind.DEFENSE, now + timedelta(days=2))
        assert total.value.retry_at is None
        assert quotas.left(session, _round(session, "final"), red, SubmissionKind.DEFENSE, now) is None


# --- which entry counts ---------------------------------------------------------------


def test_the_latest_entry_counts_unless_the_team_chose_one(two_rounds):
    with transaction(two_rounds) as session:
        dev = _round(session, "dev")
        old, new = _entered(session, dev, "old"), _entered(session, dev, "new")
        blue = _entered(session, dev, "blue-d", owner="blue")
        assert entries.counting(session, dev.dataset_id) == [new.id, blue.id]
        assert entries.accepted(session, dev.dataset_id) == [old.id, new.id, blue.id]
        entries.choose(session, dev, old, team=old.team)
        assert entries.counting(session, dev.dataset_id) == [old.id, blue.id]
        with pytest.raises(ForbiddenError, match="only among its own"):
            entries.choose(session, dev, blue, team=old.team)
        with pytest.raises(rounds.RoundError, match="not entered in round 'final'"):
            entries.choose(session, _round(session, "final"), old)
        rounds.close(dev)
        with pytest.raises(ForbiddenError, match="closed: the counting submissions are fixed"):
            entries.choose(session, dev, new, team=new.team)
        entries.choose(session, dev, new)  # organizers may still correct it
        assert entries.counting(session, dev.dataset_id) == [new.id, blue.id]


def test_a_carried_entry_counts_over_an_earlier_direct_upload_to_the_round(two_rounds):
    """Issue 30, finding 5: a team uploads straight to the final, then the organizers carry
    its dev counting entry in. The carry is the team's latest entry into the final, so it
    counts (the upload being newer code does not matter), everywhere counting is shown; the
    team can still pick its direct upload."""
    from arena.results import bundle
    from arena.web import queries

    with transaction(two_rounds) as session:
        dev, final = _round(session, "dev"), _round(session, "final")
        from_dev = _entered(session, dev, "D-dev", ago=timedelta(days=2))
        direct = _entered(session, final, "D-final", ago=timedelta(hours=1))
        other = _entered(session, final, "blue-final", owner="blue", ago=timedelta(hours=2))
        assert entries.counting(session, final.dataset_id) == [direct.id, other.id]
        carried = entries.carry_into(session, "final", [], counting_from="dev")
        assert [s.name for s in carried] == ["D-dev"]
        assert entries.counting(session, final.dataset_id) == [from_dev.id, other.id]
        # the team's and submission pages and the bundle ask the same rule
        assert {"round": "final", "dataset": "final-images", "counting": True, "open": True} in queries.entries_of(session, from_dev)
        assert {"round": "final", "dataset": "final-images", "counting": False, "open": True} in queries.entries_of(session, direct)
        flags = {s["name"]: s["counting"] for s in bundle.manifest(session, two_rounds, final)["submissions"]}
        assert flags == {"D-dev": True, "D-final": False, "blue-final": True}
        # the team may still choose its direct upload, and that choice holds
        entries.choose(session, final, direct, team=direct.team)
        assert entries.counting(session, final.dataset_id) == [direct.id, other.id]
        assert entries.counting(session, dev.dataset_id) == [from_dev.id]


def test_baselines_are_shown_but_ranked_only_when_the_round_says_so(two_rounds, monkeypatch):
    """Two defenses and a baseline between them on the score: the teams are ranked 1 and 2."""
    settings = two_rounds
    with transaction(settings) as session:
        dev = _round(session, "dev")
        attack = _entered(session, dev, "A", kind=SubmissionKind.ATTACK, owner="a")
        good, base, bad = (_entered(session, dev, n, owner=n) for n in ("good", "base", "bad"))
        base.baseline = True
        planning.plan(session, dev.dataset, dev.epsilons, dev.eps_schedule)
        ids = {"A": attack.id, "good": good.id, "base": base.id, "bad": bad.id}
    _score(settings, monkeypatch, {ids["good"]: 1.0, ids["base"]: 0.5, ids["bad"]: 0.0})
    with transaction(settings) as session:
        board = Standings.compute(session, _round(session, "dev").dataset, Scope.COUNTING).defense_leaderboard()
        assert list(board["submission"]) == ["good", "base", "bad"]
        assert board["rank"].tolist() == [1, pd.NA, 2] or [r if r is not pd.NA else None for r in board["rank"]] == [1, None, 2]
        rounds.update(_round(session, "dev"), rank_baselines=True)
    with transaction(settings) as session:
        board = Standings.compute(session, _round(session, "dev").dataset, Scope.COUNTING).defense_leaderboard()
        assert list(board["rank"]) == [1, 2, 3] and list(board["baseline"]) == [False, True, False]


def _score(settings, monkeypatch, right_share: dict[int, float]) -> None:
    """Finish every attack job (adversarial image = clean image), then run every defense pack
    through the real storing path, each defense right on its share of the images."""
    with transaction(settings) as session:
        for job in session.scalars(select(AttackJob)):
            job.status = JobStatus.DONE
            for image in job.batch.images:
                session.add(AdversarialImage(attack_job=job, image_id=image.id, sha256=image.sha256, linf=0))
        session.flush()
        for round_ in session.scalars(select(Round)):
            planning.plan(session, round_.dataset, round_.epsilons, round_.eps_schedule)
    for pack in defense_packs(settings):
        with transaction(settings) as session:
            defense = session.get(DefenseJob, pack.job_ids[0]).submission_id
        fake_defenses(monkeypatch, settings, answer=_right_on(right_share[defense]))
        assert pack_run.run_pack(settings, pack).finished == len(pack.job_ids)


def _right_on(share: float):
    def answer(labels, inputs) -> DefenseOutcome:
        ordered = sorted(inputs, key=lambda item: item.key)
        right = round(share * len(ordered))
        return DefenseOutcome(RunResult(0, False, None, 0.1, ""), {
            item.key: Answer(labels[item.sha256][0] if k < right else labels[item.sha256][0] % 1000 + 1)
            for k, item in enumerate(ordered)})
    return answer


# --- planning per round -----------------------------------------------------------------


def _jobs(session, submission_id: int) -> dict[str, set]:
    """The (dataset name, epsilon) pairs of a submission's attack jobs, or dataset names of its defense jobs."""
    attack = session.execute(select(Dataset.name, AttackJob.epsilon).select_from(AttackJob)
                             .join(Batch, AttackJob.batch_id == Batch.id).join(Dataset, Batch.dataset_id == Dataset.id)
                             .where(AttackJob.submission_id == submission_id)).all()
    defense = session.execute(select(Dataset.name).select_from(DefenseJob)
                              .join(Batch, DefenseJob.batch_id == Batch.id).join(Dataset, Batch.dataset_id == Dataset.id)
                              .where(DefenseJob.submission_id == submission_id)).all()
    return {"attack": set(map(tuple, attack)), "defense": {row[0] for row in defense}}


def test_a_round_plans_its_entries_at_its_epsilons_and_a_carried_entry_runs_on_the_new_images_only(two_rounds):
    settings = two_rounds
    with transaction(settings) as session:
        dev, final = _round(session, "dev"), _round(session, "final")
        attack = _entered(session, dev, "A", kind=SubmissionKind.ATTACK)
        defense = _entered(session, dev, "D")
        for round_ in (dev, final):
            planning.plan(session, round_.dataset, round_.epsilons, round_.eps_schedule)
        assert _jobs(session, attack.id)["attack"] == {("dev", 2), ("dev", 8)}
        assert _jobs(session, defense.id)["defense"] == {"dev"}
        dev_jobs = session.scalars(select(AttackJob.id)).all()

        assert [s.name for s in rounds.carry(session, final, [attack, defense])] == ["A", "D"]
        assert rounds.carry(session, final, [attack]) == []  # already there
        with pytest.raises(rounds.RoundError, match="name submissions to carry"):
            entries.carry_into(session, "final", [])
        with pytest.raises(NotFoundError, match="no submission named 'ghost'"):
            entries.carry_into(session, "final", ["ghost"])
        planning.plan(session, final.dataset, final.epsilons, final.eps_schedule)
        assert _jobs(session, attack.id)["attack"] == {("dev", 2), ("dev", 8), ("final-images", 16)}
        assert set(dev_jobs) <= set(session.scalars(select(AttackJob.id)))  # nothing of dev was planned again
        assert entries.accepted(session, final.dataset_id) == [attack.id, defense.id]


def test_carrying_the_counting_entries_and_publishing_only_when_done(two_rounds, monkeypatch):
    settings = two_rounds
    with transaction(settings) as session:
        dev, final = _round(session, "dev"), _round(session, "final")
        _entered(session, dev, "A", kind=SubmissionKind.ATTACK)
        _entered(session, dev, "D-old")
        latest = _entered(session, dev, "D-new")
        counting = session.scalars(select(Submission).where(
            Submission.id.in_(entries.counting(session, dev.dataset_id)))).all()
        rounds.carry(session, final, counting)
        assert latest.id in entries.accepted(session, final.dataset_id)
        assert len(entries.accepted(session, final.dataset_id)) == 2
        with pytest.raises(ConflictError, match="jobs not done: run them first"):
            rounds.publish(final, planning.unfinished_jobs(session, final))
        assert final.visibility is Visibility.LIVE
    _score(settings, monkeypatch, {sid: 1.0 for sid in _defense_ids(settings)})
    with transaction(settings) as session:
        final = _round(session, "final")
        final = rounds.publish(final, planning.unfinished_jobs(session, final))
        assert final.visibility is Visibility.PUBLISHED and rounds.window(final).state(utcnow()) == "closed"
        with pytest.raises(ConflictError, match="published and frozen"):
            rounds.carry(session, final, [latest])
        with pytest.raises(ForbiddenError, match="is published"):
            rounds.for_uploads(session, "final")


def _defense_ids(settings) -> list[int]:
    with transaction(settings) as session:
        return list(session.scalars(select(Submission.id).where(Submission.kind == SubmissionKind.DEFENSE)))


# --- a round's run parameters ------------------------------------------------------


def test_a_round_robin_round_is_planned_and_published_on_its_own_schedule(tmp_path):
    """The installation's default is every epsilon on every batch; the round says round robin.
    Publishing used to plan with every epsilon (not the round's schedule, which packing used)
    and then refused to publish over the off-schedule jobs it had just planned."""
    settings = make_settings(tmp_path / "arena")
    dataset = synth_dataset(settings, 4, batch_size=1, name="final-2017")
    with transaction(settings) as session:
        session.delete(rounds.of_dataset(session, dataset.id))
        session.flush()
        final = rounds.create(session, settings, "final", session.get(Dataset, dataset.id), epsilons=[4, 8, 12, 16],
                              eps_schedule=EpsilonSchedule.ROUND_ROBIN)
        _entered(session, final, "fgsm", SubmissionKind.ATTACK)
        packing.next_packs(session, settings, session.get(Dataset, dataset.id))  # plans as the runners do
        assert {(job.batch.index, job.epsilon) for job in session.scalars(select(AttackJob))} == {
            (0, 4), (1, 8), (2, 12), (3, 16)}
        for job in session.scalars(select(AttackJob)):
            job.status = JobStatus.DONE
        packing.next_packs(session, settings, session.get(Dataset, dataset.id))
        for job in session.scalars(select(DefenseJob)):
            job.status = JobStatus.DONE
        assert rounds.publish(final, planning.unfinished_jobs(session, final)).visibility is Visibility.PUBLISHED
        assert session.scalar(select(func.count(AttackJob.id))) == 4


def test_the_round_s_parameters_are_the_ones_shown_and_run(two_rounds, monkeypatch):
    """The tournament's epsilons and time limit shown were the installation's defaults, and a
    re-pin's dry run ran under them, whatever the round said."""
    from fastapi.testclient import TestClient

    from arena.execution import repin
    from arena.web.app import create_app

    with transaction(two_rounds) as session:
        final = _round(session, "final")
        submission = _entered(session, final, "noop", SubmissionKind.ATTACK)
        submission.meta = {"type": "attack", "container": "arena/python:bookworm", "entry_point": "run_attack.sh"}
        submission_id = submission.id
    seen = {}

    def dry_run(settings, code, images, naming_key, refuse_stateful):
        seen.update(epsilons=settings.epsilons, seconds_per_image=settings.seconds_per_image,
                    refuse_stateful=refuse_stateful)
        raise ConflictError("stop here")

    monkeypatch.setattr(repin.pinning, "pin", lambda meta, registry=None: {"container": "sha256:" + "1" * 64})
    monkeypatch.setattr(repin, "validate", dry_run)
    with pytest.raises(ConflictError, match="stop here"):
        repin.prepare(two_rounds, submission_id)
    assert seen == {"epsilons": [16], "seconds_per_image": 2.0, "refuse_stateful": False}

    shown = TestClient(create_app(two_rounds)).get("/api/tournament").json()
    assert (shown["epsilons"], shown["eps_schedule"], shown["seconds_per_image"]) == ([16], "all", 2.0)
    listed = {r["name"]: r for r in TestClient(create_app(two_rounds)).get("/api/rounds").json()}
    assert listed["dev"]["epsilons"] == [2, 8] and listed["final"]["eps_schedule"] == "all"
