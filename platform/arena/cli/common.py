"""What every command group shares: the ``arena`` app, one way of reporting an expected
failure, the console sized to the terminal, settings, lookups by name, and progress bars."""

import functools
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, track
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import db, tables
from arena.config import Settings, get_settings
from arena.errors import ArenaError, NotFoundError
from arena.execution.run import run as run_missing
from arena.execution.summary import RunSummary
from arena.models import Submission


class Commands(typer.Typer):
    """A command group whose every command reports expected failures the same way, and whose
    help reflows docstrings to the terminal (markdown mode) rather than keeping their line breaks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(rich_markup_mode="markdown", **kwargs)

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


def submission_named(session: Session, name: str) -> Submission:
    submission = session.scalar(select(Submission).where(Submission.name == name))
    if submission is None:
        raise NotFoundError(f"no submission named {name!r}")
    return submission


def submission_id_named(name: str) -> int:
    with db.transaction(database()) as session:
        return submission_named(session, name).id


def tracked(items: Iterable, description: str) -> Iterable:
    return track(items, description=description, console=console, transient=True)


def print_rows(headers: list[str], rows: list[list[str | Text]], whole: set[str] = frozenset()) -> None:
    """A table of ``rows``; names, and the columns in ``whole``, are never wrapped."""
    shown = tables.table()
    tables.add_columns(shown, headers, rows, names=tables.NAME_COLUMNS | whole)
    console.print(shown)


def run_with_progress(dataset: str | None, wait: bool = True) -> RunSummary:
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


@contextmanager
def steps_with_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """A bar per step of a long command (a backup's database, images, code...), made when the
    step first reports: the callback takes the step, how far it got and of how much."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        yield update


class InTheForeground:
    """The command line's runner for the actions: the jobs run here, with progress bars
    (``before`` says what ``first`` did, once it is done)."""

    has_engine = True  # the command line runs where an engine is: a worker host, the embedded one

    def __init__(self, before: Callable[[], None] | None = None) -> None:
        self.before = before
        self.summary: RunSummary | None = None

    def start(self, dataset_name: str | None, first: Callable[[], None] | None = None) -> bool:
        if first is not None:
            first()
        if self.before is not None:
            self.before()
        self.summary = run_with_progress(dataset_name)
        return True
