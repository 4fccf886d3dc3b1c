"""/api/jobs: jobs and their attempts, for following a run."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from arena import actions
from arena.callers import Caller
from arena.data.dataset import pick_dataset
from arena.models import JobStatus
from arena.web import permissions, queries
from arena.web.api.parameters import DatasetName, Limit, Offset
from arena.web.auth import caller
from arena.web.deps import SessionDep
from arena.web.schemas import Job

router = APIRouter(tags=["jobs"])


@router.get("/jobs", response_model=list[Job],
            summary="Jobs of a dataset, filtered by kind (attack, defense, or the query track's), submission "
            "(a query job's attack or served defense) and status (organizers only while the leaderboards are hidden)")
def list_jobs(
    session: SessionDep,
    who: Caller = Depends(caller),
    kind: queries.ListedJobs = queries.ListedJobs.ATTACK,
    submission_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: JobStatus | None = None,
    dataset: DatasetName = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    chosen = pick_dataset(session, dataset)
    permissions.check_results(who, permissions.results_public(session, chosen), "the jobs")
    submission = actions.submission(session, submission_id) if submission_id else None
    return queries.jobs(session, chosen, kind, submission, status, limit, offset)
