"""/api/teams: issuing a team's token (organizers)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from arena import actions
from arena.callers import Caller
from arena.web.api.parameters import SettingsDep
from arena.web.auth import organizer
from arena.web.schemas import TeamToken

router = APIRouter(tags=["teams"])


@router.post("/teams/{team}/token", status_code=201, response_model=TeamToken,
             summary="Issue a team's token, creating the team if new; the old token stops working (organizers)")
def issue_team_token(team: Annotated[str, Path(min_length=1, max_length=200)], settings: SettingsDep,
                     create: Annotated[bool, Query(description="false: an unknown team is a 404, not created")] = True,
                     _: Caller = Depends(organizer)) -> dict:
    return actions.issue_team_token(settings, team, create=create)
