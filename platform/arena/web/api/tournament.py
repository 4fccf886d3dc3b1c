"""/api/health, /api/tournament(s), /api/progress, /api/runs: the tournament's settings and the
web-started run."""

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import actions
from arena.admin import tournament
from arena.callers import Caller
from arena.competition import rounds
from arena.config import Settings
from arena.data.dataset import pick_dataset
from arena.db import transaction
from arena.models import Round
from arena.results.progress import tournament_progress
from arena.web import queries
from arena.web.api.parameters import DatasetName, SettingsDep
from arena.web.auth import organizer
from arena.web.deps import SessionDep
from arena.web.schemas import Health, Progress, RunStarted, TournamentProgress, TournamentState, TournamentUpdate

router = APIRouter(tags=["tournament"])


@router.get("/health", response_model=Health,
            summary="Whether the web app answers (no database access): for health checks")
async def health() -> dict:
    return {"ok": True}


def _run_state(request: Request) -> dict:
    state = request.app.state.runner.state
    return {"running": state.running, "dataset": state.dataset, "message": state.message, "outcome": state.outcome,
            "errors": state.errors}


@router.get("/tournament", response_model=TournamentState, summary="The tournament's settings and the web-started run")
def get_tournament(request: Request, session: SessionDep, settings: SettingsDep) -> dict:
    row = tournament.current(session)
    return {"title": row.title, "leaderboards_public": row.leaderboards_public, "uploads_open": row.uploads_open,
            **_current_run_parameters(session, settings), "run": _run_state(request)}


def _current_run_parameters(session: Session, settings: Settings) -> dict:
    """The newest round's epsilons, schedule and time limit (each round's are at /api/rounds);
    before any round, what a new one gets."""
    newest = session.scalars(select(Round).order_by(Round.id.desc()).limit(1)).first()
    source = rounds.run_settings(settings, newest) if newest else settings
    return {"epsilons": source.epsilons, "eps_schedule": source.eps_schedule, "seconds_per_image": source.seconds_per_image}


@router.patch("/tournament", response_model=TournamentState, summary="Change the tournament's settings (organizers)")
def patch_tournament(request: Request, change: TournamentUpdate, settings: SettingsDep,
                     _: Caller = Depends(organizer)) -> dict:
    actions.update_settings(settings, **change.model_dump())
    with transaction(settings) as session:
        return get_tournament(request, session, settings)


@router.get("/tournaments", response_model=list[TournamentProgress],
            summary="Datasets with how far the tournament on each has got")
def list_tournaments(session: SessionDep, settings: SettingsDep) -> list[dict]:
    return queries.datasets(session, settings)


@router.get("/progress", response_model=Progress, summary="Jobs done and expected, for live progress")
def get_progress(request: Request, session: SessionDep, settings: SettingsDep, dataset: DatasetName = None) -> dict:
    chosen = pick_dataset(session, dataset)
    counts = tournament_progress(session, chosen, settings)
    return {"dataset": chosen.name, **{kind: c.as_dict() for kind, c in counts.items()}, "run": _run_state(request)}


@router.post("/runs", status_code=202, response_model=RunStarted,
             summary="Run every missing job in the background (organizers; 409 while a run is under way)")
def start_run(request: Request, settings: SettingsDep, dataset: DatasetName = None,
              _: Caller = Depends(organizer)) -> dict:
    return {"started": True, "dataset": actions.start_run(settings, request.app.state.runner, dataset)}
