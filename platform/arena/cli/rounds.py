"""``arena round``: a round's dataset, ε, schedule, time limit, window, quotas and visibility;
closing, publishing, carrying entries, its results bundle, which entry counts, replaying a
published round from its bundle."""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import actions, db
from arena.callers import ORGANIZER
from arena.cli.common import (
    Commands,
    console,
    database,
    print_rows,
    run_with_progress,
    settings,
    submission_id_named,
)
from arena.competition import entries, rounds
from arena.config import EpsilonSchedule
from arena.models import Round, Visibility, utcnow
from arena.results import bundle
from arena.tools import replay

round_app = Commands(help="Rounds: their datasets, upload windows, quotas and publication.", no_args_is_help=True)


When = Annotated[Optional[datetime], typer.Option(formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
                                                 help="UTC, e.g. 2026-12-01T12:00.")]


Quota = Annotated[Optional[int], typer.Option(min=1, help="Uploads per team and track (default: no limit).")]
NoQuota = Annotated[bool, typer.Option(help="Take the quota away: no limit.")]


RoundName = Annotated[str, typer.Argument(help="Round name.")]


def _round(session: Session, name: str) -> Round:
    return rounds.find(session, name)


def _time_left(round_: Round) -> str:
    window = rounds.window(round_)
    state = window.state(utcnow())
    if state == "open" and window.closes_at is not None:
        return f"open, closes in {str(window.closes_at - utcnow()).split('.')[0]}"
    return state


@round_app.command("create")
def round_create(
    name: RoundName,
    dataset: Annotated[str, typer.Option(help="The round's dataset (one of its own: results are kept per dataset).")],
    eps: Annotated[Optional[str], typer.Option(help="Epsilons, e.g. 2,4,8,16 (default: ARENA_EPSILONS).")] = None,
    eps_schedule: Annotated[Optional[EpsilonSchedule], typer.Option(
        help="all: every epsilon on every batch; round_robin: batch k at the k-th, as the 2017 final "
             "(default: ARENA_EPS_SCHEDULE).")] = None,
    seconds_per_image: Annotated[Optional[float], typer.Option(help="Time limit per image (default: the setting).")] = None,
    opens: When = None,
    closes: When = None,
    hidden: Annotated[bool, typer.Option(help="Leaderboards only for organizers until published.")] = False,
    daily_quota: Quota = None,
    total_quota: Quota = None,
) -> None:
    """Open a round on a dataset, with its epsilons, their schedule, time limit, upload window and quotas."""
    round_ = actions.create_round(
        database(), name, dataset, epsilons=rounds.parse_epsilons(eps, "--eps"), eps_schedule=eps_schedule,
        seconds_per_image=seconds_per_image, opens_at=opens, closes_at=closes, hidden=hidden,
        daily_quota=daily_quota, total_quota=total_quota)
    console.print(f"round {round_.name!r} on {dataset!r}: epsilons {round_.epsilons}, {_time_left(round_)}; "
                  f"batches attacked at {_schedule(round_)}")


def _schedule(round_: Round) -> str:
    return "every ε" if round_.eps_schedule is EpsilonSchedule.ALL else "one ε each, in turn"


@round_app.command("list")
def round_list() -> None:
    """Every round with its window, quotas, visibility and entries."""
    with db.transaction(database()) as session:
        rows = [[r.name, r.dataset.name, f"{', '.join(map(str, r.epsilons))} ({_schedule(r)})", f"{r.seconds_per_image:g} s/image",
                 _time_left(r), _quotas(r), r.visibility.value, str(len(entries.accepted(session, r.dataset_id)))]
                for r in session.scalars(select(Round).order_by(Round.id))]
    print_rows(["Round", "Dataset", "ε", "Time limit", "Uploads", "Quotas", "Leaderboards", "Entries"], rows,
                whole={"Uploads"})


def _quotas(round_: Round) -> str:
    """Uploads a team may make per track: "3 a day, 10 in all", or "none"."""
    said = [f"{round_.daily_quota} a day" if round_.daily_quota else "", f"{round_.total_quota} in all" if round_.total_quota else ""]
    return ", ".join(part for part in said if part) or "none"


@round_app.command("set")
def round_set(
    name: RoundName,
    opens: When = None,
    closes: When = None,
    visibility: Annotated[Optional[Visibility], typer.Option(help="live or hidden (publish with `round publish`).")] = None,
    daily_quota: Quota = None,
    total_quota: Quota = None,
    no_daily_quota: NoQuota = False,
    no_total_quota: NoQuota = False,
    rank_baselines: Annotated[Optional[bool], typer.Option(help="Give baselines a rank like teams.")] = None,
    public_data: Annotated[Optional[bool], typer.Option(
        help="Let anyone download the round's images and labels (a development set; never a hidden final set).")] = None,
    refuse_stateful_defenses: Annotated[Optional[bool], typer.Option(
        help="Reject at intake a served defense whose dry run answered differently when asked again, in another "
             "order or in one query (default: accept it, flagged).")] = None,
) -> None:
    """Change a round's window, quotas, leaderboard visibility, whether its data is public or
    whether stateful served defenses are refused."""
    round_ = actions.update_round(database(), name, opens_at=opens, closes_at=closes, visibility=visibility,
                                  daily_quota=rounds.quota_change(daily_quota, no_daily_quota, "daily"),
                                  total_quota=rounds.quota_change(total_quota, no_total_quota, "total"),
                                  rank_baselines=rank_baselines, data_public=public_data,
                                  refuse_stateful_defenses=refuse_stateful_defenses)
    console.print(f"round {round_.name!r}: {_time_left(round_)}, leaderboards {round_.visibility.value}")


@round_app.command("close")
def round_close(name: RoundName) -> None:
    """Refuse new uploads from now on (results keep being computed)."""
    actions.close_round(database(), name)
    console.print(f"round {name!r} is closed to uploads")


@round_app.command("publish")
def round_publish(name: RoundName) -> None:
    """Freeze a round whose jobs are all done and show its leaderboards to everyone."""
    actions.publish_round(database(), name)
    console.print(f"round {name!r} is published")


@round_app.command("carry")
def round_carry(
    name: Annotated[str, typer.Argument(help="The round to carry submissions into.")],
    submissions: Annotated[Optional[list[str]], typer.Argument(help="Submission names.")] = None,
    counting_from: Annotated[Optional[str], typer.Option(
        "--counting-from", help="Carry every team's counting submissions of this round.")] = None,
) -> None:
    """Enter stored submissions into a round without a new upload; run them with `arena run`."""
    carried = actions.carry(database(), name, submissions or [], counting_from)
    console.print(f"carried {len(carried)} submissions into {name!r}: {', '.join(carried) or 'none new'}")


@round_app.command("bundle")
def round_bundle(name: RoundName, target: Annotated[Path, typer.Argument(help="The .zip to write.")]) -> None:
    """Write the round's results bundle: the 2017 result files, per-image Parquet and a manifest
    (round settings, dataset hash, every entry's code hash and container, platform settings)."""
    with db.transaction(database()) as session:
        bundle.write(session, settings(), _round(session, name), target)
    console.print(f"wrote {target}")


@round_app.command("choose")
def round_choose(name: RoundName, submission: Annotated[str, typer.Argument(help="Submission name.")]) -> None:
    """Make a submission the one that counts for its team and track in the round."""
    actions.choose(database(), ORGANIZER, name, submission_id_named(submission))
    console.print(f"{submission} counts for its team in {name!r}")


@round_app.command("replay")
def round_replay(
    bundle_file: Annotated[Path, typer.Argument(help="The published round's results bundle (.zip).")],
    submissions: Annotated[Path, typer.Option(
        help="A folder holding the round's submissions: each as the archive uploaded (.zip, .tar, .tar.gz) or "
             "its unpacked folder, under any name; matched to the bundle's entries by code hash.")],
    dataset: Annotated[Optional[str], typer.Option(
        help="The round's dataset, imported here (default: the bundle's dataset name).")] = None,
) -> None:
    """Run a published round again from its results bundle, on this installation, with the same
    images, code, pinned images, settings, input names and packs, and compare its matrices
    with the bundle's cell by cell: a table of the differing cells and exit 1 if any differ.
    Import the round's dataset first (`arena dataset import`); see docs/operations.md."""
    published = replay.Bundle.read(bundle_file)
    prepared = replay.prepare(database(), published, submissions, dataset)
    console.print(f"round {prepared.round!r} on dataset {prepared.dataset!r}: {prepared.entries} entries with the "
                  "bundle's naming key, packs and images")
    run_with_progress(prepared.dataset)
    compared = replay.compare(database(), prepared.dataset, published)
    if compared.differences:
        print_rows(["Matrix", "Attack", "Defense", "Published", "Replayed"],
                   [[d.matrix, d.attack, d.defense, d.published, d.replayed] for d in compared.differences],
                   whole={"Matrix"})
        console.print(f"[bold red]{len(compared.differences)} of {compared.cells} cells differ[/] from the bundle's")
        raise typer.Exit(1)
    console.print(f"the same matrices: all {compared.cells} cells of {compared.files} matrix files equal the bundle's")
