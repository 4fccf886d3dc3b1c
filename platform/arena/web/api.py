"""The JSON REST API under /api; its OpenAPI description is served at /docs.

Reading leaderboards, matrices and submissions is public (unless organizers hide the
leaderboards until the end); uploading needs a team token or the organizer credential;
per-image results, images and organizer actions need the organizer credential.

Every JSON answer has its model (``web.schemas``), so /openapi.json describes each field;
actions go through ``arena.actions``, the same functions as the pages' forms; errors are
answered by ``web.app`` (any 4xx is a ``Problem``).
"""

from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import actions
from arena.admin import tournament
from arena.callers import Caller
from arena.competition import rounds
from arena.competition.entries import Scope
from arena.config import Settings
from arena.data.dataset import pick_dataset
from arena.data.images import ImageStore, amplified_perturbation, encode_png
from arena.db import transaction
from arena.errors import NotFoundError
from arena.models import AdversarialImage, Image, JobKind, JobStatus, Round
from arena.results import csv_files
from arena.results.export import LEADERBOARDS, MATRICES, ROBUSTNESS, leaderboard_file, robustness_export
from arena.results.judging import MatrixValue
from arena.results.progress import tournament_progress
from arena.web import compression, permissions, queries, uploads
from arena.web.auth import (
    caller,
    caller_in_own_session,
    organizer,
    presents_credential,
    team_or_organizer,
)
from arena.web.cache import Snapshot
from arena.web.deps import get_session, get_settings
from arena.web.schemas import (
    Baseline,
    Carried,
    Carry,
    CurveBands,
    Curves,
    Disqualification,
    Drilldown,
    Health,
    Job,
    LeaderboardRow,
    Logs,
    Matrix,
    Problem,
    Progress,
    ResultRow,
    RoundSummary,
    RunStarted,
    SubmissionDetail,
    SubmissionSummary,
    TeamToken,
    TournamentProgress,
    TournamentState,
    TournamentUpdate,
    Track,
    UploadedSubmission,
)

#: Every error answer has the same shape, whoever raised it (``web.app``); "4XX" also stands
#: for FastAPI's own 422, whose ``detail`` is the list of bad parameters.
router = APIRouter(prefix="/api", responses={"4XX": {"model": Problem, "description": "What was wrong"},
                                              503: {"model": Problem, "description": "The platform could not do its part"}})

Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="A database id.")]
RoundPath = Annotated[str, Path(min_length=1, max_length=200, description="A round's name.")]
DatasetName = Annotated[str | None, Query(max_length=200, description="Dataset (default: the newest).")]
Epsilon = Annotated[int | None, Query(alias="eps", ge=0, le=255, description="One epsilon (default: all).")]
Limit = Annotated[int, Query(ge=1, le=10_000)]
ScopeParameter = Annotated[Scope, Query(description="counting: one entry per team and track (everyone); "
                                                    "all: every accepted entry (organizers).")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
LEADERBOARD_CSVS = {stem: track for track, stem in LEADERBOARDS.items()}


async def snapshot(request: Request, dataset: DatasetName = None, scope: ScopeParameter = Scope.COUNTING) -> Snapshot:
    """The dataset's current standings, when the caller may see them. Served from the cache
    with no query for anonymous readers while the leaderboards are public: the common case
    under load. A credential, when one is sent, is checked all the same (401 if wrong).
    Every entry (``scope=all``) is for organizers; everyone else sees one per team and track."""
    cache = request.app.state.standings
    current = cache.peek(dataset, scope) or await run_in_threadpool(cache.get, dataset, scope)
    if presents_credential(request) or not current.public or scope is Scope.ALL:
        who = await run_in_threadpool(caller_in_own_session, request)
        permissions.check_results(who, current.public)
        permissions.check_scope(who, scope)
    return current.snapshot


Visible = Annotated[Snapshot, Depends(snapshot)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@router.get("/health", response_model=Health,
            summary="Whether the web app answers (no database access): for health checks")
async def health() -> dict:
    return {"ok": True}


def _run_state(request: Request) -> dict:
    state = request.app.state.runner.state
    return {"running": state.running, "message": state.message, "outcome": state.outcome, "errors": state.errors}


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


@router.get("/submissions", response_model=list[SubmissionSummary], summary="Every submission with its status")
def list_submissions(session: SessionDep) -> list[dict]:
    return queries.submissions(session)


@router.post("/submissions", status_code=201, response_model=UploadedSubmission,
             summary="Upload a submission archive (team token or organizers)")
def upload_submission(
    settings: SettingsDep,
    archive: Annotated[UploadFile, File(description="A .zip, .tar or .tar.gz with metadata.json and the code.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    team: Annotated[str | None, Form(max_length=200, description="Organizers only: the owning team.")] = None,
    round_name: Annotated[str | None, Form(alias="round", max_length=200,
                                           description="The round to enter (default: the one open now).")] = None,
    who: Caller = Depends(team_or_organizer),
) -> dict:
    """Refused with 403 when no round takes uploads (closed, not open yet) and with 429, and a
    Retry-After header where waiting helps, past the team's quota for the track."""
    submission = actions.upload(settings, who, uploads.saved(settings, archive), name, team, round_name)
    return {**queries.submission_summary(submission), "validation_report": submission.validation_report}


@router.post("/submissions/{submission_id}/baseline", response_model=SubmissionSummary,
             summary="Mark or unmark a submission as an organizers' baseline (organizers)")
def mark_baseline(submission_id: Id, body: Baseline, settings: SettingsDep, session: SessionDep,
                  _: Caller = Depends(organizer)) -> dict:
    actions.mark_baseline(settings, submission_id, body.baseline)
    return queries.submission_summary(queries.submission_or_404(session, submission_id))


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
    return queries.submission_summary(queries.submission_or_404(session, submission_id))


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail, response_model_exclude_unset=True,
            summary="A submission: status, progress, runs, dry-run report")
def get_submission(submission_id: Id, session: SessionDep, settings: SettingsDep, dataset: DatasetName = None,
                   who: Caller = Depends(caller)) -> dict:
    submission = queries.submission_or_404(session, submission_id)
    chosen = pick_dataset(session, dataset)
    return queries.submission_detail(session, settings, chosen, submission, who)


@router.get("/submissions/{submission_id}/logs", response_model=Logs,
            summary="A submission's dry-run log tail and its runs' logs (its team and organizers)")
def get_logs(submission_id: Id, session: SessionDep, limit: Limit = 50,
             who: Caller = Depends(team_or_organizer)) -> dict:
    submission = queries.submission_or_404(session, submission_id)
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
    return queries.submission_summary(queries.submission_or_404(session, submission_id))


@router.get("/jobs", response_model=list[Job],
            summary="Jobs of a dataset, filtered by kind, submission and status (organizers only while the "
            "leaderboards are hidden)")
def list_jobs(
    session: SessionDep,
    who: Caller = Depends(caller),
    kind: JobKind = JobKind.ATTACK,
    submission_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: JobStatus | None = None,
    dataset: DatasetName = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict]:
    chosen = pick_dataset(session, dataset)
    permissions.check_results(who, permissions.results_public(session, chosen), "the jobs")
    submission = queries.submission_or_404(session, submission_id) if submission_id else None
    return queries.jobs(session, chosen, kind, submission, status, limit, offset)


@router.get("/leaderboards/{track}", response_model=list[LeaderboardRow],
            summary="A track's leaderboard: defense, attack or targeted_attack")
async def get_leaderboard(request: Request, track: Track, visible: Visible) -> Response:
    """Bytes serialised and compressed once per snapshot: FastAPI passes a Response through
    unvalidated, so the route's ``response_model`` only describes it (as for the matrix)."""
    key = ("leaderboard", track)
    body = visible.cached_json(key) or await run_in_threadpool(
        visible.json, key, lambda: queries.leaderboard(visible, track))
    return compression.respond(request, body)


@router.get("/matrix", response_model=Matrix,
            summary="The attack x defense matrix, overall or at one epsilon, optionally top-K")
async def get_matrix(
    request: Request,
    visible: Visible,
    value: MatrixValue = MatrixValue.ERROR,
    epsilon: Epsilon = None,
    top_attacks: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    top_defenses: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> Response:
    body = visible.cached_json(queries.matrix_key(value, epsilon, top_attacks, top_defenses)) or await run_in_threadpool(
        queries.matrix_json, visible, value, epsilon, top_attacks, top_defenses)
    return compression.respond(request, body)


@router.get("/curves", response_model=Curves, summary="Each defense's misclassification rate (%) by epsilon")
def get_curves(visible: Visible, defense: Annotated[list[str] | None, Query(max_length=100)] = None) -> dict:
    return queries.curves(visible, defense)


@router.get("/curves/bands", response_model=CurveBands,
            summary="Each defense's misclassification rate (%) by epsilon with its 95% bootstrap interval")
def get_curve_bands(visible: Visible, defense: Annotated[list[str] | None, Query(max_length=100)] = None) -> dict:
    return queries.curve_bands(visible, defense)


@router.get("/export/{name}.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="The 2017 result files: matrices (optionally at one eps) and leaderboards; and the worst "
            "case per defense (robust_accuracy) and the unique contribution per attack (unique_contributions)")
def export_csv(name: str, visible: Visible, epsilon: Epsilon = None) -> Response:
    standings = visible.standings
    if name in MATRICES:
        queries.check_epsilon(standings, epsilon)
        frame, index = standings.matrix(MATRICES[name], epsilon), True
    elif name in LEADERBOARD_CSVS:
        frame, index = leaderboard_file(visible.boards.track(LEADERBOARD_CSVS[name])), False
    elif name in ROBUSTNESS:
        frame, index = robustness_export(visible.boards, name), False
    else:
        raise NotFoundError(f"no export {name!r}; exports: {', '.join([*MATRICES, *LEADERBOARD_CSVS, *ROBUSTNESS])}")
    return Response(csv_files.write(frame, index=index), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


@router.get("/results", response_model=list[ResultRow],
            summary="Per-image answers on adversarial images (organizers: they reveal labels)")
def get_results(
    session: SessionDep,
    attack_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    defense_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    epsilon: Epsilon = None,
    dataset: DatasetName = None,
    limit: Limit = 100,
    offset: Offset = 0,
    _: Caller = Depends(organizer),
) -> list[dict]:
    chosen = pick_dataset(session, dataset)
    return queries.results(session, chosen, attack_id, defense_id, epsilon, limit, offset)


@router.get("/adversarial/{adversarial_id}", response_model=Drilldown,
            summary="One adversarial image and every defense's answer on it")
def get_adversarial(adversarial_id: Id, session: SessionDep, _: Caller = Depends(organizer)) -> dict:
    return queries.drilldown(session, adversarial_id)


PNG = {"response_class": Response, "responses": {200: {"content": {"image/png": {}}}}}


def _png(store: ImageStore, sha256: str) -> Response:
    path = store.path(sha256)
    if not path.is_file():
        raise NotFoundError("the image file is not in the store (was the data directory moved?)")
    return Response(path.read_bytes(), media_type="image/png")


@router.get("/images/{image_id}/image.png", summary="A clean dataset image (organizers)", **PNG)
def clean_png(image_id: Id, session: SessionDep, settings: SettingsDep, _: Caller = Depends(organizer)) -> Response:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"no image with id {image_id}")
    return _png(ImageStore(settings.store_dir), image.sha256)


def _adversarial(session: Session, adversarial_id: int) -> AdversarialImage:
    adversarial = session.get(AdversarialImage, adversarial_id)
    if adversarial is None:
        raise NotFoundError(f"no adversarial image with id {adversarial_id}")
    return adversarial


@router.get("/adversarial/{adversarial_id}/image.png", summary="An adversarial image (organizers)", **PNG)
def adversarial_png(adversarial_id: Id, session: SessionDep, settings: SettingsDep,
                    _: Caller = Depends(organizer)) -> Response:
    return _png(ImageStore(settings.store_dir), _adversarial(session, adversarial_id).sha256)


@router.get("/adversarial/{adversarial_id}/perturbation.png",
            summary="The perturbation, amplified so that +-eps spans the grey scale (organizers)", **PNG)
def perturbation_png(adversarial_id: Id, session: SessionDep, settings: SettingsDep,
                     _: Caller = Depends(organizer)) -> Response:
    adversarial = _adversarial(session, adversarial_id)
    store = ImageStore(settings.store_dir)
    for sha256 in (adversarial.sha256, adversarial.image.sha256):
        if not store.path(sha256).is_file():
            raise NotFoundError("the image file is not in the store (was the data directory moved?)")
    amplified = amplified_perturbation(store.read_pixels(adversarial.image.sha256), store.read_pixels(adversarial.sha256),
                                       adversarial.attack_job.epsilon)
    return Response(encode_png(amplified), media_type="image/png")


@router.post("/teams/{team}/token", status_code=201, response_model=TeamToken,
             summary="Issue a team's token, creating the team if new; the old token stops working (organizers)")
def issue_team_token(team: Annotated[str, Path(min_length=1, max_length=200)], settings: SettingsDep,
                     create: Annotated[bool, Query(description="false: an unknown team is a 404, not created")] = True,
                     _: Caller = Depends(organizer)) -> dict:
    return actions.issue_team_token(settings, team, create=create)
