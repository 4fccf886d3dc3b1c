"""/api/submissions: uploads, a submission's page and logs, and organizers' actions on it."""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from arena import actions
from arena.callers import Caller
from arena.intake.submit import MAX_DESCRIPTION
from arena.web import permissions, queries, uploads
from arena.web.api.parameters import DatasetName, Id, Limit, SettingsDep
from arena.web.auth import caller, organizer, team_or_organizer
from arena.web.deps import SessionDep
from arena.web.schemas import (
    Baseline,
    Disqualification,
    Logs,
    RunStarted,
    SubmissionDetail,
    SubmissionSummary,
    UploadedSubmission,
)

router = APIRouter(tags=["submissions"])


@router.get("/submissions", response_model=list[SubmissionSummary], summary="Every submission with its status")
def list_submissions(session: SessionDep) -> list[dict]:
    return queries.submissions(session)


@router.post("/submissions", status_code=202, response_model=UploadedSubmission,
             summary="Upload a submission archive (team token or organizers)")
def upload_submission(
    request: Request,
    settings: SettingsDep,
    archive: Annotated[UploadFile, File(description="A .zip, .tar or .tar.gz with metadata.json and the code.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    team: Annotated[str | None, Form(max_length=200, description="Organizers only: the owning team.")] = None,
    round_name: Annotated[str | None, Form(alias="round", max_length=200,
                                           description="The round to enter (default: the one open now).")] = None,
    description: Annotated[str | None, Form(max_length=MAX_DESCRIPTION,
                                            description="What the submission is, shown on its page.")] = None,
    who: Caller = Depends(team_or_organizer),
) -> dict:
    """Stored and queued for its dry run (202): follow it at ``page``, or poll
    ``/api/submissions/{id}`` until ``status`` is accepted or rejected. Refused with 403 when
    no round takes uploads (closed, not open yet) and with 429, and a Retry-After header where
    waiting helps, past the team's quota for the track."""
    submission = actions.upload(settings, who, uploads.saved(settings, archive), name, team, round_name,
                                description=description)
    request.app.state.checker.wake()
    return {**queries.submission_summary(submission), "page": f"/submissions/{submission.id}"}


@router.post("/submissions/{submission_id}/baseline", response_model=SubmissionSummary,
             summary="Mark or unmark a submission as an organizers' baseline (organizers)")
def mark_baseline(submission_id: Id, body: Baseline, settings: SettingsDep, session: SessionDep,
                  _: Caller = Depends(organizer)) -> dict:
    actions.mark_baseline(settings, submission_id, body.baseline)
    return queries.submission_summary(actions.submission(session, submission_id))


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail, response_model_exclude_unset=True,
            summary="A submission: status, progress, runs, dry-run report")
def get_submission(submission_id: Id, session: SessionDep, settings: SettingsDep, dataset: DatasetName = None,
                   who: Caller = Depends(caller)) -> dict:
    submission = actions.submission(session, submission_id)
    chosen = queries.submission_dataset(session, submission, dataset)
    return queries.submission_detail(session, settings, chosen, submission, who)


@router.get("/submissions/{submission_id}/logs", response_model=Logs,
            summary="A submission's dry-run log tail and its runs' logs (its team and organizers)")
def get_logs(submission_id: Id, session: SessionDep, limit: Limit = 50,
             who: Caller = Depends(team_or_organizer)) -> dict:
    submission = actions.submission(session, submission_id)
    permissions.check_logs(who, submission)
    report = submission.validation_report or {}
    return {"dry_run_log_tail": report.get("log_tail"), "runs": queries.attempts(session, submission, who, limit=limit)}


@router.post("/submissions/{submission_id}/rerun", status_code=202, response_model=RunStarted,
             summary="Forget a submission's results and run them again (organizers; 409 while a run is under way)")
def rerun_submission(request: Request, submission_id: Id, settings: SettingsDep, dataset: DatasetName = None,
                     _: Caller = Depends(organizer)) -> dict:
    return {"started": True, "dataset": actions.rerun(settings, request.app.state.runner, submission_id, dataset)}


@router.post("/submissions/{submission_id}/repin", status_code=202, response_model=RunStarted,
             summary="Pin a submission to the images its tags name now (a dry run with them first), forget its "
             "results and run them again (organizers; 409 while a run is under way or when nothing changed, "
             "422 when the dry run fails: nothing is changed then)")
def repin_submission(request: Request, submission_id: Id, settings: SettingsDep, dataset: DatasetName = None,
                     _: Caller = Depends(organizer)) -> dict:
    return {"started": True, "dataset": actions.repin(settings, request.app.state.runner, submission_id, dataset)}


@router.post("/submissions/{submission_id}/disqualify", response_model=SubmissionSummary,
             summary="Take a submission out of every table (organizers)")
def disqualify_submission(submission_id: Id, body: Disqualification, settings: SettingsDep, session: SessionDep,
                          _: Caller = Depends(organizer)) -> dict:
    actions.disqualify(settings, submission_id, body.reason)
    return queries.submission_summary(actions.submission(session, submission_id))
