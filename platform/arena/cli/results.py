"""``arena leaderboard``, ``robust``, ``matrix``, ``export``: results for people (tables that fit
their terminal) and for scripts (CSV, JSON, the 2017 files)."""

import functools
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from sqlalchemy.orm import Session

from arena import db, tables
from arena.cli.common import DatasetOption, app, console, database, submission_named
from arena.competition.entries import Scope
from arena.data.dataset import find_dataset
from arena.errors import InputError
from arena.models import Submission, SubmissionStatus
from arena.results import csv_files
from arena.results.export import export as export_results
from arena.results.export import leaderboard_file
from arena.results.judging import MatrixValue
from arena.results.leaderboards import Leaderboards
from arena.results.outcomes import ImageOutcomes
from arena.results.robustness import robust_accuracy, unique_contributions
from arena.results.scoring import Standings


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
    submission = submission_named(session, name)
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
    """Write the 2017 result files (matrices, three results CSVs), per-image results as Parquet, and the query
    track's cells and matrices where the round ran it (docs/query-track.md)."""
    with db.transaction(database()) as session:
        written = export_results(session, find_dataset(session, dataset), directory)
    console.print(f"wrote {len(written)} files to {directory}")
