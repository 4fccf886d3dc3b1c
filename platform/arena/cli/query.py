"""``arena query``: the query track (docs/query-track.md): set a round's budget and pairs,
run its query jobs, print its scores, export its per-cell table."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from arena import db
from arena.cli.common import Commands, console, database, print_rows
from arena.competition import rounds
from arena.errors import InputError
from arena.execution import query_jobs
from arena.results import csv_files
from arena.results.query_scoring import attack_scores, cell_table, defense_scores, results_frame

query_app = Commands(help="The query track: attacks that query served defenses through Arena, under a budget.",
                     no_args_is_help=True)
RoundOption = Annotated[Optional[str], typer.Option("--round", help="Round name (default: the one open now).")]


@query_app.command("set")
def query_set(
    name: Annotated[str, typer.Argument(help="Round name.")],
    budget: Annotated[Optional[int], typer.Option(help="Queries an attack may make per image and defense.")] = None,
    top_k: Annotated[Optional[int], typer.Option(
        help="Each query attack against the top K served defenses of the batch track, each served defense against "
             "the top K query attacks; 0 for all pairs.")] = None,
    images: Annotated[Optional[int], typer.Option(help="Run on the first batches holding this many images; 0 for all.")]
    = None,
) -> None:
    """Set a round's query-track rules: its budget (1,000 by default, as in the 2018 Adversarial
    Vision Challenge), which pairs run and on how many images. Jobs already run are kept."""
    for option, value in (("--budget", budget), ("--top-k", top_k), ("--images", images)):
        if value is not None and value < (1 if option == "--budget" else 0):
            raise InputError(f"{option} must be at least {1 if option == '--budget' else 0}, not {value}")
    with db.transaction(database()) as session:
        round_ = rounds.find(session, name)
        if budget is not None:
            round_.query_budget = budget
        if top_k is not None:
            round_.query_top_k = top_k or None
        if images is not None:
            round_.query_images = images or None
        shown = (f"round {name!r}: {round_.query_budget} queries per image, "
                 f"{f'top {round_.query_top_k} pairs' if round_.query_top_k else 'all pairs'}, "
                 f"{f'the first {round_.query_images} images' if round_.query_images else 'all images'}")
    console.print(shown)


@query_app.command("run")
def query_run(round_name: RoundOption = None) -> None:
    """Plan the round's missing query jobs (every query attack x every served defense x every
    batch) and run them here, one after another."""
    ran = query_jobs.run_pending(database(), round_name)
    console.print(f"{ran} query job(s) run")


def _frame(round_name: str | None) -> tuple[pd.DataFrame, list[int]]:
    with db.transaction(database()) as session:
        round_ = rounds.find(session, round_name)
        return results_frame(session, round_), list(round_.epsilons)


def _l2(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.1f}"


def _avc(row) -> str:
    return f"{_l2(row.avc_median_l2)} [{_l2(row.avc_low)}, {_l2(row.avc_high)}]"


def _per_epsilon(scores: pd.DataFrame, column: str, epsilons: list[int]) -> list[str]:
    return [" ".join(str(int(row[f"{column}@{e}"])) for e in epsilons) for _, row in scores.iterrows()]


@query_app.command("scores")
def query_scores(round_name: RoundOption = None) -> None:
    """The query track's attack and defense scores: the AVC rule (median L2 with its 95%
    interval, a failure the worst case) and the 2017 rule at each epsilon."""
    frame, epsilons = _frame(round_name)
    if frame.empty:
        console.print("no query results yet: `arena query run`")
        return
    at = "/".join(map(str, epsilons))
    attacks, defenses = attack_scores(frame, epsilons), defense_scores(frame, epsilons)
    console.print("Query attacks (AVC: lower is stronger)", style="bold")
    print_rows(["submission", "AVC median L2 [95%]", "adversarial", "median queries", "refused", f"successes at eps {at}"],
               [[name, _avc(row), str(int(row.adversarial)), f"{row.median_queries:g}", str(int(row.refused)), successes]
                for (name, row), successes in zip(attacks.iterrows(), _per_epsilon(attacks, "successes", epsilons))])
    console.print("Served defenses (AVC: higher is more robust)", style="bold")
    print_rows(["submission", "AVC median L2 [95%]", "fooled", f"correct at eps {at}"],
               [[name, _avc(row), str(int(row.fooled)), correct]
                for (name, row), correct in zip(defenses.iterrows(), _per_epsilon(defenses, "correct", epsilons))])


@query_app.command("export")
def query_export(target: Annotated[Optional[Path], typer.Argument(help="CSV file to write (default: stdout).")] = None,
                 round_name: RoundOption = None) -> None:
    """One CSV row per (attack, defense, image): distances, queries, labels as returned and at each epsilon."""
    frame, epsilons = _frame(round_name)
    table = cell_table(frame, epsilons)
    if target is None:
        sys.stdout.write(csv_files.write(table))
        return
    csv_files.write(table, target)
    console.print(f"wrote {len(table)} row(s) to {target}")
