"""/api/leaderboards (the query track's at /api/leaderboards/query), /api/matrix and
/api/curves (the query track's with ``track=query``), /api/export, /api/results: the
standings, as the caller may see them."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from arena.callers import Caller
from arena.data.dataset import pick_dataset
from arena.errors import NotFoundError
from arena.results import csv_files, query_scoring
from arena.results.export import LEADERBOARDS, MATRICES, ROBUSTNESS, leaderboard_file, robustness_export
from arena.web import compression, queries
from arena.web.api.parameters import DatasetName, Epsilon, Limit, Offset, Visible
from arena.web.auth import organizer
from arena.web.deps import SessionDep
from arena.web.queries import AnyMatrixValue, MatrixTrack
from arena.web.schemas import CurveBands, Curves, LeaderboardRow, Matrix, QueryBoards, QueryMatrix, ResultRow, Track

router = APIRouter(tags=["results"])


LEADERBOARD_CSVS = {stem: track for track, stem in LEADERBOARDS.items()}
QUERY_MATRICES = (query_scoring.SUCCESS_FILE, query_scoring.AVC_FILE, query_scoring.AVC_LOW_FILE,
                  query_scoring.AVC_HIGH_FILE)


@router.get("/leaderboards/query", response_model=QueryBoards,
            summary="The query track's boards: the AVC median L2 with its interval and the 2017 rule at each eps")
def get_query_boards(visible: Visible) -> dict:
    """Declared before ``/leaderboards/{track}``, which would take ``query`` for a track."""
    return visible.query or {}


@router.get("/leaderboards/{track}", response_model=list[LeaderboardRow],
            summary="A track's leaderboard: defense, attack or targeted_attack")
async def get_leaderboard(request: Request, track: Track, visible: Visible) -> Response:
    """Bytes serialised and compressed once per snapshot: FastAPI passes a Response through
    unvalidated, so the route's ``response_model`` only describes it (as for the matrix)."""
    key = ("leaderboard", track)
    body = visible.cached_json(key) or await run_in_threadpool(
        visible.json, key, lambda: queries.leaderboard(visible, track))
    return compression.respond(request, body)


@router.get("/matrix", response_model=Matrix | QueryMatrix,
            summary="The attack x defense matrix, overall or at one epsilon, optionally top-K; or the query track's")
async def get_matrix(
    request: Request,
    visible: Visible,
    track: Annotated[MatrixTrack, Query(description="batch: the 2017 tracks' matrix; query: the query track's "
                                                    "attack x served defense (docs/query-track.md)")] = MatrixTrack.BATCH,
    value: Annotated[AnyMatrixValue | None, Query(description="batch: error (default), correct or hit; query: success "
                                                              "(default: the 2017 rule) or avc (the AVC rule)")] = None,
    epsilon: Epsilon = None,
    top_attacks: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    top_defenses: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> Response:
    value = queries.track_value(track, value)
    body = visible.cached_json(queries.track_matrix_key(track, value, epsilon, top_attacks, top_defenses)) or \
        await run_in_threadpool(queries.track_matrix_json, visible, track, value, epsilon, top_attacks, top_defenses)
    return compression.respond(request, body)


CurveTrack = Annotated[MatrixTrack, Query(description="batch: over the 2017 tracks' attacks; query: each served "
                                                      "defense over the query track's attacks (docs/query-track.md)")]


@router.get("/curves", response_model=Curves, summary="Each defense's misclassification rate (%) by epsilon")
def get_curves(visible: Visible, defense: Annotated[list[str] | None, Query(max_length=100)] = None,
               track: CurveTrack = MatrixTrack.BATCH) -> dict:
    return queries.curves(visible, defense, track)


@router.get("/curves/bands", response_model=CurveBands,
            summary="Each defense's misclassification rate (%) by epsilon with its 95% bootstrap interval")
def get_curve_bands(visible: Visible, defense: Annotated[list[str] | None, Query(max_length=100)] = None,
                    track: CurveTrack = MatrixTrack.BATCH) -> dict:
    return queries.curve_bands(visible, defense, track)


@router.get("/export/{name}.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="The 2017 result files: matrices (optionally at one eps) and leaderboards; and the worst "
            "case per defense (robust_accuracy) and the unique contribution per attack (unique_contributions); the "
            "query track's matrices (query_success_matrix, optionally at one eps, and query_avc_matrix)")
def export_csv(name: str, visible: Visible, epsilon: Epsilon = None) -> Response:
    standings = visible.standings
    if name in MATRICES:
        queries.check_epsilon(standings, epsilon)
        frame, index = standings.matrix(MATRICES[name], epsilon), True
    elif name in LEADERBOARD_CSVS:
        frame, index = leaderboard_file(visible.boards.track(LEADERBOARD_CSVS[name])), False
    elif name in ROBUSTNESS:
        frame, index = robustness_export(visible.boards, name), False
    elif name in QUERY_MATRICES:
        frame, index = queries.query_matrix_file(visible, name, epsilon), True
    else:
        raise NotFoundError(f"no export {name!r}; exports: "
                            f"{', '.join([*MATRICES, *LEADERBOARD_CSVS, *ROBUSTNESS, *QUERY_MATRICES])}")
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
