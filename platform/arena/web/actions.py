"""What organizers and teams do through the web, written once for the API and the pages.

A route checks who is calling (``web.auth``), calls one function here and shapes the answer
(JSON, or a redirect and a page), so the API and a form cannot drift apart. An action is
thin: its checks, the domain calls, its own transaction where it writes. It says what went
wrong by raising an ``ArenaError`` (bad input, unknown id, a run already under way) that
``web.app`` answers once for both; it never reports a run that did not start.
"""

from fastapi import UploadFile

from arena.admin import teams, tournament
from arena.competition import entries, rounds
from arena.config import Settings
from arena.db import transaction
from arena.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from arena.execution import planning
from arena.intake.repin import apply as apply_repin
from arena.intake.repin import prepare as prepare_repin
from arena.models import Submission
from arena.web import queries
from arena.web.auth import Caller
from arena.web.datasets import pick_dataset
from arena.web.runner import TournamentRunner
from arena.web.uploads import take_upload


def upload(settings: Settings, who: Caller, archive: UploadFile, name: str | None, team: str | None,
           round_name: str | None = None) -> Submission:
    """Take an archive into a round (default: the one open now) for the caller's team;
    organizers name the team (any team). A closed round refuses it before it is unpacked;
    the team's quota, kept per track, once its metadata says the track (``intake.submit``)."""
    owner = who.team_name if not who.organizer else (team or "").strip()
    if not owner:
        raise InputError("organizers must say which team the submission belongs to")
    with transaction(settings) as session:
        if not tournament.current(session).uploads_open:
            raise ForbiddenError("uploads are closed for this tournament")
        round_name = rounds.for_uploads(session, round_name).name
    return take_upload(settings, archive, owner, name, round_name)


def carry(settings: Settings, round_name: str, names: list[str], counting_from: str | None) -> list[str]:
    """Enter stored submissions (by name, or every team's counting ones of another round) into a round."""
    with transaction(settings) as session:
        return [s.name for s in entries.carry_into(session, round_name, names, counting_from)]


def close_round(settings: Settings, round_name: str) -> dict:
    """Stop a round's uploads now; its results keep being computed."""
    with transaction(settings) as session:
        round_ = rounds.close(rounds.find(session, round_name))
        return queries.round_summary(session, round_)


def publish_round(settings: Settings, round_name: str) -> dict:
    """Freeze a round and make its leaderboards public, only once every job is done."""
    with transaction(settings) as session:
        round_ = rounds.find(session, round_name)
        rounds.publish(session, round_)
        return queries.round_summary(session, round_)


def choose(settings: Settings, who: Caller, round_name: str, submission_id: int) -> dict:
    """Make a submission count for its team and track: a team for its own before the deadline,
    organizers for anyone."""
    with transaction(settings) as session:
        submission = queries.submission_or_404(session, submission_id)
        team = None if who.organizer else teams.find(session, who.team_name)
        entries.choose(session, rounds.find(session, round_name), submission, team)
        return queries.submission_summary(submission)


def mark_baseline(settings: Settings, submission_id: int, baseline: bool) -> dict:
    with transaction(settings) as session:
        submission = queries.submission_or_404(session, submission_id)
        submission.baseline = baseline
        return queries.submission_summary(submission)


def start_run(settings: Settings, runner: TournamentRunner, dataset: str | None) -> str:
    """Start running the missing jobs of the dataset (default: the newest); its name."""
    with transaction(settings) as session:
        chosen = pick_dataset(session, dataset).name
    if not runner.start(chosen):
        raise ConflictError("a run is already under way; wait for it to finish")
    return chosen


def rerun(settings: Settings, runner: TournamentRunner, submission_id: int, dataset: str | None) -> str:
    """Forget a submission's results and start a run on the dataset (default: the newest); its name.

    Refused while a run is under way, since that run may be storing the very results to
    forget: the results are forgotten by the runner itself, under the lock that lets one
    run start, so no run can start between the check and the forgetting."""
    with transaction(settings) as session:
        chosen = pick_dataset(session, dataset).name
        submission = queries.submission_or_404(session, submission_id)

    def forget() -> None:
        with transaction(settings) as session:
            planning.forget(session, session.get(Submission, submission.id))

    if not runner.start(chosen, first=forget):
        raise ConflictError("a run is under way; rerun when it has finished")
    return chosen


def repin(settings: Settings, runner: TournamentRunner, submission_id: int, dataset: str | None) -> str:
    """Pin a submission to the images its tags name now and re-run it on the dataset (default:
    the newest); its name. The dry run with the new image comes first (it may take a while);
    the new pins and the forgetting of its results are stored by the runner itself, as for a
    re-run, so a refused start (a run under way) changes nothing."""
    with transaction(settings) as session:
        chosen = pick_dataset(session, dataset).name
        queries.submission_or_404(session, submission_id)
    if runner.state.running:
        raise ConflictError("a run is under way; re-pin when it has finished")
    prepared = prepare_repin(settings, submission_id)
    if not runner.start(chosen, first=lambda: apply_repin(settings, prepared)):
        raise ConflictError("a run started meanwhile; re-pin when it has finished")
    return chosen


def disqualify(settings: Settings, submission_id: int, reason: str) -> dict:
    """Take a submission out of every table; its summary as it is now."""
    with transaction(settings) as session:
        submission = queries.submission_or_404(session, submission_id)
        tournament.disqualify(submission, reason)
        return queries.submission_summary(submission)


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
