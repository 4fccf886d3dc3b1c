"""/api/workers: the hosts and workers that take jobs, and draining one (organizers only)."""

from fastapi import APIRouter, Depends

from arena import actions
from arena.callers import Caller
from arena.web import queries
from arena.web.api.parameters import Id, SettingsDep
from arena.web.auth import organizer
from arena.web.deps import SessionDep
from arena.web.schemas import Draining, Workers

router = APIRouter(tags=["workers"])


@router.get("/workers", response_model=Workers,
            summary="Every worker with its state and the jobs it holds, the jobs by kind and status, the broker's "
            "queues, and running jobs whose lease ran out")
def list_workers(session: SessionDep, settings: SettingsDep, _: Caller = Depends(organizer)) -> dict:
    return queries.workers_overview(session, settings)


@router.post("/workers/{worker_id}/draining", response_model=Draining,
             summary="Stop a worker taking new work (it finishes what it runs), or let it take work again")
def set_draining(worker_id: Id, body: Draining, settings: SettingsDep, _: Caller = Depends(organizer)) -> dict:
    actions.drain(settings, worker_id, body.draining)
    return {"draining": body.draining}
