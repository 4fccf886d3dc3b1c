"""The HTML pages: Jinja2 templates from web/templates, forms that post back here.

Pages read through the same queries as the API and act through the same actions
(``arena.actions``), so a page and an API call never disagree. Forms answer with a redirect
(post/redirect/get); an action's error is answered as the error page by ``web.app``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena import REPO_ROOT, actions
from arena.admin import teams, tournament
from arena.competition import entries, rounds
from arena.competition.entries import Scope
from arena.config import Settings
from arena.data import logs
from arena.data.dataset import pick_dataset
from arena.db import transaction
from arena.errors import NotFoundError
from arena.intake.submit import MAX_DESCRIPTION
from arena.models import Dataset, JobStatus, Submission, SubmissionKind, Team, WebSession, utcnow
from arena.results import query_scoring
from arena.results.export import MATRICES
from arena.results.progress import tournament_progress
from arena.results.query_scoring import QueryMatrixValue
from arena.sandbox import pinning
from arena.web import charts, compression, permissions, queries, uploads
from arena.web.api.parameters import DatasetName, Epsilon, Id, SettingsDep
from arena.web.auth import (
    COOKIE,
    Caller,
    caller,
    clear_session_cookie,
    close_session,
    identify,
    open_session,
    organizer,
    presents_credential,
    set_session_cookie,
    team_or_organizer,
)
from arena.web.cache import Current, DatasetKey, Pick, Snapshot, round_facts, round_list
from arena.web.compression import Body
from arena.web.deps import SessionDep
from arena.web.queries import AnyMatrixValue, MatrixTrack

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=REPO_ROOT / "web" / "templates")
templates.env.globals.update(heat=charts.heat, heat_rgb=charts.heat_rgb, l2_heat=charts.l2_heat, no_answers=charts.EMPTY,
                             lightest_l2=charts.LIGHTEST_L2)
templates.env.filters["short_pin"] = pinning.short

CallerDep = Annotated[Caller, Depends(caller)]
#: The dataset a form acts on: its page's, sent as a hidden field (empty or absent: the newest).
DatasetField = Annotated[str | None, Form(max_length=200)]


def render(request: Request, name: str, who: Caller, session: Session, status_code: int = 200, **context) -> HTMLResponse:
    context.update(who=who, tournament=tournament.current(session))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def back_to(url: str, dataset: str | None = None) -> RedirectResponse:
    """Post/redirect/get, to the page of the dataset acted on when there is one."""
    return RedirectResponse(f"{url}?{urlencode({'dataset': dataset})}" if dataset else url, status_code=303)


def _fresh_site(session: Session, dataset: str | None) -> bool:
    """No dataset asked for and none imported yet: the site has nothing to show but how to begin."""
    return dataset is None and session.scalar(select(Dataset.id).limit(1)) is None


def getting_started(request: Request, who: Caller, session: Session) -> HTMLResponse:
    """What an organizer does first, instead of a 404 on a site with no dataset."""
    return render(request, "getting_started.html", who, session)


def in_view(dataset: str | None) -> DatasetKey:
    """The standings a page shows: the round the visitor chose (``?dataset=``), else the one in
    view (``permissions.dataset_in_view``), not merely the newest, which may be a hidden final."""
    return dataset if dataset is not None else Pick.IN_VIEW


@dataclass(frozen=True)
class Reader:
    """Who reads a page of the standings, and the standings they read."""

    who: Caller
    current: Current

    @property
    def visible(self) -> Snapshot | None:
        """None while the leaderboards are hidden from this reader."""
        return self.current.snapshot if permissions.may_see_results(self.who, self.current.public) else None


def _visible(request: Request, session: Session, who: Caller, dataset: str | None,
             scope: Scope = Scope.COUNTING) -> tuple[Snapshot | None, Dataset]:
    """The current snapshot and the dataset; no snapshot when the leaderboards are hidden from
    this caller. Every entry (``scope=all``) only for organizers (403 for others)."""
    permissions.check_scope(who, scope)
    reader = Reader(who, request.app.state.standings.get(in_view(dataset), scope))
    return reader.visible, reader.current.snapshot.dataset


async def _reader(request: Request, dataset: str | None, scope: Scope = Scope.COUNTING) -> Reader | None:
    """Who reads, with no query and no worker thread for an anonymous reader of public
    leaderboards checked within the cache's delay (the common case under load); anyone else,
    anyone asking for every entry, or after the delay, in a worker thread that checks the
    standings first. None on a site with no dataset yet."""
    anonymous = not presents_credential(request) and scope is Scope.COUNTING
    current = request.app.state.standings.fresh(in_view(dataset)) if anonymous else None
    if current is not None and current.public:
        return Reader(Caller(), current)
    return await run_in_threadpool(_identified_reader, request, dataset, scope)


def _identified_reader(request: Request, dataset: str | None, scope: Scope) -> Reader | None:
    with transaction(request.app.state.settings) as session:
        if _fresh_site(session, dataset):
            return None
    who = caller(request)
    permissions.check_scope(who, scope)
    return Reader(who, request.app.state.standings.get(in_view(dataset), scope))


def _getting_started_page(request: Request) -> HTMLResponse:
    with transaction(request.app.state.settings) as session:
        return getting_started(request, Caller(), session)


async def standings_page(request: Request, dataset: str | None, template: str, key: tuple, here: str,
                         context: Callable[[Snapshot | None, Caller], dict], scope: Scope = Scope.COUNTING) -> Response:
    """A page of the standings, rendered and compressed once per snapshot, view and kind of
    reader (organizers get links to the per-image results, a team sees its name and its own
    rows highlighted): every reader of the same view is sent the same stored bytes, and the
    key names the reader's kind and team, so no team's page reaches another reader. ``here``
    is the page's own address, for the login link (the view, not the request's query
    string, keys the page). ``context`` is given the reader too, for what is theirs."""
    reader = await _reader(request, dataset, scope)
    if reader is None:
        return await run_in_threadpool(_getting_started_page, request)
    who, current = reader.who, reader.current
    key = ("page", template, *key, here, reader.visible is None, current.title, current.rounds, who.organizer,
           who.team_id, who.team_name)

    def make() -> Body:
        page = templates.get_template(template).render(
            who=who, tournament={"title": current.title}, here=here, dataset=current.snapshot.dataset,
            round=current.snapshot.round, rounds=current.rounds, scope=scope, **context(reader.visible, who))
        return Body.of(page.encode(), "text/html; charset=utf-8")

    snapshot = current.snapshot
    return compression.respond(request, snapshot.cached(key) or await run_in_threadpool(snapshot.view, key, make))


def _here(path: str, **query: object) -> str:
    given = {name: value for name, value in query.items() if value is not None}
    return f"{path}?{urlencode(given)}" if given else path


@router.get("/", response_class=HTMLResponse)
async def leaderboards_page(request: Request, dataset: DatasetName = None, scope: Scope = Scope.COUNTING):
    """One entry per team and track; every entry for organizers who ask (``scope=all``)."""
    return await standings_page(
        request, dataset, "leaderboards.html", (), _here("/", dataset=dataset, scope=scope.value if scope is Scope.ALL else None),
        lambda snapshot, who: {"boards_html": None if snapshot is None else _boards_html(snapshot, who.team_name)},
        scope)


def _boards_html(snapshot: Snapshot, mine: str | None) -> Markup:
    """The three tables, then the query track's two where the round ran it, rendered once per
    snapshot and reading team (``mine``, whose rows are highlighted; None for organizers and
    the public, who all read the same tables)."""
    def make() -> Markup:
        boards = {track: (title, meaning, queries.leaderboard(snapshot, track))
                  for track, (title, meaning) in queries.TRACKS.items()}
        return Markup(templates.get_template("_boards.html").render(
            boards=boards, epsilons=snapshot.standings.epsilons, dataset=snapshot.dataset, mine=mine)
            + templates.get_template("_query_boards.html").render(query=snapshot.query, mine=mine))

    return snapshot.view(("html", "boards", mine), make)


@router.get("/matrix", response_class=HTMLResponse)
async def matrix_page(
    request: Request, dataset: DatasetName = None, track: MatrixTrack = MatrixTrack.BATCH,
    value: AnyMatrixValue | None = None, epsilon: Epsilon = None,
    top_attacks: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    top_defenses: Annotated[int | None, Query(ge=1, le=10_000)] = None,
):
    value = queries.track_value(track, value)
    batch = track is MatrixTrack.BATCH
    here = _here("/matrix", dataset=dataset, track=None if batch else track.value,
                 value=None if value == queries.track_value(track, None) else value.value,
                 eps=epsilon, top_attacks=top_attacks, top_defenses=top_defenses)

    def context(snapshot: Snapshot | None, _: Caller) -> dict:
        if snapshot is None:
            return {"view": None, "track": track.value}
        view = queries.track_matrix(snapshot, track, value, epsilon, top_attacks, top_defenses)
        cells = queries.track_matrix_json(snapshot, track, value, epsilon, top_attacks, top_defenses).raw
        frame = snapshot.standings.names.frame
        csv = next(name for name, shown in MATRICES.items() if shown == value) if batch else _query_csv(view)
        return {"view": view, "track": track.value, "has_query": bool(snapshot.query),
                "top_attacks": top_attacks, "top_defenses": top_defenses,
                "csv": _here(f"/api/export/{csv}.csv", dataset=snapshot.dataset.name, eps=view["epsilon"]),
                "json": _here("/api/matrix", dataset=snapshot.dataset.name, track=None if batch else track.value,
                              value=value.value, eps=view["epsilon"], top_attacks=top_attacks, top_defenses=top_defenses),
                "ids": {name: i for i, name in frame["submission"].items()},
                "targeted": set(frame.loc[frame["kind"].isin([SubmissionKind.TARGETED_ATTACK.value,
                                                              SubmissionKind.QUERY_TARGETED.value]), "submission"]),
                "baselines": set(frame.loc[frame["baseline"], "submission"]),
                # a data block ends at the first "</script": no "<" can stay in it
                "cells_json": Markup(cells.decode().replace("<", "\\u003c"))}

    return await standings_page(request, dataset, "matrix.html",
                                ("matrix", track, value, epsilon, top_attacks, top_defenses), here, context)


def _query_csv(view: dict) -> str:
    """The export behind a query matrix view: its successes, or its AVC medians."""
    return query_scoring.SUCCESS_FILE if view["value"] == QueryMatrixValue.SUCCESS else query_scoring.AVC_FILE


@router.get("/curves", response_class=HTMLResponse)
def curves_page(request: Request, session: SessionDep, who: CallerDep, dataset: DatasetName = None,
                defense: Annotated[list[str] | None, Query()] = None, track: MatrixTrack = MatrixTrack.BATCH):
    if _fresh_site(session, dataset):
        return getting_started(request, who, session)
    snapshot, chosen = _visible(request, session, who, dataset)
    every = sorted(queries.curves(snapshot, track=track)) if snapshot else []
    chart = charts.epsilon_chart(queries.curves(snapshot, defense, track), queries.curve_bands(snapshot, defense, track)) \
        if snapshot else None
    return render(request, "curves.html", who, session, dataset=chosen, chart=chart, every=every,
                  chosen=set(defense or every), track=track.value, has_query=bool(snapshot and snapshot.query),
                  round=round_facts(session, chosen), rounds=round_list(session))


@router.get("/submissions", response_class=HTMLResponse)
def submissions_page(request: Request, session: SessionDep, who: CallerDep):
    return render(request, "submissions.html", who, session, submissions=queries.submissions(session))


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(request: Request, submission_id: Id, session: SessionDep, who: CallerDep,
                    dataset: DatasetName = None):
    submission = actions.submission(session, submission_id)
    chosen = queries.submission_dataset(session, submission, dataset)
    detail = queries.submission_detail(session, request.app.state.settings, chosen, submission, who)
    snapshot, _ = _visible(request, session, who, chosen.name)
    standing = queries.standing(snapshot, submission)
    if standing is None and snapshot is not None:  # not its team's counting entry: its place among every entry
        every = request.app.state.standings.get(chosen.name, Scope.ALL).snapshot
        standing = queries.standing(every, submission)
        standing = standing and {**standing, "counting": False}
    return render(request, "submission.html", who, session, s=detail, dataset=chosen,
                  runs=queries.container_runs(detail["attempts"]),
                  standing=standing, standing_hidden=snapshot is None, entries=queries.entries_of(session, submission),
                  entered=queries.entered_in(session, submission, chosen),
                  owner=who.owns(submission))


@router.get("/submissions/{submission_id}/runs/{attempt_id}/log")
def run_log(submission_id: Id, attempt_id: Id, session: SessionDep, settings: SettingsDep, who: CallerDep) -> Response:
    """The full log of the container run an attempt of the submission was in: its team's and organizers'."""
    submission = actions.submission(session, submission_id)
    return _log_download(settings, queries.kept_log(session, who, submission, attempt_id),
                         f"{submission.name}-run-{attempt_id}.log")


@router.get("/submissions/{submission_id}/dry-run/log")
def dry_run_log(submission_id: Id, session: SessionDep, settings: SettingsDep, who: CallerDep) -> Response:
    """The full log of the submission's dry run (its latest, after a re-pin): its team's and organizers'."""
    submission = actions.submission(session, submission_id)
    return _log_download(settings, queries.kept_log(session, who, submission, None), f"{submission.name}-dry-run.log")


def _log_download(settings: Settings, sha256: str | None, filename: str) -> Response:
    """A kept log as a text file; a log there is none of, or one the caller may not read, is
    a 404, as hidden things are (nothing tells another team that it exists)."""
    if sha256 is None:
        raise NotFoundError("no such log")
    return Response(logs.read(settings, sha256), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{quote(filename)}"'})


def _round_epsilons(session: Session, dataset: Dataset) -> list[int]:
    round_ = rounds.of_dataset(session, dataset.id)
    return list(round_.epsilons) if round_ else []


#: Rows on one page of /results.
RESULTS_PAGE = 100


@router.get("/results", response_class=HTMLResponse)
def results_page(
    request: Request, session: SessionDep, dataset: DatasetName = None,
    attack_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    defense_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    epsilon: Epsilon = None, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    who: Caller = Depends(organizer),
):
    chosen = pick_dataset(session, dataset)
    total = queries.results_count(session, chosen, attack_id, defense_id, epsilon)
    if offset >= total:  # past the end: the last page, never an empty table
        offset = max(0, (total - 1) // RESULTS_PAGE * RESULTS_PAGE)
    rows = queries.results(session, chosen, attack_id, defense_id, epsilon, RESULTS_PAGE, offset)
    submissions = session.execute(select(Submission.id, Submission.name, Submission.kind).order_by(Submission.name)).all()
    names = {id_: name for id_, name, _ in submissions}
    entered = set(entries.accepted(session, chosen.id))  # the filter offers this round's accepted entries only
    attacks = [(id_, name) for id_, name, kind in submissions if kind != SubmissionKind.DEFENSE and id_ in entered]
    defenses = [(id_, name) for id_, name, kind in submissions if kind == SubmissionKind.DEFENSE and id_ in entered]
    targeted = {id_ for id_, _, kind in submissions if kind == SubmissionKind.TARGETED_ATTACK}
    query = {"attack_id": attack_id, "defense_id": defense_id, "eps": epsilon}
    link = {"dataset": chosen.name} | {key: value for key, value in query.items() if value is not None}

    def page(start: int) -> str:
        return "/results?" + urlencode(link | ({"offset": start} if start else {}))

    return render(request, "results.html", who, session, dataset=chosen, rows=rows, names=names, offset=offset,
                  total=total, page_size=RESULTS_PAGE, query=query, attacks=attacks, defenses=defenses, targeted=targeted,
                  epsilons=sorted(set(_round_epsilons(session, chosen)) | ({epsilon} - {None})),
                  previous=page(max(0, offset - RESULTS_PAGE)) if offset > 0 else None,
                  next=page(offset + RESULTS_PAGE) if offset + RESULTS_PAGE < total else None)


@router.get("/adversarial/{adversarial_id}", response_class=HTMLResponse)
def adversarial_page(request: Request, adversarial_id: Id, session: SessionDep, who: Caller = Depends(organizer)):
    return render(request, "adversarial.html", who, session, a=queries.drilldown(session, adversarial_id))


@router.get("/help/format", response_class=HTMLResponse)
def submission_format_page(request: Request, session: SessionDep, who: CallerDep):
    """docs/submissions.md, the submission format in every detail, as a page (the teams' page
    at /help/submissions links it)."""
    return render(request, "help.html", who, session, title="Submission format", body=_submission_format())


#: Raw HTML in the Markdown is shown as text and unsafe link schemes (javascript:...) are
#: refused by markdown-it itself, so organizers' pages cannot carry script.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
_FORMAT: list[Markup] = []


def markdown(text: str) -> Markup:
    """Markdown as safe HTML; on a phone wide tables and code scroll in their own box, which
    the keyboard can reach and scroll."""
    html = _MARKDOWN.render(text)
    html = html.replace("<table>", '<div class="table-box" tabindex="0"><table>').replace("</table>", "</table></div>")
    return Markup(html.replace("<pre>", '<pre tabindex="0">'))


def _submission_format() -> Markup:
    if not _FORMAT:
        _FORMAT.append(markdown((REPO_ROOT / "docs" / "submissions.md").read_text(encoding="utf-8")))
    return _FORMAT[0]


def local_path(next_: str | None) -> str:
    """Where to go after logging in: a path on this site (``/`` and not ``//``), else ``/``.

    Never an outside address: ``//host``, ``/\\host`` (read by browsers as ``//host``),
    ``https://host`` or anything with a control character is refused for ``/``."""
    if (not next_ or not next_.startswith("/") or next_.startswith("//") or "\\" in next_
            or any(ord(c) < 32 or ord(c) == 127 for c in next_) or next_.startswith("/login")):
        return "/"
    return next_


#: The page to return to after logging in, carried by the login link and form.
NextField = Annotated[str | None, Query(alias="next", max_length=2000)]


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, who: CallerDep, next_: NextField = None):
    return render(request, "login.html", who, session, next=local_path(next_))


@router.post("/login")
def login(request: Request, session: SessionDep, token: Annotated[str, Form(min_length=1, max_length=200)],
          next_: Annotated[str | None, Form(alias="next", max_length=2000)] = None):
    """The token is checked (401 if wrong, 429 after too many wrong ones) and exchanged for a
    session: the cookie carries only the session's random id, never the token. The answer
    returns to ``next``, the page the visitor came from, when it is a path on this site."""
    who = identify(request, token.strip(), session)
    response = RedirectResponse(local_path(next_), status_code=303)
    set_session_cookie(request, response, open_session(request, session, who))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep):
    """Ends the session for good: the id in the cookie no longer stands for anyone."""
    close_session(session, request.cookies.get(COOKIE))
    response = back_to("/")
    clear_session_cookie(request, response)
    return response


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, session: SessionDep, who: Caller = Depends(team_or_organizer)):
    known = list(session.scalars(select(Team.name).order_by(Team.name)))
    return render(request, "upload.html", who, session, teams=known, rounds=queries.rounds_list(session, who),
                  waiting=queries.waiting_uploads(session, who), max_description=MAX_DESCRIPTION)


@router.post("/upload")
def upload(
    request: Request, archive: UploadFile, name: Annotated[str | None, Form(max_length=200)] = None,
    team: Annotated[str | None, Form(max_length=200)] = None, who: Caller = Depends(team_or_organizer),
    round_name: Annotated[str | None, Form(alias="round", max_length=200)] = None,
    create: Annotated[bool, Form()] = False,
    description: Annotated[str | None, Form(max_length=MAX_DESCRIPTION)] = None,
):
    """An organizer names the team: an unknown name is refused unless "create the team" is
    ticked (a typo would otherwise make a new team), as on the token form."""
    settings = request.app.state.settings
    submission = actions.upload(settings, who, uploads.saved(settings, archive), name, team, round_name,
                                create_team=create, description=description)
    request.app.state.checker.wake()
    return back_to(f"/submissions/{submission.id}")


@router.get("/organizer", response_class=HTMLResponse)
def organizer_page(request: Request, session: SessionDep, who: Caller = Depends(organizer),
                   dataset: DatasetName = None):
    if _fresh_site(session, dataset):
        return getting_started(request, who, session)
    chosen = pick_dataset(session, dataset)
    counts = tournament_progress(session, chosen, request.app.state.settings)
    run = request.app.state.runner.state
    return render(request, "organizer.html", who, session, dataset=chosen, counts=counts, rounds=round_list(session),
                  submissions=queries.submissions(session), run=run, run_round=_round_named(session, run),
                  teams=list(session.scalars(select(Team).order_by(Team.name))))


def _round_named(session: Session, run) -> str | None:
    """The round a run of the web's runner is about (it knows its dataset's name only), so that
    the "last run" line names the round, not a dataset an organizer may not recognise."""
    name = getattr(run, "dataset", None)
    dataset_id = name and session.scalar(select(Dataset.id).where(Dataset.name == name))
    round_ = dataset_id and rounds.of_dataset(session, dataset_id)
    return round_.name if round_ else None


@router.get("/organizer/workers", response_class=HTMLResponse)
def workers_page(request: Request, session: SessionDep, settings: SettingsDep, who: Caller = Depends(organizer)):
    overview = queries.workers_overview(session, settings)
    return render(request, "workers.html", who, session, overview=overview, lease=round(settings.lease_seconds),
                  statuses=[status.value for status in JobStatus])


@router.post("/organizer/workers/{worker_id}/draining")
def workers_draining(worker_id: Id, settings: SettingsDep, draining: Annotated[bool, Form()],
                     _: Caller = Depends(organizer)):
    actions.drain(settings, worker_id, draining)
    return back_to("/organizer/workers")


@router.post("/organizer/settings")
def organizer_settings(
    request: Request, title: Annotated[str, Form(min_length=1, max_length=200)],
    leaderboards_public: Annotated[bool, Form()] = False, uploads_open: Annotated[bool, Form()] = False,
    _: Caller = Depends(organizer),
):
    actions.update_settings(request.app.state.settings, title, leaderboards_public, uploads_open)
    return back_to("/organizer")


@router.post("/organizer/run")
def organizer_run(request: Request, dataset: DatasetField = None, _: Caller = Depends(organizer)):
    chosen = actions.start_run(request.app.state.settings, request.app.state.runner, dataset or None)
    return back_to("/organizer", chosen)


def confirm(request: Request, who: Caller, session: Session, heading: str, losses: list[str], action: str,
            fields: dict, button: str, cancel: str, notes: list[str] | None = None) -> HTMLResponse:
    """The confirm step of a destructive form: what will be lost, then Confirm (posts the same
    form again with ``confirmed``) or Cancel (a link back: nothing posted, nothing done)."""
    return render(request, "confirm.html", who, session, heading=heading, losses=losses, action=action,
                  fields={k: v for k, v in fields.items() if v is not None}, button=button, cancel=cancel,
                  notes=notes or [])


Confirmed = Annotated[bool, Form()]


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


@router.post("/organizer/teams")
def organizer_team_token(request: Request, session: SessionDep, team: Annotated[str, Form(min_length=1, max_length=200)],
                         create: Annotated[bool, Form()] = False, confirmed: Confirmed = False,
                         who: Caller = Depends(organizer)):
    """Shown once on the organizer page, which is only served to organizers; never stored in clear.
    An unknown team is refused unless ``create`` is ticked; replacing a team's token (which
    revokes the old one) asks first."""
    known = teams.find(session, team)
    if known is None and not create:
        raise NotFoundError(f"no team named “{team.strip()}”; tick “create the team” to create it")
    if known is not None and known.token_sha256 and not confirmed:
        sessions = session.scalar(select(func.count(WebSession.id))
                               .where(WebSession.team_id == known.id, WebSession.expires_at > utcnow()))
        return confirm(
            request, who, session, f"Issue a new token to {known.name}?",
            [f"The current token of {known.name} stops working at once: its uploads and API calls with it are refused.",
             f"Its {_plural(sessions, 'open session')} in browsers end{'s' if sessions == 1 else ''}; "
             "the team logs in again with the new token."],
            "/organizer/teams", {"team": known.name, "create": "true" if create else None},
            "Issue a new token", "/organizer")
    issued = actions.issue_team_token(request.app.state.settings, team, create=create)
    return render(request, "token.html", who, session, status_code=201, **issued)


@router.post("/submissions/{submission_id}/rerun")
def rerun(request: Request, session: SessionDep, submission_id: Id, dataset: DatasetField = None,
          confirmed: Confirmed = False, who: Caller = Depends(organizer)):
    if not confirmed:
        return _confirm_rerun(request, who, session, submission_id, dataset, "rerun", "Forget the results and re-run")
    chosen = actions.rerun(request.app.state.settings, request.app.state.runner, submission_id, dataset or None)
    return back_to(f"/submissions/{submission_id}", chosen)


@router.post("/submissions/{submission_id}/repin")
def repin(request: Request, session: SessionDep, submission_id: Id, dataset: DatasetField = None,
          confirmed: Confirmed = False, who: Caller = Depends(organizer)):
    if not confirmed:
        first = ("First its dry run and determinism probe run with the images its tags name now; if the dry run "
                 "fails, nothing changes.")
        return _confirm_rerun(request, who, session, submission_id, dataset, "repin", "Re-pin and re-run", (first,))
    chosen = actions.repin(request.app.state.settings, request.app.state.runner, submission_id, dataset or None)
    return back_to(f"/submissions/{submission_id}", chosen)


def _confirm_rerun(request: Request, who: Caller, session: Session, submission_id: int, dataset: str | None,
                   action: str, button: str, before: tuple[str, ...] = ()) -> HTMLResponse:
    """The confirm step of a re-run or a re-pin: what it forgets on every dataset and what
    runs next, and that a run under way will refuse it."""
    submission = actions.submission(session, submission_id)
    chosen = pick_dataset(session, dataset or None)
    lost = queries.rerun_losses(session, submission)
    what = [f"{_plural(lost['done'], 'finished job')} of {lost['jobs']}"]
    if submission.kind.is_attack:
        what.append(_plural(lost["adversarial_images"], "adversarial image"))
        what.append(f"{_plural(lost['answers'], 'answer')} the defenses gave on them")
    else:
        what.append(f"{_plural(lost['answers'], 'answer')} it gave")
    results = lost["answers"] + lost["adversarial_images"]
    losses = [*before,
              f"This forgets {_plural(results, 'result')} of {submission.name} on every dataset: " + ", ".join(what) + ".",
              f"Its jobs then run again from the start on {chosen.name}; until they finish, it scores nothing."]
    verb = {"rerun": "re-run", "repin": "re-pin"}[action]
    notes = ([f"A run is under way: the {verb} will be refused until it has finished."]
             if request.app.state.runner.state.running else [])
    return confirm(request, who, session, f"{verb.capitalize()} {submission.name}?", losses,
                   f"/submissions/{submission_id}/{action}", {"dataset": chosen.name}, button,
                   f"/submissions/{submission_id}?{urlencode({'dataset': chosen.name})}", notes)


@router.post("/submissions/{submission_id}/disqualify")
def disqualify(request: Request, session: SessionDep, submission_id: Id,
               reason: Annotated[str, Form(min_length=1, max_length=2000)], confirmed: Confirmed = False,
               who: Caller = Depends(organizer)):
    if not confirmed:
        submission = actions.submission(session, submission_id)
        tournament.check_reason(reason)
        lost = queries.rerun_losses(session, submission)
        return confirm(
            request, who, session, f"Disqualify {submission.name}?",
            [f"{submission.name} (team {submission.team.name}) leaves every leaderboard, the matrix and the curves, "
             "and its jobs are no longer planned.",
             f"Its {_plural(lost['answers'], 'scored answer')} stop counting (they are kept, for review). "
             "Nothing on this site makes it accepted again.",
             f"The reason shown on its page: “{reason.strip()}”."],
            f"/submissions/{submission_id}/disqualify", {"reason": reason}, "Disqualify",
            f"/submissions/{submission_id}")
    actions.disqualify(request.app.state.settings, submission_id, reason)
    return back_to(f"/submissions/{submission_id}")
