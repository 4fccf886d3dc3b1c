"""The JSON REST API under /api; its OpenAPI description is served at /docs. One router per
resource (tournament, submissions, rounds, jobs, results, images, teams, workers), joined here.

Reading leaderboards, matrices and submissions is public (unless organizers hide the
leaderboards until the end); uploading needs a team token or the organizer credential;
per-image results, images and organizer actions need the organizer credential.

Every JSON answer has its model (``web.schemas``), so /openapi.json describes each field;
actions go through ``arena.actions``, the same functions as the pages' forms and the CLI;
errors are answered by ``web.app`` (any 4xx is a ``Problem``).
"""

from fastapi import APIRouter

from arena.web.api import images, jobs, results, rounds, submissions, teams, tournament, workers
from arena.web.schemas import Problem

#: Every error answer has the same shape, whoever raised it (``web.app``); "4XX" also stands
#: for FastAPI's own 422, whose ``detail`` is the list of bad parameters.
router = APIRouter(prefix="/api", responses={"4XX": {"model": Problem, "description": "What was wrong"},
                                              503: {"model": Problem, "description": "The platform could not do its part"}})
for resource in (tournament, submissions, rounds, jobs, results, images, teams, workers):
    router.include_router(resource.router)
