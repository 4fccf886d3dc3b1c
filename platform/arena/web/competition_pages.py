"""The competition's own pages: its overview and rules (Markdown the organizers write), the
rounds, the data a round makes public, what every figure means, team pages and sign-up.

They read and act through the same queries and actions as the rest of the site; the
downloads (a round's images in the 2017 layout, a round's results bundle) are files built
once where they can no longer change.
"""

import uuid
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.background import BackgroundTask

from arena import REPO_ROOT, actions
from arena.admin import tournament
from arena.callers import Caller
from arena.competition import entries, rounds
from arena.config import EpsilonSchedule
from arena.data import download
from arena.db import transaction
from arena.errors import ForbiddenError, InputError, NotFoundError, QuotaError
from arena.intake import archive
from arena.models import Visibility, as_utc, utcnow
from arena.results import bundle
from arena.web import permissions, queries
from arena.web.api.parameters import Id
from arena.web.auth import client_address, organizer, team_or_organizer
from arena.web.deps import SessionDep
from arena.web.pages import CallerDep, Confirmed, confirm, local_path, markdown, render

router = APIRouter(include_in_schema=False)
RoundName = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/competition", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep, who: CallerDep):
    row = tournament.current(session)
    return render(request, "competition.html", who, session, title="Overview", body=markdown(row.overview),
                  empty="The organizers have not written an overview yet.", rounds=queries.rounds_list(session, who))


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, session: SessionDep, who: CallerDep):
    row = tournament.current(session)
    return render(request, "competition.html", who, session, title="Rules", body=markdown(row.rules),
                  empty="The organizers have not written the rules yet.", rounds=None)


#: The starter kit: the sample submissions, one or two per track, with what each does.
SAMPLES = {
    "noop": ("attack", "Copies every image unchanged: the smallest attack that is accepted."),
    "random_noise": ("attack", "Adds +ε or −ε to every pixel, the signs drawn from the image's own content, "
                               "so that it gives the same images on every machine (2017's random-noise baseline)."),
    "step_to_target": ("targeted attack", "A white-box attack on the synthetic images: moves the cells that write "
                                          "the class towards the target's by ε."),
    "decoder": ("defense", "Reads the class the synthetic images write in their cells; on photos it is a "
                           "placeholder to replace with your model."),
    "smoothed_decoder": ("defense", "Reads each cell from its mean, which averages independent noise away."),
}


@router.get("/help/submissions", response_class=HTMLResponse)
def starter_page(request: Request, session: SessionDep, who: CallerDep):
    """Taking part, for a team: the starter kit, a checklist and the limits in plain words
    (the rounds' ε and time limits, the sandbox's), linking the full reference."""
    samples = [{"name": name, "track": track, "what": what} for name, (track, what) in SAMPLES.items()]
    return render(request, "starter.html", who, session, samples=samples, rounds=queries.rounds_list(session, who),
                  limits=request.app.state.settings.sandbox)


@router.get("/help/samples/{name}.tar.gz")
def sample_archive(request: Request, name: Annotated[str, Path(max_length=100)]):
    """A sample submission, packed once as teams upload it; only the starter kit's names."""
    if name not in SAMPLES:
        raise NotFoundError(f"no sample submission named {name!r}; the starter kit: /help/submissions")
    packed = request.app.state.settings.work_dir / "starter-kit" / f"{name}.tar.gz"
    if not packed.exists():
        packed.parent.mkdir(parents=True, exist_ok=True)
        scratch = packed.with_suffix(f".{uuid.uuid4().hex}.tmp")  # two first requests at once each write their own
        archive.pack(REPO_ROOT / "submissions" / "samples" / name, scratch)
        scratch.replace(packed)
    return FileResponse(packed, media_type="application/gzip", filename=f"{name}.tar.gz")


@router.get("/rounds", response_class=HTMLResponse)
def rounds_page(request: Request, session: SessionDep, who: CallerDep,
                carried: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
                into: Annotated[str | None, Query(max_length=200)] = None,
                published: Annotated[str | None, Query(max_length=200)] = None,
                created: Annotated[str | None, Query(max_length=200)] = None,
                changed: Annotated[str | None, Query(max_length=200)] = None):
    """Every round: its data, window and time left, quotas, and a team's uploads left; for
    organizers the forms that create a round and change one; after an organizer's carry,
    publish, creation or change, what it did and what comes next (``carried``, ``into``,
    ``published``, ``created``, ``changed``: a count and names of rounds that exist, never
    text from the link)."""
    listed = queries.rounds_list(session, who)
    run_into = next((r["dataset"] for r in listed if r["name"] == into), None) if carried and who.organizer else None
    return render(request, "rounds.html", who, session, rounds=listed,
                  free_datasets=queries.datasets_without_round(session) if who.organizer else [],
                  schedules=[s.value for s in EpsilonSchedule], run_into=run_into,
                  notice=_done(listed, carried, into, published, created, changed) if who.organizer else None)


def _done(listed: list[dict], carried: int | None, into: str | None, published: str | None,
          created: str | None = None, changed: str | None = None) -> str | None:
    names = {r["name"] for r in listed}
    if created in names or changed in names:
        r = next(r for r in listed if r["name"] == (created if created in names else changed))
        return (f"Round {r['name']} {'created on dataset ' + r['dataset'] if created in names else 'changed'}: "
                f"{_settings_in_words(r)}.")
    if carried is not None and into in names:
        if carried == 0:
            return f"Nothing was carried into {into}: every counting entry named already takes part in it."
        return (f"{carried} {'entry' if carried == 1 else 'entries'} carried into {into}. Next: run its jobs "
                "(Organizer → Run) so that they are scored on its images.")
    if published in names:
        return f"Round {published} is published: its leaderboards, matrix and results bundle are public now."
    return None


def _settings_in_words(r: dict) -> str:
    """A round's window, quotas, visibility and public data, as the notice after a change says them."""
    moment = "%Y-%m-%d %H:%M UTC"
    window = ", ".join(part for part in (
        f"opens {r['opens_at']:{moment}}" if r["opens_at"] else "", f"closes {r['closes_at']:{moment}}" if r["closes_at"]
        else "no deadline") if part)
    quota = ", ".join(part for part in (f"{r['daily_quota']} a day" if r["daily_quota"] else "",
                                        f"{r['total_quota']} in all" if r["total_quota"] else "") if part) or "no limit"
    return (f"ε {', '.join(map(str, r['epsilons']))}; uploads {r['state']} ({window}); quota {quota}; "
            f"leaderboards {r['visibility']}; baselines {'ranked' if r['rank_baselines'] else 'unranked'}; "
            f"data {'public' if r['data_public'] else 'not public'}; "
            f"stateful served defenses {'refused' if r['refuse_stateful_defenses'] else 'flagged'}")


@router.get("/evaluation", response_class=HTMLResponse)
def evaluation_page(request: Request, session: SessionDep, who: CallerDep):
    """What every figure on the leaderboards means; each column header links here."""
    return render(request, "evaluation.html", who, session, rounds=queries.rounds_list(session, who))


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request, session: SessionDep, who: CallerDep):
    public = [r for r in queries.rounds_list(session, who) if r["data_public"]]
    return render(request, "data.html", who, session, rounds=public)


@router.get("/data/{round_name}.zip")
def data_archive(round_name: RoundName, session: SessionDep, request: Request) -> FileResponse:
    """The round's images and labels in the 2017 layout, when organizers made them public."""
    round_ = rounds.find(session, round_name)
    if not round_.data_public:
        raise ForbiddenError(f"the images of round {round_.name!r} are not public")
    path = download.archive(request.app.state.settings, session, round_.dataset)
    return FileResponse(path, media_type="application/zip", filename=f"{round_.name}-dataset.zip")


@router.get("/rounds/{round_name}/results.zip")
def results_bundle(round_name: RoundName, session: SessionDep, who: CallerDep, request: Request) -> FileResponse:
    """The round's results bundle: public once the round is published, for organizers before."""
    round_ = rounds.find(session, round_name)
    published = round_.visibility is Visibility.PUBLISHED
    if not published and not who.organizer:
        raise ForbiddenError(f"round {round_.name!r} is not published yet: its results bundle comes then")
    path = bundle.kept(session, request.app.state.settings, round_)
    cleanup = None if published else BackgroundTask(path.unlink, missing_ok=True)
    return FileResponse(path, media_type="application/zip", filename=f"{round_.name}-results.zip", background=cleanup)


@router.get("/teams/{name}", response_class=HTMLResponse)
def team_page(request: Request, name: Annotated[str, Path(min_length=1, max_length=200)], session: SessionDep,
              who: CallerDep):
    """A team's members and every submission it made, in every round, with where it stands."""
    team = queries.team_or_404(session, name)
    return render(request, "team.html", who, session, team=team,
                  rows=queries.team_submissions(session, request.app.state.standings, team, who))


@router.get("/my", response_class=HTMLResponse)
def my_submissions_page(request: Request, session: SessionDep, who: Caller = Depends(team_or_organizer),
                        team: Annotated[str | None, Query(min_length=1, max_length=200)] = None):
    """A team's own entries, round by round and track by track: where each stands (when the
    round's results are visible to it), which counts and the choice of it, the way to its logs.
    Organizers name the team (``?team=``)."""
    own = queries.own_team(session, who, team)
    permissions.check_own_team(who, own)
    return render(request, "my.html", who, session, team=own,
                  groups=queries.my_submissions(session, request.app.state.standings, own, who))


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, session: SessionDep, who: CallerDep):
    return render(request, "register.html", who, session)


@router.post("/register", response_class=HTMLResponse)
def register(request: Request, session: SessionDep, who: CallerDep,
             team: Annotated[str, Form(min_length=1, max_length=200)],
             member: Annotated[str, Form(min_length=1, max_length=200)],
             contact: Annotated[str | None, Form(max_length=200)] = None):
    """A new team signs itself up where organizers allow it; its token is shown once. One
    address may sign up ``ARENA_REGISTRATIONS_PER_HOUR`` teams an hour."""
    limiter, address = request.app.state.registration_limiter, client_address(request)
    if (wait := limiter.retry_after(address)) is not None:
        raise QuotaError(f"too many teams signed up from this address; try again in {wait} seconds",
                         retry_at=utcnow() + timedelta(seconds=wait))
    issued = actions.register_team(request.app.state.settings, team, member, contact)
    limiter.count(address)
    return render(request, "token.html", who, session, **issued, registered=True)


@router.post("/submissions/{submission_id}/choose")
def choose(request: Request, submission_id: Id, round_name: Annotated[str, Form(alias="round", max_length=200)],
           who: Caller = Depends(team_or_organizer),
           next_: Annotated[str | None, Form(alias="next", max_length=2000)] = None):
    """Back to the submission's page, or to the page the form was on (``next``: a path on this
    site, as after logging in), so that choosing on /my stays on /my."""
    actions.choose(request.app.state.settings, who, round_name, submission_id)
    return RedirectResponse(local_path(next_) if next_ else f"/submissions/{submission_id}", status_code=303)


@router.post("/submissions/{submission_id}/baseline")
def baseline(request: Request, submission_id: Id, baseline: Annotated[bool, Form()] = False,
             _: Caller = Depends(organizer)):
    actions.mark_baseline(request.app.state.settings, submission_id, baseline)
    return RedirectResponse(f"/submissions/{submission_id}", status_code=303)


@router.post("/organizer/rounds/{round_name}/close")
def round_close(request: Request, round_name: RoundName, _: Caller = Depends(organizer)):
    actions.close_round(request.app.state.settings, round_name)
    return RedirectResponse("/rounds", status_code=303)


@router.post("/organizer/rounds/{round_name}/publish")
def round_publish(request: Request, round_name: RoundName, confirmed: Confirmed = False,
                  who: Caller = Depends(organizer)):
    """Publishing cannot be undone: the form asks first, saying what it does."""
    settings = request.app.state.settings
    if not confirmed:
        with transaction(settings) as session:
            round_ = rounds.find(session, round_name)
            count = len(entries.accepted(session, round_.dataset_id))
            return confirm(request, who, session, f"Publish round {round_.name}?", [
                "This cannot be undone: the round is frozen, and nothing changes its figures any more.",
                f"Its leaderboards, error matrix and results bundle become public, with its {count} accepted "
                f"{'entry' if count == 1 else 'entries'}.",
            ], f"/organizer/rounds/{quote(round_.name)}/publish", {}, "Publish", "/rounds",
                notes=["Publishing is refused while any of its jobs is not done."])
    name = actions.publish_round(settings, round_name)
    return RedirectResponse(f"/rounds?{urlencode({'published': name})}", status_code=303)


@router.post("/organizer/rounds/{round_name}/carry")
def round_carry(request: Request, round_name: RoundName,
                counting_from: Annotated[str, Form(min_length=1, max_length=200)], _: Caller = Depends(organizer)):
    carried = actions.carry(request.app.state.settings, round_name, [], counting_from)
    return RedirectResponse(f"/rounds?{urlencode({'carried': len(carried), 'into': round_name.strip()})}",
                            status_code=303)


#: A moment from a form's ``datetime-local`` field, read as UTC.
When = Annotated[str | None, Form(max_length=40)]
#: Uploads per team and track; blank: no limit (when creating) or unchanged (when changing).
QuotaField = Annotated[int | None, Form()]


def _when(text: str | None, field: str) -> datetime | None:
    """A form's date and time (``2026-12-01T12:00``), in UTC; blank: not given."""
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{field} must be a date and time in UTC like 2026-12-01T12:00, not “{text[:40]}”") from None
    return as_utc(moment)


@router.post("/organizer/rounds")
def round_create(request: Request, name: Annotated[str, Form(min_length=1, max_length=200)],
                 dataset: Annotated[str, Form(min_length=1, max_length=200)],
                 eps: Annotated[str | None, Form(max_length=200)] = None,
                 eps_schedule: Annotated[EpsilonSchedule | None, Form()] = None,
                 seconds_per_image: Annotated[float | None, Form()] = None,
                 opens: When = None, closes: When = None, hidden: Annotated[bool, Form()] = False,
                 daily_quota: QuotaField = None, total_quota: QuotaField = None, public_data: Annotated[bool, Form()] = False,
                 _: Caller = Depends(organizer)):
    """What ``arena round create`` does (``actions.create_round``), and its public data."""
    round_ = actions.create_round(
        request.app.state.settings, name, dataset, epsilons=rounds.parse_epsilons(eps, "ε"), eps_schedule=eps_schedule,
        seconds_per_image=seconds_per_image, opens_at=_when(opens, "opens"), closes_at=_when(closes, "closes"),
        hidden=hidden, daily_quota=daily_quota, total_quota=total_quota, data_public=public_data)
    return RedirectResponse(f"/rounds?{urlencode({'created': round_.name})}", status_code=303)


@router.post("/organizer/rounds/{round_name}/set")
def round_set(request: Request, round_name: RoundName, opens: When = None, closes: When = None,
              visibility: Annotated[Visibility | None, Form()] = None,
              daily_quota: QuotaField = None, total_quota: QuotaField = None,
              no_daily_quota: Annotated[bool, Form()] = False, no_total_quota: Annotated[bool, Form()] = False,
              rank_baselines: Annotated[bool, Form()] = False,
              public_data: Annotated[bool, Form()] = False,
              refuse_stateful_defenses: Annotated[bool, Form()] = False, _: Caller = Depends(organizer)):
    """What ``arena round set`` does (``actions.update_round``): a blank field leaves its
    setting as it is and a ticked "no limit" takes a quota away (``--no-daily-quota``); the
    baselines', public-data and stateful-defenses boxes are the round's settings as the form
    shows them."""
    round_ = actions.update_round(request.app.state.settings, round_name, opens_at=_when(opens, "opens"),
                                  closes_at=_when(closes, "closes"), visibility=visibility,
                                  daily_quota=rounds.quota_change(daily_quota, no_daily_quota, "daily"),
                                  total_quota=rounds.quota_change(total_quota, no_total_quota, "total"),
                                  rank_baselines=rank_baselines, data_public=public_data,
                                  refuse_stateful_defenses=refuse_stateful_defenses)
    return RedirectResponse(f"/rounds?{urlencode({'changed': round_.name})}", status_code=303)


@router.post("/organizer/pages")
def organizer_pages(request: Request, overview: Annotated[str, Form(max_length=100_000)] = "",
                    rules: Annotated[str, Form(max_length=100_000)] = "",
                    self_registration: Annotated[bool, Form()] = False, _: Caller = Depends(organizer)):
    actions.update_pages(request.app.state.settings, overview, rules, self_registration)
    return RedirectResponse("/competition", status_code=303)
