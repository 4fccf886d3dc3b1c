"""The ``arena`` command: thin wrappers that parse options, call the domain modules, print."""

import functools
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    track,
)
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import actions, db, tables
from arena.admin import teams
from arena.callers import ORGANIZER
from arena.competition import entries, rounds
from arena.competition.entries import Scope
from arena.config import EpsilonSchedule, Settings, get_settings
from arena.data.dataset import (
    DatasetError,
    find_dataset,
    read_competition_csv,
    read_photo_folder,
    store_dataset,
    synthesize,
)
from arena.errors import ArenaError, InputError, NotFoundError
from arena.execution.run import run as run_missing
from arena.execution.summary import RunSummary
from arena.models import Dataset, Round, Submission, SubmissionStatus, Visibility, as_utc, utcnow
from arena.results import bundle, csv_files, tallies
from arena.results.export import export as export_results
from arena.results.export import leaderboard_file
from arena.results.judging import MatrixValue
from arena.results.leaderboards import Leaderboards
from arena.results.outcomes import ImageOutcomes
from arena.results.robustness import robust_accuracy, unique_contributions
from arena.results.scoring import Standings
from arena.sandbox import pinning
from arena.tools import base_image


class Commands(typer.Typer):
    """A command group whose every command reports expected failures the same way."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda function: register(_reported(function))


def _reported(function: Callable) -> Callable:
    """Any ``ArenaError`` becomes one red line and exit code 1, never a traceback; anything
    else is a bug and keeps its traceback."""

    @functools.wraps(function)
    def command(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ArenaError as exc:
            # soft wrap: the terminal folds a long message, so a path in it copies whole
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return command


app = Commands(help="Arena: attack-defense tournaments in the NIPS 2017 competition format.", no_args_is_help=True)
db_app = Commands(help="The database schema.", no_args_is_help=True)
dataset_app = Commands(help="Import and list image datasets.", no_args_is_help=True)
images_app = Commands(help="Container images for the sample submissions.", no_args_is_help=True)
submissions_app = Commands(help="List and inspect submissions.", no_args_is_help=True)
teams_app = Commands(help="Teams and their web tokens.", no_args_is_help=True)
scores_app = Commands(help="The tallies that scores are computed from.", no_args_is_help=True)
round_app = Commands(help="Rounds: their datasets, upload windows, quotas and publication.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dataset_app, name="dataset")
app.add_typer(images_app, name="images")
app.add_typer(submissions_app, name="submissions")
app.add_typer(teams_app, name="teams")
app.add_typer(scores_app, name="scores")
app.add_typer(round_app, name="round")

# The terminal's size (COLUMNS first); a pipe or a log without COLUMNS gets 100 columns, not rich's 80.
# Both given: with the width alone, rich still answers 80 columns on a "dumb" terminal.
console = Console(width=(size := shutil.get_terminal_size((100, 24))).columns, height=size.lines)
RoundForDataset = Annotated[Optional[str], typer.Option(
    "--round", help="Name of the round opened on the dataset (default: the dataset's name; \"\" for none).")]
DatasetOption = Annotated[Optional[str], typer.Option("--dataset", help="Dataset name; optional when there is one.")]


def settings() -> Settings:
    return get_settings()


def database() -> Settings:
    """The settings, once the database is known to be at the current schema (``arena db
    upgrade`` is the one command that changes it)."""
    db.require_schema(settings())
    return settings()


def _submission(session: Session, name: str) -> Submission:
    submission = session.scalar(select(Submission).where(Submission.name == name))
    if submission is None:
        raise NotFoundError(f"no submission named {name!r}")
    return submission


def _submission_id(name: str) -> int:
    with db.transaction(database()) as session:
        return _submission(session, name).id


def _track(items: Iterable, description: str) -> Iterable:
    return track(items, description=description, console=console, transient=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest revision: the one command that changes it."""
    db.upgrade(settings())
    console.print(f"database at {settings().resolved_database_url} is up to date")


@scores_app.command("rebuild")
def scores_rebuild() -> None:
    """Recompute every tally from the stored per-image results (they are kept up to date as
    results land; this is the check and the repair)."""
    with db.transaction(database()) as session:
        cells = tallies.rebuild(session)
    console.print(f"tallies rebuilt from the stored results: {cells} matrix cells")


@dataset_app.command("import")
def dataset_import(
    folder: Annotated[Path, typer.Argument(help="Folder with the CSV and the images.")],
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="The labels CSV (default: the only *.csv in FOLDER).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder (default: FOLDER/images if present, else FOLDER).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Dataset name (default: the folder's name).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for TargetClass where the CSV has none.")] = 0,
    round_name: RoundForDataset = None,
) -> None:
    """Import a dataset: the 2017 format (ImageId,...,TrueLabel,TargetClass with ImageId.png files,
    299x299) or photos of any size with a labels CSV (filename + TrueLabel or class_index), which
    are centre-cropped and resized to 299x299."""
    csv_path = csv_file or _only_csv(folder)
    image_dir = images or (folder / "images" if (folder / "images").is_dir() else folder)
    header = csv_path.open(encoding="utf-8-sig").readline() if csv_path.is_file() else ""
    if "ImageId" in header.strip().split(","):
        rows = read_competition_csv(csv_path, image_dir, seed=seed, track=_track)
    else:
        rows = read_photo_folder(image_dir, csv_path, seed=seed, track=_track)
    _store(rows, name or folder.resolve().name, round_name)


def _only_csv(folder: Path) -> Path:
    found = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if len(found) != 1:
        raise DatasetError(f"{folder}: expected one .csv file, found {len(found)}; pass --csv", [])
    return found[0]


def _store(rows, name: str, round_name: str | None) -> None:
    """Store the dataset and, unless told not to, open a round on it with the settings' epsilons
    and time limit (``arena round set`` changes its window, quotas and visibility)."""
    dataset = store_dataset(database(), name, rows)
    console.print(f"imported dataset {dataset.name!r}: {len(rows)} images in batches of {settings().batch_size}")
    if round_name != "":
        with db.transaction(database()) as session:
            round_ = rounds.create(session, settings(), round_name or name, session.get_one(Dataset, dataset.id))
            console.print(f"round {round_.name!r} open for uploads, epsilons {round_.epsilons}")


@dataset_app.command("synth")
def dataset_synth(
    count: Annotated[int, typer.Argument(help="Number of images.", min=1)],
    name: Annotated[str, typer.Option(help="Dataset name.")] = "synthetic",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same images.")] = 0,
    round_name: RoundForDataset = None,
) -> None:
    """Make a synthetic dataset whose class is written in the picture (see dataset/README.md)."""
    _store(synthesize(count, seed=seed, track=_track), name, round_name)


@dataset_app.command("list")
def dataset_list() -> None:
    """List imported datasets."""
    with db.transaction(database()) as session:
        rows = [[d.name, str(len(d.batches)), str(sum(len(b.images) for b in d.batches))]
                for d in session.scalars(select(Dataset).order_by(Dataset.id))]
    _print_rows(["Dataset", "Batches", "Images"], rows)


@images_app.command("build")
def images_build(
    recipes: Annotated[Optional[list[str]], typer.Argument(help="Recipes in submissions/base-images (default: python).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild images that already exist.")] = False,
) -> None:
    """Build base images offline: debootstrap a Debian rootfs, import it, build the recipes FROM it
    (`arena images build python torch` for the real-model samples too)."""
    built = base_image.build(settings(), recipes, rebuild=rebuild, say=console.print)
    console.print(f"base images ready ({len(built)} built, the rest already there)")


@images_app.command("app")
def images_app_build(
    rebuild: Annotated[bool, typer.Option(help="Build it even when this tree built the image there is.")] = False,
) -> None:
    """Build arena/app, the platform's own image (docker-compose.yml, worker hosts), offline;
    kept while the tree it was built from is unchanged."""
    tag = base_image.build_app(rebuild=rebuild, say=console.print)
    console.print(f"{tag} ready")


@app.command()
def submit(
    archive: Annotated[Path, typer.Argument(help="A .zip, .tar or .tar.gz holding metadata.json and the code.")],
    team: Annotated[str, typer.Option(help="The team that owns the submission.")],
    name: Annotated[Optional[str], typer.Option(help="Submission name (default: the archive's name).")] = None,
    round_name: Annotated[Optional[str], typer.Option("--round", help="Round to enter (default: the one open now).")] = None,
) -> None:
    """Take a submission into a round: safe unpacking, metadata check, dedup, deadline and
    quota, and a dry run on one batch."""
    with console.status("dry run on the sample batch..."):
        submission = actions.upload(database(), ORGANIZER, nullcontext(archive), name, team, round_name)
    _print_submission(submission)
    if submission.status is not SubmissionStatus.ACCEPTED:
        raise typer.Exit(1)


def _print_submission(submission: Submission) -> None:
    colour = "green" if submission.status is SubmissionStatus.ACCEPTED else "red"
    console.print(f"{submission.name} ({submission.kind.value}, team {submission.team.name}): [{colour}]{submission.status.value}[/]")
    report = submission.validation_report or {}
    if report:
        console.print(f"  dry run: {report['images']} images in {report['seconds']} s (limit {report['time_limit']} s), exit code {report['exit_code']}")
    for problem in report.get("problems", []):
        console.print(f"  - {problem}", highlight=False)
    for note in report.get("notes", []):
        console.print(f"  [dim]note: {note}[/]", highlight=False)
    if probe := report.get("determinism"):
        flag = "[yellow]non-deterministic[/]" if probe["differing"] else "deterministic"
        console.print(f"  determinism probe: {flag}, {probe['differing']} of {probe['images']} images differed "
                      f"when the batch ran again ({probe['seconds']} s more)")
    for field, (tag, pinned) in submission.images.items():
        console.print(f"  {field}: {tag}\n    pinned to {pinned or 'nothing yet (pinned by its first run)'}", highlight=False)
    if report and not report["passed"] and report.get("log_tail"):
        console.print("  log tail:\n" + report["log_tail"][-1500:], highlight=False)


@submissions_app.command("list")
def submissions_list() -> None:
    """List submissions with their kind, team and status."""
    with db.transaction(database()) as session:
        rows = [[str(s.id), s.name, s.kind.value.replace("_", " "), s.team.name, s.status.value,
                 _nondeterministic(s.nondeterministic_share), s.reason or ""]
                for s in session.scalars(select(Submission).order_by(Submission.id))]
    _print_rows(["Id", "Submission", "Kind", "Team", "Status", "Non-deterministic", "Reason"], rows)


def _nondeterministic(share: float | None) -> str:
    return f"{share:.0%} of images" if share else ""


def _print_rows(headers: list[str], rows: list[list[str | Text]], whole: set[str] = frozenset()) -> None:
    """A table of ``rows``; names, and the columns in ``whole``, are never wrapped."""
    shown = tables.table()
    tables.add_columns(shown, headers, rows, names=tables.NAME_COLUMNS | whole)
    console.print(shown)


@submissions_app.command("images")
def submissions_images() -> None:
    """Check every accepted submission's pinned images against what their tags name on this
    engine now; exit code 1 when a tag has moved (runs keep the pinned image: `arena
    submissions repin NAME` takes the new one and re-runs the submission)."""
    with db.transaction(database()) as session:
        accepted = session.scalars(select(Submission).where(Submission.status == SubmissionStatus.ACCEPTED)
                                   .order_by(Submission.id))
        checks = [(s.name, check) for s in accepted for check in pinning.check(s.images)]
    rows = [[name, check.field, check.tag, _short(check.pinned), _short(check.current),
             Text(check.state.value, style="red" if check.state is pinning.PinState.DRIFTED else "")]
            for name, check in checks]
    _print_rows(["Submission", "Field", "Tag", "Pinned", "Tag now", "State"], rows, whole={"Pinned", "Tag now", "State"})
    drifted = sorted({name for name, check in checks if check.state is pinning.PinState.DRIFTED})
    if drifted:
        console.print(f"[red]tags moved since pinning:[/] {', '.join(drifted)}: they still run their pinned images")
        raise typer.Exit(1)


def _short(image_id: str | None) -> str:
    """An image id as docker shows it: its first 12 hex digits."""
    return image_id.removeprefix("sha256:")[:12] if image_id else ""


@submissions_app.command("repin")
def submissions_repin(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    dataset: DatasetOption = None,
) -> None:
    """Pin a submission to the images its tags name now: dry run and determinism probe with
    them, then its results are forgotten and it runs again (nothing changes if the dry run fails)."""
    submission_id = _submission_id(name)
    console.print("dry run with the new image...")
    runner = _InTheForeground(before=lambda: _say_pinned(submission_id))
    actions.repin(database(), runner, submission_id, dataset)


def _say_pinned(submission_id: int) -> None:
    with db.transaction(database()) as session:
        submission = session.get(Submission, submission_id)
        console.print(f"{submission.name} is pinned to {', '.join(submission.pins.values())}; its results are "
                      "forgotten", highlight=False)


@submissions_app.command("show")
def submissions_show(name: Annotated[str, typer.Argument(help="Submission name.")]) -> None:
    """Show a submission's status and its dry-run report."""
    with db.transaction(database()) as session:
        _print_submission(_submission(session, name))


def _run(dataset: str | None, wait: bool = True) -> RunSummary:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("jobs", total=None)

        def update(done: int, total: int, message: str) -> None:
            progress.update(task, completed=done, total=total, description=f"jobs ({message})")

        summary = run_missing(database(), dataset, update, wait=wait)
    console.print(summary.describe())
    for error in summary.platform_errors:
        console.print(f"[yellow]platform error:[/] {error}")
    return summary


@app.command()
def run(
    dataset: DatasetOption = None,
    wait: Annotated[bool, typer.Option(help="With a broker: follow the workers until done, or only queue.")] = True,
) -> None:
    """Run every job that is missing: new submissions get only their row or column. In-process, or
    on Celery workers when ARENA_BROKER_URL is set."""
    summary = _run(dataset, wait)
    if summary.platform_errors:
        raise typer.Exit(2)


@app.command()
def rerun(
    submission: Annotated[Optional[str], typer.Option(help="Recompute only this submission's jobs.")] = None,
    dataset: DatasetOption = None,
) -> None:
    """Forget stored results (of one submission, or all) and compute them again; refused while
    another runner (`arena run`, the web's, a worker) holds a job of the dataset."""
    runner = _InTheForeground()
    actions.rerun(database(), runner, None if submission is None else _submission_id(submission), dataset)
    if runner.summary is not None and runner.summary.platform_errors:
        raise typer.Exit(2)


class _InTheForeground:
    """The command line's runner for the actions: the jobs run here, with progress bars
    (``before`` says what ``first`` did, once it is done)."""

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        self.before = before
        self.summary: RunSummary | None = None

    def start(self, dataset_name: str | None, first: Callable[[], None] | None = None) -> bool:
        if first is not None:
            first()
        if self.before is not None:
            self.before()
        self.summary = _run(dataset_name)
        return True


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Packs this worker runs at once (containers on this host).")] = 2,
    queues: Annotated[Optional[str], typer.Option(help="Queues to take packs from (default: cpu, or gpu with --gpu).")] = None,
    gpu: Annotated[bool, typer.Option(help="This host has GPUs: give them to containers and run container_gpu images.")] = False,
) -> None:
    """Start a Celery worker that runs packs from ARENA_BROKER_URL on this host's Docker engine."""
    own = database()
    if not own.broker_url:
        raise ArenaError("set ARENA_BROKER_URL (for instance redis://localhost:6379/0) to start a worker")
    if gpu:  # this worker's own copy: nothing else sees the change
        own = own.model_copy(update={"sandbox": own.sandbox.model_copy(update={"gpu": True})})
    from arena.execution.broker import celery_app  # imports Celery only where it is used

    queues = queues or ("gpu" if gpu else "cpu")
    celery_app(own).worker_main(["worker", "--pool", "threads", "--concurrency", str(concurrency), "--queues", queues,
                                       "--loglevel", "INFO", "--without-gossip", "--without-mingle"])


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web application: leaderboards, error matrix, submission and organizer pages, REST API."""
    from arena.web.app import create_app
    from arena.web.serving import server

    application = create_app(settings())
    if settings().organizer_token is None:
        console.print(f"organizer credential for this run (set ARENA_ORGANIZER_TOKEN to choose it): "
                      f"[bold]{application.state.organizer_token}[/]", highlight=False)
    console.print(f"serving on http://{host}:{port}/ (API docs at /docs); visitors reach it as "
                  f"{', '.join(settings().allowed_hosts)} (ARENA_ALLOWED_HOSTS)", highlight=False)
    server(application, host, port).run()


@teams_app.command("token")
def teams_token(name: Annotated[str, typer.Argument(help="Team name (created if new).")]) -> None:
    """Issue a team's web token (shown once; the team's earlier token stops working)."""
    issued = actions.issue_team_token(database(), name)
    console.print(f"token for team {issued['team']!r}: [bold]{issued['token']}[/]", highlight=False)


@app.command()
def disqualify(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    reason: Annotated[str, typer.Option(help="Why; shown on the submission's page.")],
) -> None:
    """Take a submission out of every table and of planning (its stored results are kept)."""
    actions.disqualify(database(), _submission_id(name), reason)
    console.print(f"{name} is disqualified: {reason}")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


TrackName = StrEnum("TrackName", {name: name for name in tables.TRACKS})


@app.command()
def leaderboard(
    dataset: DatasetOption = None,
    every: Annotated[bool, typer.Option("--all", help="Every accepted entry, not one per team and track.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, each figure with its interval's bounds.")] = False,
    output: Annotated[Format, typer.Option("--format", help="table for people; csv or json (every column) for scripts.")]
    = Format.table,
    track: Annotated[Optional[TrackName], typer.Option(help="One leaderboard only (default: all three).")] = None,
) -> None:
    """Print the defense, attack and targeted-attack leaderboards and the error matrix: one
    row per team and track (its counting submission), or every entry with --all; each figure
    with its 95% bootstrap interval over images (docs/scoring.md)."""
    with db.transaction(database()) as session:
        chosen = find_dataset(session, dataset)
        standings = Standings.compute(session, chosen, Scope.ALL if every else Scope.COUNTING)
        boards = Leaderboards.load(session, chosen, standings)
    names = [track.value] if track else list(tables.TRACKS)
    if output is Format.csv:
        stacked = [leaderboard_file(boards.track(name)).assign(track=name) for name in names]
        frame = pd.concat(stacked, ignore_index=True)
        sys.stdout.write(csv_files.write(frame[["track", *frame.columns.drop("track")]]))
        return
    if output is Format.json:
        records = {name: json.loads(boards.track(name).to_json(orient="records")) for name in names}
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
        return
    show = functools.partial(tables.print_wide, console) if wide else console.print
    for name in names:
        show(tables.leaderboard(boards.track(name), name, wide=wide))
        console.print()
    if not track:
        console.print("Worst case per defense and unique contributions per attack: `arena robust`.", style="dim")
        console.print(tables.matrix(standings.matrix(MatrixValue.ERROR), "Error matrix (attack x defense, all eps)",
                                    console))


@app.command()
def robust(
    attack: Annotated[Optional[list[str]], typer.Option(help="Count only these attacks (repeat it); default: all.")] = None,
    dataset: DatasetOption = None,
) -> None:
    """Print each defense's worst-case robust accuracy, overall and per eps, and each attack's
    unique contribution, over every accepted attack or the chosen ones (docs/scoring.md)."""
    with db.transaction(database()) as session:
        chosen = find_dataset(session, dataset)
        standings = Standings.compute(session, chosen)
        ids = None if not attack else [_accepted_attack(session, name).id for name in attack]
        outcomes = ImageOutcomes.load(session, chosen, standings.names, attacks=ids)
    over = "every accepted attack" if not attack else ", ".join(attack)
    worst = robust_accuracy(outcomes, standings.names, standings.epsilons).sort_values("worst_case", ascending=False)
    console.print(tables.figures(
        worst, f"Worst-case robust accuracy over {over}",
        "Worst case: % of (image, ε) that no attack broke, over the settled ones (Over: how many, every attack "
        "answered), overall and at each ε. ±: half the 95% bootstrap interval over images (bounds: `arena export`).",
        {"worst_case": "Worst case %", "worst_case_scored": "Over",
         **{f"worst_case_eps={e}": f"ε {e} %" for e in standings.epsilons}}))
    unique = unique_contributions(outcomes, standings.names, standings.epsilons).sort_values("unique", ascending=False)
    console.print(tables.figures(
        unique, f"Unique contributions among {over}",
        "Unique: (defense, ε, image) that only this attack broke (a misclassification, for targeted attacks too), "
        "overall and at each ε. ±: half the 95% bootstrap interval over images (bounds: `arena export`).",
        {"unique": "Unique", **{f"unique_eps={e}": f"ε {e}" for e in standings.epsilons}}))


def _accepted_attack(session: Session, name: str) -> Submission:
    submission = _submission(session, name)
    if not submission.kind.is_attack or submission.status is not SubmissionStatus.ACCEPTED:
        raise InputError(f"{name} is not an accepted attack ({submission.kind.value}, {submission.status.value})")
    return submission


@app.command()
def matrix(
    value: Annotated[MatrixValue, typer.Option(help="What a cell counts.")] = MatrixValue.ERROR,
    epsilon: Annotated[Optional[int], typer.Option("--eps", help="One epsilon only.")] = None,
    dataset: DatasetOption = None,
) -> None:
    """Print the attack x defense matrix of errors, correct answers or target hits."""
    with db.transaction(database()) as session:
        standings = Standings.compute(session, find_dataset(session, dataset))
    title = f"{value.value} matrix" + (f" at eps={epsilon}" if epsilon is not None else " (all eps)")
    console.print(tables.matrix(standings.matrix(value, epsilon), title, console))


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to write the CSV and Parquet files into.")],
    dataset: DatasetOption = None,
) -> None:
    """Write the 2017 result files (matrices, three results CSVs) and per-image results as Parquet."""
    with db.transaction(database()) as session:
        written = export_results(session, find_dataset(session, dataset), directory)
    console.print(f"wrote {len(written)} files to {directory}")


@app.command()
def demo(
    images: Annotated[int, typer.Option(help="Synthetic images (batches of 100).")] = 200,
) -> None:
    """The whole tournament on synthetic data: base images, dataset, sample submissions, run, leaderboards."""
    from arena.tools.demo import (
        run_demo,  # kept apart: the demo is a script over the commands above
    )

    run_demo(settings(), images, console, _run)
    leaderboard(None, every=True)


@app.command()
def study(
    images: Annotated[int, typer.Option(help="Real photos to import (spread over the classes).", min=1)] = 160,
    photos: Annotated[Optional[Path], typer.Option(help="The imagenet-sample-1000 folder.")] = None,
    defense: Annotated[Optional[list[Path]], typer.Option(
        help="An extra defense submission folder (repeatable), e.g. one that loads adversarially trained weights.")] = None,
    report: Annotated[Path, typer.Option(help="Where to write the report (plots go beside it).")] = Path("docs/study.md"),
) -> None:
    """The real-model study: EfficientNet-Lite attacks and defenses, with and without a median
    filter, on real ImageNet photos at every eps; writes a report with plots. Resumable."""
    from arena.tools.study import DEFAULT_PHOTOS, run_study
    from arena.tools.study_report import write_report

    name = run_study(settings(), images, photos or DEFAULT_PHOTOS, console, _run, tuple(defense or ()))
    with db.transaction(database()) as session:
        written = write_report(session, find_dataset(session, name), report)
    console.print(f"report written: {', '.join(str(p) for p in written)}")


# --- rounds, teams and baselines -----------------------------------------------------

When = Annotated[Optional[datetime], typer.Option(formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
                                                 help="UTC, e.g. 2026-12-01T12:00.")]
Quota = Annotated[Optional[int], typer.Option(min=1, help="Uploads per team and track (default: no limit).")]
RoundName = Annotated[str, typer.Argument(help="Round name.")]


def _round(session: Session, name: str) -> Round:
    return rounds.find(session, name)


def _epsilons(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise rounds.RoundError(f"--eps takes integers separated by commas, got {text!r}") from None


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
    with db.transaction(database()) as session:
        round_ = rounds.create(
            session, settings(), name, find_dataset(session, dataset), epsilons=_epsilons(eps),
            eps_schedule=eps_schedule, seconds_per_image=seconds_per_image, opens_at=as_utc(opens), closes_at=as_utc(closes),
            visibility=Visibility.HIDDEN if hidden else Visibility.LIVE, daily_quota=daily_quota, total_quota=total_quota,
        )
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
    _print_rows(["Round", "Dataset", "ε", "Time limit", "Uploads", "Quotas", "Leaderboards", "Entries"], rows,
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
    rank_baselines: Annotated[Optional[bool], typer.Option(help="Give baselines a rank like teams.")] = None,
    public_data: Annotated[Optional[bool], typer.Option(
        help="Let anyone download the round's images and labels (a development set; never a hidden final set).")] = None,
) -> None:
    """Change a round's window, quotas, leaderboard visibility or whether its data is public."""
    with db.transaction(database()) as session:
        round_ = rounds.update(_round(session, name), opens_at=as_utc(opens), closes_at=as_utc(closes),
                               visibility=visibility, daily_quota=daily_quota, total_quota=total_quota,
                               rank_baselines=rank_baselines, data_public=public_data)
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
    actions.choose(database(), ORGANIZER, name, _submission_id(submission))
    console.print(f"{submission} counts for its team in {name!r}")


@teams_app.command("member")
def teams_member(
    team: Annotated[str, typer.Argument(help="Team name (created if new).")],
    member: Annotated[str, typer.Argument(help="The member's name.")],
    contact: Annotated[Optional[str], typer.Option(help="E-mail or other contact, shown to organizers.")] = None,
) -> None:
    """Add a member to a team."""
    with db.transaction(database()) as session:
        teams.add_member(session, team, member, contact)
    console.print(f"{member} is in team {team!r}")


@teams_app.command("list")
def teams_list() -> None:
    """Teams with their members and submissions."""
    with db.transaction(database()) as session:
        rows = [[team, members, str(count)] for team, members, count in teams.overview(session)]
    _print_rows(["Team", "Members", "Submissions"], rows)


@app.command()
def baseline(
    name: Annotated[str, typer.Argument(help="Submission name.")],
    off: Annotated[bool, typer.Option("--off", help="Make it an ordinary entry again.")] = False,
) -> None:
    """Mark a submission as an organizers' baseline: shown apart and, unless the round ranks them, unranked."""
    actions.mark_baseline(database(), _submission_id(name), not off)
    console.print(f"{name} is {'an ordinary entry' if off else 'a baseline'}")
