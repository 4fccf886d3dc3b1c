"""Who may see what: every route that shows results, runs, jobs or logs asks here.

The rule, in one place:

- Organizers see everything.
- A round's results are public when the round is published, or live while the tournament's
  switch (``leaderboards_public``) is on; a hidden round's, and every round's while the
  switch is off, are organizers' only until publication. Its results are its standings and
  matrix, the jobs planned on its dataset, and the container runs on it with their timings.
- A submission's own team always sees its runs, their timings and their logs; nobody else
  sees logs. A query job's two logs are each its own side's: the attack's is the query
  attack's team's, the served defense's the defense's team's (``query_side``). A team's own page of submissions (``/my``) is its own and organizers'.
- Every entry (``scope=all``) is organizers' only; everyone else reads one entry per team
  and track, the ones that count.
- The engine's own words about a platform failure (its API version, host paths) are for
  organizers; a team reads that its job failed on the platform and runs again.

Authentication (who is calling, the organizer-only routes) is ``web/auth.py``'s.
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from arena.admin import tournament
from arena.callers import Caller
from arena.competition import rounds
from arena.competition.entries import Scope
from arena.data.dataset import pick_dataset
from arena.errors import ForbiddenError
from arena.models import Batch, Dataset, JobAttempt, JobKind, QueryJob, Round, Submission, Team, Visibility

#: What a team reads in place of the engine's words about a platform failure.
PLATFORM_FAILURE = "a failure of the platform, not of the submission: the job runs again"


def results_public(session: Session, dataset: Dataset) -> bool:
    """Whether everyone may see the results on ``dataset`` (its round's, see above)."""
    round_ = rounds.of_dataset(session, dataset.id)
    visibility = round_.visibility if round_ is not None else Visibility.LIVE
    if visibility is Visibility.PUBLISHED:
        return True
    return tournament.current(session).leaderboards_public and visibility is Visibility.LIVE


def dataset_in_view(session: Session) -> Dataset:
    """The dataset the pages show when the visitor names no round: the newest round whose
    results everyone may see (dev, while a hidden final is under way), else the newest dataset.
    The same for every reader, so that a page is cached once per view; organizers, and anyone,
    switch to another round with the pages' round switcher (``?dataset=``)."""
    for round_ in session.scalars(select(Round).order_by(Round.id.desc())):
        if results_public(session, round_.dataset):
            return round_.dataset
    return pick_dataset(session, None)


def may_see_results(who: Caller, public: bool) -> bool:
    return who.organizer or public


def check_results(who: Caller, public: bool, what: str = "the leaderboards") -> None:
    if not may_see_results(who, public):
        raise ForbiddenError(f"{what} of this round are hidden until organizers publish it")


def check_scope(who: Caller, scope: Scope) -> None:
    if scope is Scope.ALL and not who.organizer:
        raise ForbiddenError("every entry (scope=all) is for organizers; teams see one per team and track")


def may_see_logs(who: Caller, submission: Submission) -> bool:
    return who.owns(submission)


@dataclass(frozen=True)
class QuerySide:
    """The submission's side of its query jobs: the job's column that names it (and the one
    that names the other side), and the logs that are its own (the tail on the job row, the
    full log on each attempt)."""

    job_column: InstrumentedAttribute
    other_column: InstrumentedAttribute
    tail: InstrumentedAttribute
    log_sha256: InstrumentedAttribute
    log_size: InstrumentedAttribute


def query_side(submission: Submission) -> QuerySide:
    """A query attack's side is the attack's container, a defense's its served container: with
    ``may_see_logs``, a team reads its own container's log of a query job, never the other
    team's, whose code and prints are its own."""
    if submission.kind.is_query_attack:
        return QuerySide(QueryJob.attack_id, QueryJob.defense_id, QueryJob.attack_log, JobAttempt.log_sha256,
                         JobAttempt.log_size)
    return QuerySide(QueryJob.defense_id, QueryJob.attack_id, QueryJob.defense_log, JobAttempt.served_log_sha256,
                     JobAttempt.served_log_size)


def check_logs(who: Caller, submission: Submission) -> None:
    if not may_see_logs(who, submission):
        raise ForbiddenError("logs are shown only to the submission's team and to organizers")


def check_own_team(who: Caller, team: Team) -> None:
    """A team's own page of submissions links its logs and offers its choices: it is for that
    team and organizers; another team reads the public page, ``/teams/NAME``."""
    if not (who.organizer or who.team_id == team.id):
        raise ForbiddenError(f"a team sees only its own submissions here; team {team.name}'s are on /teams/{team.name}")


@dataclass(frozen=True)
class VisibleRuns:
    """Which of a submission's container runs (and their timings) a caller may not see: those
    on the ``hidden`` datasets (rounds whose results are not public to it)."""

    hidden: frozenset[int]

    def shows(self, dataset_id: int) -> bool:
        return dataset_id not in self.hidden


def visible_runs(session: Session, who: Caller, submission: Submission) -> VisibleRuns:
    """Its team and organizers see every run; others those on datasets whose results are public."""
    if who.owns(submission):
        return VisibleRuns(frozenset())
    job_class = JobKind.of(submission.kind).job_class
    played = session.scalars(select(Dataset).where(Dataset.id.in_(
        select(Batch.dataset_id).join(job_class, job_class.batch_id == Batch.id)
        .where(job_class.submission_id == submission.id))))
    return VisibleRuns(frozenset(dataset.id for dataset in played if not results_public(session, dataset)))


def platform_error(who: Caller, error: str | None) -> str | None:
    """A run's platform error as ``who`` may read it."""
    if error is None or who.organizer:
        return error
    return PLATFORM_FAILURE
