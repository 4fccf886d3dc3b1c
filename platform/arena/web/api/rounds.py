"""/api/rounds: every round, and organizers' close, publish, carry and choose."""

from fastapi import APIRouter, Depends

from arena import actions
from arena.callers import Caller
from arena.competition import rounds
from arena.web import queries
from arena.web.api.parameters import Id, RoundPath, SettingsDep
from arena.web.auth import caller, organizer, team_or_organizer
from arena.web.deps import SessionDep
from arena.web.schemas import Carried, Carry, RoundSummary, SubmissionSummary

router = APIRouter(tags=["rounds"])


@router.get("/rounds", response_model=list[RoundSummary], summary="Every round: window, time left, quotas")
def list_rounds(session: SessionDep, who: Caller = Depends(caller)) -> list[dict]:
    """With a team's credential, each round also says how many uploads the team has left per track."""
    return queries.rounds_list(session, who)


@router.post("/rounds/{round_name}/carry", response_model=Carried,
             summary="Enter stored submissions into a round without a new upload (organizers)")
def carry_into_round(round_name: RoundPath, body: Carry, settings: SettingsDep,
                     _: Caller = Depends(organizer)) -> dict:
    """Their jobs run on the next run, on the round's images only."""
    return {"carried": actions.carry(settings, round_name, body.submissions, body.counting_from)}


@router.post("/rounds/{round_name}/close", response_model=RoundSummary, summary="Close a round to uploads (organizers)")
def close_round(round_name: RoundPath, settings: SettingsDep, session: SessionDep,
                _: Caller = Depends(organizer)) -> dict:
    return queries.round_summary(session, rounds.find(session, actions.close_round(settings, round_name)))


@router.post("/rounds/{round_name}/publish", response_model=RoundSummary,
             summary="Freeze a finished round and make its leaderboards public (organizers)")
def publish_round(round_name: RoundPath, settings: SettingsDep, session: SessionDep,
                  _: Caller = Depends(organizer)) -> dict:
    """409 while any of its jobs is not done."""
    return queries.round_summary(session, rounds.find(session, actions.publish_round(settings, round_name)))


@router.post("/rounds/{round_name}/choose/{submission_id}", response_model=SubmissionSummary,
             summary="Make a submission the one that counts for its team and track (its team, before the deadline)")
def choose_counting(round_name: RoundPath, submission_id: Id, settings: SettingsDep, session: SessionDep,
                    who: Caller = Depends(team_or_organizer)) -> dict:
    actions.choose(settings, who, round_name, submission_id)
    return queries.submission_summary(actions.submission(session, submission_id))
