"""What organizers and teams do, written once for the command line, the API and the pages.

A command or a route says who is calling (``callers``: the web identifies a team or an
organizer, the command line is an organizer), calls one function here and shapes the answer
(a table, JSON, a redirect and a page), so that the three cannot drift apart. An action is
thin: its checks, the domain calls, its own transaction where it writes. It says what went
wrong by raising an ``ArenaError`` (bad input, unknown id, a run already under way); it
never reports a run that did not start.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from arena import job_states, notifications
from arena.admin import teams, tournament
from arena.callers import Caller
from arena.competition import entries, rounds
from arena.config import EpsilonSchedule, Settings
from arena.data.dataset import find_dataset, pick_dataset
from arena.db import transaction
from arena.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from arena.execution import planning, query_jobs, workers
from arena.execution.repin import apply as apply_repin
from arena.execution.repin import prepare as prepare_repin
from arena.intake.submit import take
from arena.models import Round, Submission, Visibility, as_utc

#: What an action says when a run is under way, in this process or any other.
RUN_UNDER_WAY = "a run is under way; {what} when it has finished"
#: Why the web of a deployment with workers cannot re-pin: the new image's dry run runs in
#: the process that asks, and that web process has no container engine.
REPIN_NEEDS_AN_ENGINE = ("re-pinning dry-runs the new image where it is asked, and this web server runs no containers "
                         "(the workers do): run `arena submissions repin NAME` on a worker host")


class Runner(Protocol):
    """What runs the jobs for an action: the web's background runner, or the command line's
    run in the foreground. ``start`` calls ``first`` (the results to forget, the pins to
    store) before it plans anything, and says False when a run of its own is under way.
    ``has_engine`` is False where the jobs run on workers and this process may run no
    container (the web with a broker)."""

    has_engine: bool

    def start(self, dataset_name: str | None, first: Callable[[], None] | None = None) -> bool: ...


def submission(session: Session, submission_id: int) -> Submission:
    found = session.get(Submission, submission_id)
    if found is None:
        raise NotFoundError(f"no submission with id {submission_id}")
    return found


def upload(settings: Settings, who: Caller, archive: AbstractContextManager[Path], name: str | None,
           team: str | None, round_name: str | None = None, create_team: bool = True,
           description: str | None = None) -> Submission:
    """Take an archive into a round (default: the one open now) for the caller's team;
    organizers name the team (any team; an unknown one is created only when ``create_team``
    says so, as for a token): stored, queued for its dry run, which a runner or worker does
    (``execution.checking``). Closed uploads or a closed round refuse it before ``archive``
    is entered (which saves the web's upload to disk); the team's quota, kept per track, once
    its metadata says the track (``intake.submit``)."""
    owner = who.team_name if not who.organizer else (team or "").strip()
    if not owner:
        raise InputError("organizers must say which team the submission belongs to")
    with transaction(settings) as session:
        if not create_team and teams.find(session, owner) is None:
            raise NotFoundError(f"no team named “{owner}”; tick “create the team” to create it")
        if not tournament.current(session).uploads_open:
            raise ForbiddenError("uploads are closed for this tournament")
        round_name = rounds.for_uploads(session, round_name).name
    with archive as path:
        return take(settings, path, team=owner, name=(name or "").strip() or None, round_name=round_name,
                    description=description)


def carry(settings: Settings, round_name: str, names: list[str], counting_from: str | None) -> list[str]:
    """Enter stored submissions (by name, or every team's counting ones of another round) into a round."""
    with transaction(settings) as session:
        return [s.name for s in entries.carry_into(session, round_name, names, counting_from)]


def create_round(settings: Settings, name: str, dataset: str, *, epsilons: list[int] | None = None,
                 eps_schedule: EpsilonSchedule | None = None, seconds_per_image: float | None = None,
                 opens_at: datetime | None = None, closes_at: datetime | None = None, hidden: bool = False,
                 daily_quota: int | None = None, total_quota: int | None = None, data_public: bool = False) -> Round:
    """Open a round on an imported dataset (one of its own); what is not given comes from the
    settings. Moments without a zone are UTC. The round, its columns loaded."""
    with transaction(settings) as session:
        round_ = rounds.create(session, settings, name, find_dataset(session, dataset), epsilons=epsilons,
                               eps_schedule=eps_schedule, seconds_per_image=seconds_per_image,
                               opens_at=as_utc(opens_at), closes_at=as_utc(closes_at),
                               visibility=Visibility.HIDDEN if hidden else Visibility.LIVE,
                               daily_quota=daily_quota, total_quota=total_quota)
        return rounds.update(round_, data_public=True) if data_public else round_


def update_round(settings: Settings, round_name: str, *, opens_at: datetime | None = None,
                 closes_at: datetime | None = None, visibility: Visibility | None = None,
                 daily_quota: rounds.QuotaChange = None, total_quota: rounds.QuotaChange = None,
                 rank_baselines: bool | None = None, data_public: bool | None = None,
                 refuse_stateful_defenses: bool | None = None) -> Round:
    """Change a round's window, quotas, visibility, baselines' ranks, public data or whether
    stateful served defenses are refused; None
    leaves one as it is, ``rounds.NO_LIMIT`` takes a quota away. Moments without a zone are UTC. The round, its columns loaded."""
    with transaction(settings) as session:
        return rounds.update(rounds.find(session, round_name), opens_at=as_utc(opens_at), closes_at=as_utc(closes_at),
                             visibility=visibility, daily_quota=daily_quota, total_quota=total_quota,
                             rank_baselines=rank_baselines, data_public=data_public,
                             refuse_stateful_defenses=refuse_stateful_defenses)


def close_round(settings: Settings, round_name: str) -> str:
    """Stop a round's uploads now; its results keep being computed. Its name."""
    with transaction(settings) as session:
        return rounds.close(rounds.find(session, round_name)).name


def publish_round(settings: Settings, round_name: str) -> str:
    """Freeze a round and make its leaderboards public, only once every job is done; its teams
    are told (``notifications``). Its name."""
    with transaction(settings) as session:
        round_ = rounds.find(session, round_name)
        unfinished = planning.unfinished_jobs(session, round_) + query_jobs.unfinished(session, round_)
        name = rounds.publish(round_, unfinished).name
        notice = notifications.round_published(session, round_)
    notifications.send(settings, notice)
    return name


def choose(settings: Settings, who: Caller, round_name: str, submission_id: int) -> None:
    """Make a submission count for its team and track: a team for its own before the deadline,
    organizers for anyone."""
    with transaction(settings) as session:
        chosen = submission(session, submission_id)
        team = None if who.organizer else teams.find(session, who.team_name)
        entries.choose(session, rounds.find(session, round_name), chosen, team)


def mark_baseline(settings: Settings, submission_id: int, baseline: bool) -> None:
    with transaction(settings) as session:
        submission(session, submission_id).baseline = baseline


def disqualify(settings: Settings, submission_id: int, reason: str) -> None:
    """Take a submission out of every table (its stored results are kept)."""
    with transaction(settings) as session:
        tournament.disqualify(submission(session, submission_id), reason)


def drain(settings: Settings, worker_id: int, draining: bool) -> None:
    """A worker takes no new work and finishes what it runs (``draining``), or takes work again."""
    with transaction(settings) as session:
        workers.set_draining(session, worker_id, draining)


def start_run(settings: Settings, runner: Runner, dataset: str | None) -> str:
    """Start running the missing jobs of the dataset (default: the newest); its name."""
    with transaction(settings) as session:
        chosen = pick_dataset(session, dataset).name
    if not runner.start(chosen):
        raise ConflictError(RUN_UNDER_WAY.format(what="start another"))
    return chosen


def rerun(settings: Settings, runner: Runner, submission_id: int | None, dataset: str | None) -> str:
    """Forget a submission's results (None: everyone's) and run the dataset again (default:
    the newest); its name.

    Refused while any runner, in this process or another (a worker, another `arena run`),
    holds a job of the dataset, since it may be storing the very results to forget; the
    results are forgotten by ``runner`` itself, under the lock that lets one of its runs
    start, so no run of its own can start between the check and the forgetting."""
    with transaction(settings) as session:
        if submission_id is not None:
            submission(session, submission_id)
        chosen = _unless_held(session, dataset, "rerun")

    def forget() -> None:
        with transaction(settings) as session:
            planning.forget(session, None if submission_id is None else session.get(Submission, submission_id))

    if not runner.start(chosen, first=forget):
        raise ConflictError(RUN_UNDER_WAY.format(what="rerun"))
    return chosen


def repin(settings: Settings, runner: Runner, submission_id: int, dataset: str | None) -> str:
    """Pin a submission to the images its tags name now and re-run it on the dataset (default:
    the newest); its name. The dry run with the new image comes first (it may take a while);
    the new pins and the forgetting of its results are stored by the runner itself, as for a
    re-run, so a refused start (a run under way) changes nothing."""
    with transaction(settings) as session:
        submission(session, submission_id)
        chosen = _unless_held(session, dataset, "re-pin")
    if not runner.has_engine:
        raise ConflictError(REPIN_NEEDS_AN_ENGINE)
    prepared = prepare_repin(settings, submission_id)
    if not runner.start(chosen, first=lambda: apply_repin(settings, prepared)):
        raise ConflictError(RUN_UNDER_WAY.format(what="re-pin"))
    return chosen


def update_settings(settings: Settings, title: str | None = None, leaderboards_public: bool | None = None,
                    uploads_open: bool | None = None) -> None:
    """Change the tournament's settings; None leaves one as it is."""
    with transaction(settings) as session:
        tournament.update(session, title, leaderboards_public, uploads_open)


def update_pages(settings: Settings, overview: str, rules: str, self_registration: bool) -> None:
    """The competition's overview and rules (Markdown) and whether teams may sign up themselves."""
    with transaction(settings) as session:
        tournament.update(session, overview=overview, rules=rules, self_registration=self_registration)


def register_team(settings: Settings, team: str, member: str, contact: str | None) -> dict:
    """A team signing itself up, where organizers allow it: its token, to show once."""
    with transaction(settings) as session:
        if not tournament.current(session).self_registration:
            raise ForbiddenError("teams cannot sign up themselves here: ask the organizers for a token")
        token = teams.register(session, team, member, contact)
    return {"team": team.strip(), "token": token}


def issue_team_token(settings: Settings, team: str, create: bool = True) -> dict:
    """A new token for the team, to show once: only its hash is kept. An unknown team is
    created only when ``create`` says so (the page asks; a mistyped name is refused)."""
    with transaction(settings) as session:
        if not create and teams.find(session, team) is None:
            raise NotFoundError(f"no team named “{team.strip()}”; tick “create the team” to create it")
        token = teams.issue_token(session, team)
    return {"team": team.strip(), "token": token}


def _unless_held(session: Session, dataset: str | None, what: str) -> str:
    """The dataset's name (default: the newest), refused while a job of it is held under a
    live lease: a run is storing results now."""
    chosen = pick_dataset(session, dataset)
    job_states.reap(session)
    if planning.held(session, chosen):
        raise ConflictError(RUN_UNDER_WAY.format(what=what))
    return chosen.name

