"""What the pages and the API show, shaped once for both: plain dicts and lists.

Routes stay thin: they check who is asking, call one function here, and render the result
as JSON or through a template.
"""

import math
from enum import StrEnum

import numpy as np
import pandas as pd
from sqlalchemy import func, select, union_all
from sqlalchemy.orm import Session, aliased

from arena import job_states
from arena.callers import Caller
from arena.competition import entries, quotas, rounds
from arena.competition.entries import Scope
from arena.config import Settings
from arena.data.dataset import pick_dataset
from arena.errors import InputError, NotFoundError
from arena.execution import checking, workers
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    Classification,
    Dataset,
    DefenseJob,
    DryRun,
    Entry,
    Image,
    JobAttempt,
    JobKind,
    QueryJob,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
    Visibility,
    name_key,
    utcnow,
)
from arena.results import progress, query_scoring
from arena.results.intervals import binomial_interval
from arena.results.judging import ERROR, HIT, MatrixValue
from arena.results.perturbations import perturbations
from arena.results.query_scoring import QueryMatrixValue
from arena.results.scoring import Standings
from arena.sandbox import pinning
from arena.web import permissions
from arena.web.cache import Snapshot
from arena.web.compression import Body

TRACKS = {
    "defense": ("Defenses", "correct answers on adversarial images"),
    "attack": ("Attacks", "misclassifications caused"),
    "targeted_attack": ("Targeted attacks", "target class hit"),
}


def check_epsilon(standings: Standings, epsilon: int | None) -> None:
    if epsilon is not None and epsilon not in standings.epsilons:
        known = ", ".join(map(str, standings.epsilons)) or "none yet"
        raise NotFoundError(f"no results at eps={epsilon} (epsilons with results: {known})")


def _number(value: object) -> object:
    """JSON has no NaN: a rate not computed yet (or the rank of a baseline, or of an entry with
    nothing scored yet) is null."""
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def datasets(session: Session, settings: Settings) -> list[dict]:
    rows = session.execute(
        select(Dataset.id, Dataset.name, Dataset.created_at, func.count(func.distinct(Batch.id)), func.count(Image.id))
        .join(Batch, Batch.dataset_id == Dataset.id, isouter=True)
        .join(Image, Image.batch_id == Batch.id, isouter=True)
        .group_by(Dataset.id)
        .order_by(Dataset.id)
    ).all()
    result = []
    for dataset_id, name, created_at, batches, images in rows:
        counts = progress.tournament_progress(session, session.get(Dataset, dataset_id), settings)
        round_ = rounds.of_dataset(session, dataset_id)
        result.append({
            "id": dataset_id, "name": name, "created_at": created_at, "batches": batches, "images": images,
            "epsilons": list(round_.epsilons) if round_ else [], **{kind: c.as_dict() for kind, c in counts.items()},
        })
    return result


def leaderboard(snapshot: Snapshot, track: str) -> list[dict]:
    """A track's leaderboard rows, with each submission's id, completion and median run time."""
    if track not in TRACKS:
        raise NotFoundError(f"no track {track!r}; tracks: {', '.join(TRACKS)}")
    return snapshot.view(("leaderboard", track), lambda: _leaderboard_rows(snapshot, track))


def _leaderboard_rows(snapshot: Snapshot, track: str) -> list[dict]:
    ids = {name: i for i, name in snapshot.standings.names.frame["submission"].items()}
    rows = []
    for record in snapshot.boards.track(track).to_dict("records"):
        submission_id = ids[record["submission"]]
        seconds = snapshot.seconds_per_100.get(submission_id)
        record = {key: _number(value) for key, value in record.items()}
        record.update(id=submission_id, completion=round(snapshot.completion.get(submission_id, 0.0), 4),
                      median_seconds_per_100=None if seconds is None else round(seconds, 2))
        rows.append(record)
    return rows


def _top(totals: pd.Series, count: int | None) -> list[str]:
    ordered = totals.sort_values(ascending=False, kind="stable")
    return list(ordered.index if count is None else ordered.index[:count])


def matrix(snapshot: Snapshot, value: MatrixValue, epsilon: int | None, top_attacks: int | None,
           top_defenses: int | None) -> dict:
    """Attack rows x defense columns with the counts behind each cell, optionally zoomed to the
    strongest attacks (most errors caused) and the strongest defenses (most correct answers)."""
    value = MatrixValue(value)
    check_epsilon(snapshot.standings, epsilon)
    return snapshot.view(matrix_key(value, epsilon, top_attacks, top_defenses),
                         lambda: _matrix(snapshot.standings, value, epsilon, top_attacks, top_defenses))


def matrix_key(value: MatrixValue, epsilon: int | None, top_attacks: int | None, top_defenses: int | None) -> tuple:
    return ("matrix", MatrixValue(value), epsilon, top_attacks, top_defenses)


def matrix_json(snapshot: Snapshot, value: MatrixValue, epsilon: int | None, top_attacks: int | None,
                top_defenses: int | None) -> Body:
    """The matrix as /api/matrix serves it and the heatmap page carries it for its cells:
    serialised and compressed once per snapshot, the same bytes for both."""
    return snapshot.json(matrix_key(value, epsilon, top_attacks, top_defenses),
                         lambda: matrix(snapshot, value, epsilon, top_attacks, top_defenses))


def _matrix(standings: Standings, value: MatrixValue, epsilon: int | None, top_attacks: int | None,
            top_defenses: int | None) -> dict:
    errors = standings.matrix(MatrixValue.ERROR, epsilon)
    answered = errors + standings.matrix(MatrixValue.CORRECT, epsilon)
    attacks = _top(errors.sum(axis=1), top_attacks)
    defenses = _top(standings.matrix("correct", epsilon).sum(axis=0), top_defenses)
    values = standings.matrix(value, epsilon).loc[attacks, defenses].to_numpy()
    answered = answered.loc[attacks, defenses].to_numpy()
    low, high = binomial_interval(values, answered)
    return {
        "value": value, "epsilon": epsilon, "attacks": attacks, "defenses": defenses,
        "counts": values.tolist(), "answered": answered.tolist(),
        "low": _rates(low), "high": _rates(high), "epsilons": standings.epsilons,
    }


class MatrixTrack(StrEnum):
    """Which results a matrix or the epsilon curves show: the batch tracks' (attack x defense),
    or the query track's (query attack x served defense)."""

    BATCH = "batch"
    QUERY = "query"


#: What a matrix parameter may name, of either track (one enum, so a bad value is one sentence
#: listing them all); ``track_value`` checks it against the track asked for.
AnyMatrixValue = StrEnum("AnyMatrixValue", {value.name: value.value for value in (*MatrixValue, *QueryMatrixValue)})
#: A value of one track's matrix.
TrackValue = MatrixValue | QueryMatrixValue


def track_value(track: MatrixTrack, value: AnyMatrixValue | None) -> TrackValue:
    """The cell value asked for, one of the track's (a clear error otherwise); its default
    (batch: error, query: success) when none is asked for."""
    values = MatrixValue if track is MatrixTrack.BATCH else QueryMatrixValue
    if value is None:
        return next(iter(values))
    try:
        return values(value.value)
    except ValueError:
        raise InputError(f"the {track} track's matrix has no value {value.value!r}; "
                         f"its values: {', '.join(v.value for v in values)}") from None


def track_matrix_key(track: MatrixTrack, value: TrackValue, epsilon: int | None, top_attacks: int | None,
                     top_defenses: int | None) -> tuple:
    key = matrix_key if track is MatrixTrack.BATCH else query_matrix_key
    return key(value, epsilon, top_attacks, top_defenses)


def track_matrix(snapshot: Snapshot, track: MatrixTrack, value: TrackValue, epsilon: int | None,
                 top_attacks: int | None, top_defenses: int | None) -> dict:
    shape = matrix if track is MatrixTrack.BATCH else query_matrix
    return shape(snapshot, value, epsilon, top_attacks, top_defenses)


def track_matrix_json(snapshot: Snapshot, track: MatrixTrack, value: TrackValue, epsilon: int | None,
                      top_attacks: int | None, top_defenses: int | None) -> Body:
    shape = matrix_json if track is MatrixTrack.BATCH else query_matrix_json
    return shape(snapshot, value, epsilon, top_attacks, top_defenses)


def query_matrix(snapshot: Snapshot, value: QueryMatrixValue, epsilon: int | None, top_attacks: int | None,
                 top_defenses: int | None) -> dict:
    """The query track's query attack rows x served defense columns, in the order of its
    boards (the strongest attacks, the most robust defenses first), optionally the top K of
    each. ``success``: the 2017 rule's successes of ``answered`` outputs clipped to
    ``epsilon`` (None: every epsilon pooled) with the rate's 95% interval; ``avc``: the AVC
    rule's median L2 per cell (``l2``, null where infinite: the attack failed on half the
    images or more), the adversarial outputs as returned (``counts``) of ``answered``, and
    ``scale``, the largest finite median, which the heatmap shades against. The AVC rule
    takes no epsilon."""
    value = QueryMatrixValue(value)
    epsilon = None if value is QueryMatrixValue.AVC else epsilon
    known = snapshot.query.get("epsilons", [])
    if epsilon is not None and epsilon not in known:
        raise NotFoundError(f"no query results at eps={epsilon} (epsilons of the query track: "
                            f"{', '.join(map(str, known)) or 'none yet'})")
    return snapshot.view(query_matrix_key(value, epsilon, top_attacks, top_defenses),
                         lambda: _query_matrix(snapshot, value, epsilon, top_attacks, top_defenses))


def query_matrix_key(value: QueryMatrixValue, epsilon: int | None, top_attacks: int | None,
                     top_defenses: int | None) -> tuple:
    value = QueryMatrixValue(value)
    return ("query matrix", value, None if value is QueryMatrixValue.AVC else epsilon, top_attacks, top_defenses)


def query_matrix_json(snapshot: Snapshot, value: QueryMatrixValue, epsilon: int | None, top_attacks: int | None,
                      top_defenses: int | None) -> Body:
    """The query matrix as /api/matrix?track=query serves it and the heatmap page carries it."""
    return snapshot.json(query_matrix_key(value, epsilon, top_attacks, top_defenses),
                         lambda: query_matrix(snapshot, value, epsilon, top_attacks, top_defenses))


def _query_matrix(snapshot: Snapshot, value: QueryMatrixValue, epsilon: int | None, top_attacks: int | None,
                  top_defenses: int | None) -> dict:
    boards, cells = snapshot.query, snapshot.query_cells
    attacks = [row["submission"] for row in boards.get("attacks", [])][:top_attacks]
    defenses = [row["submission"] for row in boards.get("defenses", [])][:top_defenses]
    shown = {"track": "query", "value": value, "epsilon": epsilon, "attacks": attacks, "defenses": defenses,
             "epsilons": boards.get("epsilons", []), "budget": boards.get("budget")}
    if cells.empty:
        return {**shown, "counts": [], "answered": [], "low": [], "high": [], "l2": None, "l2_low": None,
                "l2_high": None, "scale": None}
    if value is QueryMatrixValue.SUCCESS:
        counts, answered = query_scoring.success_matrix(cells, shown["epsilons"], epsilon)
    else:
        counts, answered = _pair_sums(cells, "adversarial"), _pair_sums(cells.assign(one=1), "one")
    counts, answered = (frame.reindex(index=attacks, columns=defenses, fill_value=0).to_numpy()
                        for frame in (counts, answered))
    low, high = binomial_interval(counts, answered)
    shown.update(counts=counts.tolist(), answered=answered.tolist(), low=_rates(low), high=_rates(high),
                 l2=None, l2_low=None, l2_high=None, scale=None)
    if value is QueryMatrixValue.AVC:
        medians, l2_low, l2_high = (matrix.reindex(index=attacks, columns=defenses).to_numpy(dtype=float) for matrix in
                                    (query_scoring.avc_matrix(cells), *query_scoring.avc_interval_matrices(cells)))
        finite = medians[np.isfinite(medians)]
        shown.update(l2=_l2_cells(medians), l2_low=_l2_cells(l2_low), l2_high=_l2_cells(l2_high),
                     scale=round(float(finite.max()), 3) if finite.size else None)
    return shown


def _l2_cells(matrix: np.ndarray) -> list[list[float | None]]:
    """L2 distances as JSON has them: null for infinity (a failure) and for a pair that never ran."""
    return [[None if not math.isfinite(v) else round(float(v), 3) for v in row] for row in matrix]


def query_matrix_file(snapshot: Snapshot, name: str, epsilon: int | None) -> pd.DataFrame:
    """A query matrix as its export file has it (``query_scoring.export``), by name, among the
    entries the snapshot shows: successes (at ``epsilon``, or pooled), the AVC medians or
    their intervals' bounds."""
    cells, known = snapshot.query_cells, snapshot.query.get("epsilons", [])
    if cells.empty:
        raise NotFoundError("this round has no query-track results")
    if name == query_scoring.AVC_FILE:
        return query_scoring.avc_matrix(cells)
    if name in (query_scoring.AVC_LOW_FILE, query_scoring.AVC_HIGH_FILE):
        low, high = query_scoring.avc_interval_matrices(cells)
        return low if name == query_scoring.AVC_LOW_FILE else high
    if epsilon is not None and epsilon not in known:
        raise NotFoundError(f"no query results at eps={epsilon} (epsilons of the query track: {', '.join(map(str, known))})")
    return query_scoring.success_matrix(cells, known, epsilon)[0]


def _pair_sums(cells: pd.DataFrame, column: str) -> pd.DataFrame:
    return cells.pivot_table(index="attack", columns="defense", values=column, aggfunc="sum", fill_value=0).astype(int)


def _rates(bounds) -> list[list[float | None]]:
    """Bounds of rates as JSON: 4 decimals, null where a cell has no answers."""
    return [[None if math.isnan(v) else round(float(v), 4) for v in row] for row in bounds]


def curves(snapshot: Snapshot, defenses: list[str] | None = None,
           track: MatrixTrack = MatrixTrack.BATCH) -> dict[str, dict[int, float]]:
    """Misclassified (%) by epsilon for each defense (or the chosen ones): over every attack
    of the batch tracks, or (``track`` query) of the query track's attacks against each served
    defense."""
    if MatrixTrack(track) is MatrixTrack.QUERY:
        return {name: {eps: band["rate"] for eps, band in by.items()}
                for name, by in curve_bands(snapshot, defenses, track).items()}
    every = snapshot.view(("curves",), snapshot.standings.defense_error_by_epsilon)
    return {name: {int(eps): round(float(rate), 2) for eps, rate in every[name].items()}
            for name in _chosen(every, defenses)}


def _chosen(every: dict, defenses: list[str] | None) -> list[str]:
    unknown = sorted(set(defenses or []) - set(every))
    if unknown:
        raise NotFoundError(f"no results for defense(s) {', '.join(unknown)}")
    return defenses or sorted(every)


def curve_bands(snapshot: Snapshot, defenses: list[str] | None = None,
                track: MatrixTrack = MatrixTrack.BATCH) -> dict[str, dict[int, dict[str, float]]]:
    """The epsilon curves with their 95% intervals: misclassified (%) and its bounds by
    epsilon, for each defense (or the chosen ones), of the batch tracks or the query track."""
    if MatrixTrack(track) is MatrixTrack.QUERY:
        every = snapshot.view(("query bands",), lambda: _query_bands(snapshot))
        return {name: every[name] for name in _chosen(every, defenses)}
    every = snapshot.view(("bands",), snapshot.boards.error_bands)
    return {name: {int(eps): {key: round(float(value), 2) for key, value in row.items()}
                   for eps, row in every[name].iterrows()} for name in _chosen(every, defenses)}


def _query_bands(snapshot: Snapshot) -> dict[str, dict[int, dict[str, float]]]:
    """Each served defense's share (%) of the query attacks' outputs, clipped to each epsilon,
    that it labelled wrongly (``query_scoring.defense_errors``), with the exact bootstrap
    interval of that 0/1 rate, as the query matrix's cells have theirs."""
    if snapshot.query_cells.empty:
        return {}
    epsilons = snapshot.query["epsilons"]
    wrong, scored = query_scoring.defense_errors(snapshot.query_cells, epsilons)
    counts = wrong.to_numpy()
    trials = np.broadcast_to(scored.to_numpy()[:, None], counts.shape)
    low, high = binomial_interval(counts, trials)
    return {name: {int(eps): {"rate": round(100 * float(counts[i, j] / trials[i, j]), 2),
                              "low": round(100 * float(low[i, j]), 2), "high": round(100 * float(high[i, j]), 2)}
                   for j, eps in enumerate(epsilons)}
            for i, name in enumerate(wrong.index)}


def submission_summary(submission: Submission) -> dict:
    return {
        "id": submission.id, "name": submission.name, "team": submission.team.name, "kind": submission.kind.value,
        "status": submission.shown_status, "reason": submission.reason, "description": submission.description,
        "created_at": submission.created_at,
        "container": submission.meta.get("container"), "baseline": submission.baseline,
        "container_image": submission.container_image, "container_gpu_image": submission.container_gpu_image,
        "nondeterministic_share": submission.nondeterministic_share,
    }


def waiting_uploads(session: Session, who: Caller) -> list[dict]:
    """Submissions whose dry run is to come or running, oldest first: the team's own, or
    everyone's for organizers."""
    query = select(Submission).where(Submission.status == SubmissionStatus.QUEUED).order_by(Submission.id)
    if not who.organizer:
        query = query.join(Team, Submission.team_id == Team.id).where(Team.name_key == name_key(who.team_name))
    return [submission_summary(s) for s in session.scalars(query)]


def round_summary(session: Session, round_: Round, team: Team | None = None) -> dict:
    """A round as people ask about it: is it open, for how long, and (for a team) how many
    uploads it has left per track."""
    window = rounds.window(round_)
    now = utcnow()
    summary = {
        "name": round_.name, "dataset": round_.dataset.name, "epsilons": round_.epsilons,
        "eps_schedule": round_.eps_schedule, "seconds_per_image": round_.seconds_per_image,
        "opens_at": window.opens_at, "closes_at": window.closes_at,
        "state": window.state(now), "visibility": round_.visibility.value, "daily_quota": round_.daily_quota,
        "total_quota": round_.total_quota, "entries": len(entries.accepted(session, round_.dataset_id)),
        "data_public": round_.data_public, "rank_baselines": round_.rank_baselines,
        "refuse_stateful_defenses": round_.refuse_stateful_defenses,
        "seconds_left": (window.closes_at - now).total_seconds() if window.state(now) == "open" and window.closes_at
        else None,
    }
    if team is not None:
        summary["uploads_left"] = {kind.value: quotas.left(session, round_, team, kind, now) for kind in SubmissionKind}
    return summary


def round_of(session: Session, dataset: Dataset, who: Caller) -> dict | None:
    """The summary of the dataset's round, for the banner above its leaderboards."""
    round_ = rounds.of_dataset(session, dataset.id)
    return None if round_ is None else round_summary(session, round_, _team(session, who))


def _team(session: Session, who: Caller) -> Team | None:
    return None if who.organizer or who.team_id is None else session.get(Team, who.team_id)


def rounds_list(session: Session, who: Caller) -> list[dict]:
    team = _team(session, who)
    return [round_summary(session, r, team) for r in session.scalars(select(Round).order_by(Round.id))]


def datasets_without_round(session: Session) -> list[str]:
    """The imported datasets a new round may take: those no round owns yet (results are kept per dataset)."""
    return list(session.scalars(select(Dataset.name).where(~select(Round.id).where(Round.dataset_id == Dataset.id)
                                                                 .exists()).order_by(Dataset.id)))


def submissions(session: Session) -> list[dict]:
    query = select(Submission).join(Team).order_by(Submission.id)
    return [submission_summary(s) for s in session.scalars(query)]


def submission_detail(session: Session, settings: Settings, dataset: Dataset, submission: Submission,
                      who: Caller, run_limit: int = 50) -> dict:
    """The submission's page as ``who`` may see it (``web/permissions.py``): the dry run's log
    tail and the runs' logs for its team and organizers, its container runs on ``dataset`` (the
    page's round: two rounds' runs under one heading read as one) when ``who`` may see that
    round's results; no report (None) until the dry run has finished."""
    with_logs = permissions.may_see_logs(who, submission)
    runs = permissions.visible_runs(session, who, submission)
    report = dict(submission.validation_report) if submission.validation_report is not None else None
    if report is not None and not with_logs:
        report.pop("log_tail", None)
    dry_run = submission.dry_run
    kept = with_logs and dry_run is not None and dry_run.log_sha256 is not None
    return {
        **({"dry_run_log_url": dry_run_log_url(submission), "dry_run_log_size": dry_run.log_size} if kept else {}),
        **submission_summary(submission),
        "validation_report": report,
        "images": [check.as_dict() for check in pinning.check(submission.images)],
        "progress": progress.submission_progress(session, dataset, submission, settings).as_dict(),
        "perturbations": _perturbations(session, dataset, submission),
        "attempts": attempts(session, submission, who, [dataset.id] if runs.shows(dataset.id) else [], run_limit),
        "query_runs": query_runs(session, submission, who, dataset, run_limit) if runs.shows(dataset.id) else [],
        "logs_visible": with_logs,
        "runs_visible": runs.shows(dataset.id),
        "queue_place": checking.place_in_queue(session, settings, submission),
        "waiting_because": workers.why_waiting(session, settings, submission),
    }


def _perturbations(session: Session, dataset: Dataset, submission: Submission) -> list[dict]:
    """An attack's L-infinity and L2 distances actually used, per epsilon (empty for a defense)."""
    if not submission.kind.is_attack:
        return []
    frame = perturbations(session, dataset, [submission.id]).drop(columns="attack_id")
    return [{key: _number(value) for key, value in row.items()} for row in frame.to_dict("records")]


def attempts(session: Session, submission: Submission, who: Caller, datasets: list[int] | None = None,
             limit: int = 50) -> list[dict]:
    """The attempts of the submission's ``limit`` latest container runs on ``datasets`` (None:
    all), every attempt of each, newest first, as ``who`` may read them (``web/permissions.py``).

    The limit counts whole runs, never attempts: cut at 50 attempts, the oldest 20-job pack
    shown lost some of its jobs, and its "jobs in run" went down and back up as newer runs
    pushed the cut along (issue 30, finding 9)."""
    kind = JobKind.of(submission.kind)
    job_class = kind.job_class
    with_logs = permissions.may_see_logs(who, submission)
    run = func.coalesce(JobAttempt.run_id, JobAttempt.id)  # a row without a run id is a run of its own
    mine = (select(JobAttempt).join(job_class, kind.attempt_column == job_class.id)
            .where(job_class.submission_id == submission.id))
    if datasets is not None:
        mine = mine.join(Batch, job_class.batch_id == Batch.id).where(Batch.dataset_id.in_(datasets))
    newest_runs = list(session.scalars(mine.with_only_columns(run).group_by(run)
                                       .order_by(func.max(JobAttempt.id).desc()).limit(limit)))
    rows = session.scalars(mine.where(run.in_(newest_runs)).order_by(JobAttempt.id.desc()))
    return [{
        "job_id": a.attack_job_id or a.defense_job_id, "attempt": a.number, "started_at": a.started_at,
        "seconds": a.seconds, "images": a.images, "pack_jobs": a.pack_jobs, "run_id": a.run_id,
        "container_image": a.container_image, "exit_code": a.exit_code,
        "timed_out": a.timed_out, "killed_reason": a.killed_reason, "platform_error": permissions.platform_error(who, a.error),
        **({"log_excerpt": a.log_excerpt} if with_logs else {}),
        **({"log_url": run_log_url(submission, a.id), "log_size": a.log_size} if with_logs and a.log_sha256 else {}),
    } for a in rows]


def query_runs(session: Session, submission: Submission, who: Caller, dataset: Dataset, limit: int = 50) -> list[dict]:
    """The submission's ``limit`` latest query jobs on ``dataset``, newest first, each with its
    side's log tail and its latest attempt's full log when ``who`` may read the submission's
    logs: its own container's only, never the other team's (``permissions.query_side``)."""
    side = permissions.query_side(submission)
    with_logs = permissions.may_see_logs(who, submission)
    rows = session.execute(
        select(QueryJob, side.tail, Submission.name, Batch.index).join(Submission, Submission.id == side.other_column)
        .join(Batch, Batch.id == QueryJob.batch_id)
        .where(side.job_column == submission.id, Batch.dataset_id == dataset.id).order_by(QueryJob.id.desc())
        .limit(limit)).all()
    kept = _latest_query_logs(session, side, [job.id for job, *_ in rows]) if with_logs else {}
    return [{
        "job_id": job.id, "opponent": opponent, "batch": batch, "status": job.status, "attempt": job.attempt,
        "seconds": job.seconds, "exit_code": job.attack_exit_code, "timed_out": job.attack_timed_out,
        "defense_failure": job.defense_failure, "problems": list(job.problems or []),
        **({"log_tail": tail} if with_logs else {}),
        **({"log_url": run_log_url(submission, kept[job.id][0]), "log_size": kept[job.id][1]} if job.id in kept else {}),
    } for job, tail, opponent, batch in rows]


def _latest_query_logs(session: Session, side: permissions.QuerySide, job_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(attempt id, size) of the latest kept full log of ``side`` of each query job."""
    rows = session.execute(select(JobAttempt.query_job_id, JobAttempt.id, side.log_size)
                           .where(JobAttempt.query_job_id.in_(job_ids), side.log_sha256.is_not(None))
                           .order_by(JobAttempt.id))
    return {job_id: (attempt_id, size) for job_id, attempt_id, size in rows}


def run_log_url(submission: Submission, attempt_id: int) -> str:
    """Where the full log of the container run of the attempt ``attempt_id`` is downloaded."""
    return f"/submissions/{submission.id}/runs/{attempt_id}/log"


def dry_run_log_url(submission: Submission) -> str:
    """Where the full log of the submission's dry run (its latest) is downloaded."""
    return f"/submissions/{submission.id}/dry-run/log"


def kept_log(session: Session, who: Caller, submission: Submission, attempt_id: int | None) -> str | None:
    """The store's hash of a full log of the submission (its dry run's with ``attempt_id``
    None, else that attempt's run's: for a query job's attempt, the submission's own side's)
    when ``who`` may read it; None when there is none, the attempt is not the submission's
    (one deleted by a re-run is no one's), or ``who`` may not see its logs
    (``web/permissions.py``)."""
    if not permissions.may_see_logs(who, submission):
        return None
    if attempt_id is None:
        return session.scalar(select(DryRun.log_sha256).where(DryRun.submission_id == submission.id))
    kind, side = JobKind.of(submission.kind), permissions.query_side(submission)
    batch = (select(JobAttempt.log_sha256).join(kind.job_class, kind.attempt_column == kind.job_class.id)
             .where(JobAttempt.id == attempt_id, kind.job_class.submission_id == submission.id))
    query = (select(side.log_sha256).join(QueryJob, JobAttempt.query_job_id == QueryJob.id)
             .where(JobAttempt.id == attempt_id, side.job_column == submission.id))
    return session.scalar(union_all(batch, query))


def container_runs(attempts_newest_first: list[dict]) -> list[dict]:
    """The attempts grouped into the container runs they were (``run_id``, recorded when the
    jobs were claimed together), newest first: one row per run with its jobs, instead of
    one identical row per job of a pack."""
    runs: dict[object, dict] = {}
    for row, a in enumerate(attempts_newest_first):
        key = a["run_id"] if a["run_id"] is not None else ("alone", row)  # a row made by hand: its own run
        run = runs.get(key)
        if run is None:
            runs[key] = {**a, "job_ids": [a["job_id"]], "attempts": {a["attempt"]},
                                 "platform_errors": [a["platform_error"]] if a["platform_error"] else [],
                                 "log_excerpts": [a["log_excerpt"]] if a.get("log_excerpt") else []}
            continue
        run["job_ids"].append(a["job_id"])
        run["attempts"].add(a["attempt"])
        run["started_at"] = min(run["started_at"], a["started_at"])
        for key in ("platform_error", "log_excerpt"):
            if a.get(key) and a[key] not in run[key + "s"]:
                run[key + "s"].append(a[key])
    for run in runs.values():
        run["job_ids"].sort()
        run["attempts"] = sorted(run["attempts"])
    return list(runs.values())


def standing(snapshot: Snapshot | None, submission: Submission) -> dict | None:
    """The submission's row in its track's leaderboard (rank, score, ...) with the track's
    size; None without a snapshot (hidden leaderboards) or when it is not on the board."""
    if snapshot is None or submission.kind.value not in TRACKS:
        return None
    board = leaderboard(snapshot, submission.kind.value)
    row = next((r for r in board if r["id"] == submission.id), None)
    if row is None:
        return None
    return {**row, "track": submission.kind.value, "track_title": TRACKS[submission.kind.value][0],
            "entries": len(board), "counting": True}


def rerun_losses(session: Session, submission: Submission) -> dict:
    """What re-running the submission forgets, on every dataset: its jobs (and how many had
    finished), the adversarial images of an attack, and the answers scored on them (an attack)
    or given by it (a defense)."""
    job_class = JobKind.of(submission.kind).job_class
    jobs_count, done = session.execute(
        select(func.count(job_class.id), func.count(job_class.id).filter(job_states.done(job_class)))
        .where(job_class.submission_id == submission.id)
    ).one()
    if submission.kind.is_attack:
        images = session.scalar(select(func.count(AdversarialImage.id)).join(AttackJob)
                                .where(AttackJob.submission_id == submission.id))
        over = DefenseJob.attack_job_id.in_(select(AttackJob.id).where(AttackJob.submission_id == submission.id))
    else:
        images = 0
        over = DefenseJob.submission_id == submission.id
    # through the jobs: each job's answers are a range of the table's only index
    answers = session.scalar(select(func.count()).select_from(Classification)
                             .join(DefenseJob, Classification.defense_job_id == DefenseJob.id).where(over))
    return {"jobs": jobs_count, "done": done, "adversarial_images": images, "answers": answers}


class ListedJobs(StrEnum):
    """What /api/jobs lists: a batch track's jobs (``JobKind``), or the query track's."""

    ATTACK = "attack"
    DEFENSE = "defense"
    QUERY = "query"


def jobs(session: Session, dataset: Dataset, kind: ListedJobs, submission: Submission | None, status: str | None,
         limit: int, offset: int) -> list[dict]:
    """One kind of job of the dataset, filtered, by id."""
    if ListedJobs(kind) is ListedJobs.QUERY:
        return _query_jobs(session, dataset, submission, status, limit, offset)
    job_class = JobKind(kind).job_class
    mine = None if submission is None else job_class.submission_id == submission.id
    return [{
        "kind": kind, "id": job.id, "submission_id": job.submission_id, "batch": batch,
        "epsilon": getattr(job, "epsilon", None), "attack_job_id": getattr(job, "attack_job_id", None),
        "status": job.status.value, "attempt": job.attempt, "finished_at": job.finished_at, "defense_id": None,
    } for job, batch in _listed(session, job_class, dataset, mine, status, limit, offset)]


def _query_jobs(session: Session, dataset: Dataset, submission: Submission | None, status: str | None,
                limit: int, offset: int) -> list[dict]:
    """The dataset's query jobs, those of ``submission`` on either side, by id: ``submission_id``
    is the query attack's, ``defense_id`` the served defense's."""
    mine = None if submission is None else (QueryJob.attack_id == submission.id) | (QueryJob.defense_id == submission.id)
    return [{
        "kind": ListedJobs.QUERY, "id": job.id, "submission_id": job.attack_id, "defense_id": job.defense_id,
        "batch": batch, "epsilon": None, "attack_job_id": None, "status": job.status.value,
        "attempt": job.attempt, "finished_at": job.finished_at,
    } for job, batch in _listed(session, QueryJob, dataset, mine, status, limit, offset)]


def _listed(session: Session, job_class, dataset: Dataset, mine, status: str | None, limit: int, offset: int):
    """(job, its batch's index) of the dataset's jobs of ``job_class``, filtered (``mine``: a
    submission's, where given), by id: the index in the same query, not one query a job."""
    query = select(job_class, Batch.index).join(Batch, job_class.batch_id == Batch.id).where(Batch.dataset_id == dataset.id)
    if mine is not None:
        query = query.where(mine)
    if status is not None:
        query = query.where(job_class.status == status)
    return session.execute(query.order_by(job_class.id).limit(limit).offset(offset)).all()


def _filtered(query, attack_id: int | None, defense_id: int | None, epsilon: int | None):
    if attack_id is not None:
        query = query.where(AttackJob.submission_id == attack_id)
    if defense_id is not None:
        query = query.where(DefenseJob.submission_id == defense_id)
    if epsilon is not None:
        query = query.where(AttackJob.epsilon == epsilon)
    return query


def _results_from(query, dataset: Dataset):
    """Answers on adversarial images, reached through their jobs: the filters select jobs, and
    each job's answers are a range of the table's primary key."""
    return (query.select_from(Classification)
            .join(DefenseJob, Classification.defense_job_id == DefenseJob.id)
            .join(AttackJob, DefenseJob.attack_job_id == AttackJob.id)
            .join(Image, Classification.image_id == Image.id)
            .where(Image.dataset_id == dataset.id))


def results(session: Session, dataset: Dataset, attack_id: int | None, defense_id: int | None,
            epsilon: int | None, limit: int, offset: int) -> list[dict]:
    """Per-image answers on adversarial images, with the truth beside them (organizers only:
    they reveal the dataset's labels)."""
    query = _results_from(
        select(Classification.defense_job_id, Classification.defense_id, AttackJob.submission_id, AttackJob.epsilon,
               Image.id, Image.name, Image.true_label, Image.target_class, Classification.label,
               Classification.problem, Classification.adversarial_image_id, ERROR, HIT), dataset,
    ).order_by(Classification.defense_job_id, Classification.image_id)
    query = _filtered(query, attack_id, defense_id, epsilon)
    keys = ("defense_job_id", "defense_id", "attack_id", "epsilon", "image_id", "image", "true_label", "target_class",
            "label", "problem", "adversarial_image_id", "error", "hit")
    rows = [dict(zip(keys, row, strict=True)) for row in session.execute(query.limit(limit).offset(offset))]
    for row in rows:
        row.update(problem=row["problem"].value if row["problem"] else None, error=bool(row["error"]), hit=bool(row["hit"]))
    return rows


def results_count(session: Session, dataset: Dataset, attack_id: int | None, defense_id: int | None,
                  epsilon: int | None) -> int:
    """How many rows ``results`` has in all with these filters (for the page's total and its links)."""
    query = _filtered(_results_from(select(func.count()), dataset), attack_id, defense_id, epsilon)
    return session.scalar(query) or 0


def drilldown(session: Session, adversarial_id: int) -> dict:
    """One adversarial image: its attack, the clean image, and every defense's answer on it."""
    adversarial = session.get(AdversarialImage, adversarial_id)
    if adversarial is None:
        raise NotFoundError(f"no adversarial image with id {adversarial_id}")
    image, job = adversarial.image, adversarial.attack_job
    # each answer by its key: the defense jobs over this attack job (or over its clean batch), and the image
    answers = session.execute(
        select(Submission.id, Submission.name, Classification.label, Classification.problem, ERROR, HIT)
        .join(DefenseJob, Classification.defense_job_id == DefenseJob.id)
        .join(Submission, DefenseJob.submission_id == Submission.id)
        .join(Image, Classification.image_id == Image.id)
        .where(DefenseJob.attack_job_id == job.id, Classification.image_id == image.id)
        .order_by(Submission.name)
    ).all()
    clean = dict(session.execute(
        select(DefenseJob.submission_id, Classification.label)
        .join(DefenseJob, Classification.defense_job_id == DefenseJob.id)
        .where(DefenseJob.attack_job_id.is_(None), DefenseJob.batch_id == image.batch_id,
               Classification.image_id == image.id)
    ).all())
    return {
        "id": adversarial.id, "image_id": image.id, "image": image.name, "true_label": image.true_label,
        "target_class": image.target_class, "attack": job.submission.name, "attack_id": job.submission_id,
        "attack_kind": job.submission.kind.value, "epsilon": job.epsilon, "linf": adversarial.linf,
        "clipped": adversarial.clipped, "missing": adversarial.missing, "wrong_size": adversarial.wrong_size,
        "converted": adversarial.converted,
        "answers": [{
            "defense_id": defense_id, "defense": name, "label": label, "clean_label": clean.get(defense_id),
            "problem": problem.value if problem else None, "correct": not error, "hit": bool(hit),
        } for defense_id, name, label, problem, error, hit in answers],
    }


def team_or_404(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise NotFoundError(f"no team named {name!r}")
    return team


def team_submissions(session: Session, cache, team: Team, who: Caller) -> list[dict]:
    """Every submission of the team, once per round it takes part in, with its standing there
    (when the round's leaderboards are visible to ``who``) and whether it counts."""
    rows, counting = [], {}
    query = (select(Submission, Round).join(Entry, Entry.submission_id == Submission.id)
             .join(Round, Entry.round_id == Round.id).where(Submission.team_id == team.id)
             .order_by(Round.id, Submission.id))
    for submission, round_ in session.execute(query).all():
        if round_.id not in counting:  # once per round, not per submission
            counting[round_.id] = set(entries.counting(session, round_.dataset_id))
        counts = submission.id in counting[round_.id]
        # ranked as the public board ranks it when it counts; among every entry when not
        current = cache.get(round_.dataset.name, Scope.COUNTING if counts else Scope.ALL)
        visible = permissions.may_see_results(who, current.public)
        place = standing(current.snapshot, submission) if visible else None
        rows.append({**submission_summary(submission), "round": round_.name, "dataset": round_.dataset.name,
                     "counting": counts, "standing": place and {**place, "counting": counts}, "hidden": not visible,
                     "open": choosable(round_)})
    unentered = select(Submission).where(Submission.team_id == team.id, ~Submission.id.in_(select(Entry.submission_id)))
    rows += [{**submission_summary(s), "round": None, "dataset": None, "counting": False, "standing": None,
              "hidden": False, "open": False} for s in session.scalars(unentered)]
    return rows


def own_team(session: Session, who: Caller, name: str | None) -> Team:
    """The team whose own submissions are asked for: the caller's, or for organizers the one
    named (they have no team of their own, so they must name one). Whether ``who`` may see
    that team's page is ``permissions.check_own_team``'s to say."""
    if name is not None:
        return team_or_404(session, name)
    if who.team_id is None:
        raise InputError("organizers name the team: /my?team=NAME")
    return session.get_one(Team, who.team_id)


def my_submissions(session: Session, cache, team: Team, who: Caller) -> list[dict]:
    """The team's submissions grouped as it plays them: round by round (in the order the rounds
    were made; those in no round last), track by track within a round, each row as
    ``team_submissions`` shapes it (counting flag, standing only where ``who`` may see it)."""
    groups: dict[str | None, dict] = {}
    for row in team_submissions(session, cache, team, who):
        group = groups.setdefault(row["round"], {"round": row["round"], "dataset": row["dataset"],
                                                 "open": row["open"], "tracks": {}})
        group["tracks"].setdefault(row["kind"], []).append(row)
    order = list(TRACKS)
    return [{**group, "tracks": [{"track": kind, "title": TRACKS[kind][0], "rows": group["tracks"][kind]}
                                 for kind in sorted(group["tracks"], key=order.index)]}
            for group in groups.values()]


def submission_dataset(session: Session, submission: Submission, name: str | None) -> Dataset:
    """The dataset a submission's page is about: the one named, else that of the newest round
    the submission takes part in (a dev-only entry's page is about dev, not the newest
    round), else the newest."""
    if name is not None:
        return pick_dataset(session, name)
    newest = session.scalar(select(Round).join(Entry, Entry.round_id == Round.id)
                            .where(Entry.submission_id == submission.id).order_by(Round.id.desc()).limit(1))
    return newest.dataset if newest is not None else pick_dataset(session, None)


def entered_in(session: Session, submission: Submission, dataset: Dataset) -> bool:
    """Whether the submission takes part in the dataset's round (it has jobs there)."""
    return session.scalar(select(Entry.round_id).join(Round, Entry.round_id == Round.id)
                          .where(Entry.submission_id == submission.id, Round.dataset_id == dataset.id)) is not None


def entries_of(session: Session, submission: Submission) -> list[dict]:
    """The rounds the submission takes part in: whether it counts there for its team, and
    whether its team may still change that (before the round's deadline)."""
    rows = session.scalars(select(Round).join(Entry, Entry.round_id == Round.id)
                           .where(Entry.submission_id == submission.id).order_by(Round.id))
    return [{"round": r.name, "dataset": r.dataset.name,
             "counting": submission.id in set(entries.counting(session, r.dataset_id)), "open": choosable(r)} for r in rows]


def choosable(round_: Round) -> bool:
    """Whether a team may still choose which of its entries counts in the round: until its
    deadline, and never once it is published (the pages offer the choice only then; the
    action, ``actions.choose``, decides)."""
    return rounds.window(round_).state(utcnow()) != "closed" and round_.visibility is not Visibility.PUBLISHED


def _queue_lengths(settings: Settings) -> dict[str, int] | None:
    """The broker's queues, where there is one (Celery imported only then)."""
    if not settings.broker_url:
        return None
    from arena.execution.broker import queue_lengths

    return queue_lengths(settings)


def workers_overview(session: Session, settings: Settings) -> dict:
    """The hosts page and ``GET /api/workers``: every worker, the jobs by kind and status, the
    broker's queues, and the running jobs whose lease ran out."""
    seen = workers.overview(session, settings)
    return {
        "workers": [
            {"id": v.worker.id, "kind": v.worker.kind, "host": v.worker.host, "pid": v.worker.pid, "state": v.state.value,
             "engine_version": v.worker.engine_version, "runtimes": v.worker.runtimes, "gpus": v.worker.gpus,
             "concurrency": v.worker.concurrency, "queues": v.worker.queues, "images": len(v.worker.images),
             "pinned_missing": v.pinned_missing, "running": [{"kind": k, "id": i} for k, i in v.running],
             "started_at": v.worker.started_at, "last_seen": v.worker.last_seen, "stopped_at": v.worker.stopped_at}
            for v in seen.workers
        ],
        "jobs": {kind: {str(status): n for status, n in counts.items()} for kind, counts in seen.jobs.items()},
        "queues": _queue_lengths(settings),
        "overdue": [{"kind": k, "id": i, "worker_id": w} for k, i, w in seen.overdue],
        "query_attempts": query_attempts(session),
    }


def query_attempts(session: Session, limit: int = 50) -> list[dict]:
    """The ``limit`` latest attempts of query jobs, newest first, for organizers (both sides'
    logs): each claim with its job's state, the worker that held it, how it ended."""
    attack, defense = aliased(Submission), aliased(Submission)
    rows = session.execute(
        select(JobAttempt, QueryJob, attack, defense, Batch.index, Dataset.name)
        .join(QueryJob, JobAttempt.query_job_id == QueryJob.id).join(attack, attack.id == QueryJob.attack_id)
        .join(defense, defense.id == QueryJob.defense_id).join(Batch, Batch.id == QueryJob.batch_id)
        .join(Dataset, Dataset.id == Batch.dataset_id).order_by(JobAttempt.id.desc()).limit(limit))
    return [{
        "attempt_id": a.id, "job_id": job.id, "attack": attacker.name, "defense": defender.name, "dataset": dataset,
        "batch": batch, "status": job.status, "attempt": a.number, "worker_id": a.worker_id,
        "started_at": a.started_at, "ended_at": a.ended_at, "seconds": a.seconds, "exit_code": a.exit_code,
        "error": a.error, "attack_log_url": run_log_url(attacker, a.id) if a.log_sha256 else None,
        "defense_log_url": run_log_url(defender, a.id) if a.served_log_sha256 else None,
    } for a, job, attacker, defender, batch, dataset in rows]
