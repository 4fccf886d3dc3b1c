"""Results as people read them in a terminal.

The leaderboards (``results.leaderboards``) carry every figure beside its interval bounds in
snake_case columns: right for the exports and the API, far too wide for a terminal. Here a
board becomes a table people compare at a glance: the figures they look at first, headers in
words, each figure with its interval in one cell (``1947 ±35``), baselines marked only where
they are one, and a caption that says what each figure counts. ``--wide`` shows every column
with its bounds.

Names are never cut: the name columns keep their full width, and rich fits the figures around
them. Scripts use the CSV and JSON forms (``results.export``), not these tables.
"""

import math
import re
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

#: A cell that holds a figure (a count, a share, a figure and its interval): right-aligned.
FIGURE = re.compile(r"[-+]?\d")
#: Columns that hold names: rich shrinks or wraps the others first, never these.
NAME_COLUMNS = {"Submission", "Team", "Defense", "Attack", "Round", "Dataset", "Field", "Tag"}


@dataclass(frozen=True)
class Track:
    """How one leaderboard's figures are said."""

    title: str
    score: str  # what the score counts
    rate: str  # what each ε column's rate is


TRACKS = {
    "defense": Track("Defenses", "correct answers on adversarial images", "% of adversarial images answered correctly"),
    "attack": Track("Attacks", "misclassifications caused", "% of its adversarial images misclassified"),
    "targeted_attack": Track("Targeted attacks", "adversarial images classified as the target class",
                             "% of its adversarial images classified as the target"),
}


def table(title: str | None = None, caption: str | None = None) -> Table:
    """A table in Arena's terminal style: a rule under the headers, no side borders."""
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0),
                 caption_justify="left", title_justify="left", title_style="bold")


def add_columns(target: Table, headers: list[str], rows: list[list[str | Text]], names: set[str] = NAME_COLUMNS) -> None:
    """Headers, then rows; a column of ``names`` is as wide as its longest name and never
    wraps; figures are right-aligned, words left-aligned."""
    for position, header in enumerate(headers):
        values = [str(row[position]) for row in rows]
        justify = "right" if all(FIGURE.match(v) for v in values if v) else "left"
        if header in names:
            target.add_column(header, no_wrap=True, min_width=max([len(header), *map(len, values)]), justify=justify)
        else:
            target.add_column(header, justify=justify)
    for row in rows:  # as Text: a name like "x[bold]" is shown as typed, never read as markup
        target.add_row(*(value if isinstance(value, Text) else Text(value) for value in row))


def frame_table(frame: pd.DataFrame, title: str, headers: dict[str, str], caption: str | None = None) -> Table:
    """``frame``'s columns named in ``headers`` (in that order), each value as ``cell`` writes it."""
    shown = table(title, caption)
    rows = [[cell(value) for value in row] for row in frame[list(headers)].itertuples(index=False)]
    add_columns(shown, list(headers.values()), rows)
    return shown


def cell(value) -> str:
    """A value as a person reads it: no ``nan``, no ``False``, floats to three places."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _percent(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.1f}"


def _plus_minus(value: float, low: float, high: float, rate: bool) -> str:
    """``value ±h``, h half the interval's width: one cell that reads at a glance (the bounds,
    which need not be symmetric, are in ``--wide`` and the exports)."""
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return _percent(value) if rate else str(int(value))
    half = (high - low) / 2
    return f"{_percent(value)} ±{100 * half:.1f}" if rate else f"{int(value)} ±{math.ceil(half)}"


def _bounds(value: float, low: float, high: float, rate: bool) -> str:
    """``value [low, high]``: the whole interval, for ``--wide``."""
    if pd.isna(value):
        return ""
    show = _percent if rate else (lambda v: str(int(v)))
    return show(value) if pd.isna(low) else f"{show(value)} [{show(low)}, {show(high)}]"


def _epsilons(board: pd.DataFrame) -> list[str]:
    return [c for c in board.columns if c.startswith("eps=") and not c.endswith(("_low", "_high"))]


def _name(row: pd.Series) -> str:
    return f"{row['submission']} *" if row.get("baseline") else str(row["submission"])


def _rank(row: pd.Series) -> str:
    return "" if pd.isna(row["rank"]) else str(int(row["rank"]))


def leaderboard(board: pd.DataFrame, track: str, wide: bool = False) -> Table:
    """One track's leaderboard: rank, submission, team, score, normalized score and each ε;
    ``wide`` adds every other figure with its interval bounds."""
    words = TRACKS[track]
    figure = _bounds if wide else _plus_minus
    epsilons = _epsilons(board)
    headers = ["Rank", "Submission", "Team", "Score", "Normalized", *(f"ε {e.removeprefix('eps=')}" for e in epsilons)]
    rows = []
    for _, row in board.iterrows():
        cells = [_rank(row), _name(row), str(row["team"]),
                 figure(row["score"], row["score_low"], row["score_high"], rate=False),
                 figure(row["normalized"], row["normalized_low"], row["normalized_high"], rate=True)]
        cells += [(figure(row[e], row[f"{e}_low"], row[f"{e}_high"], rate=True) if wide else _percent(row[e]))
                  for e in epsilons]
        rows.append(cells + (_wide_cells(row, track, epsilons) if wide else []))
    if wide:
        headers += _wide_headers(track, epsilons)
    caption = (f"Score: {words.score}, over every ε. Normalized: the score as a % of what it could be. "
               f"ε columns: {words.rate} at that ε. ")
    caption += (escape("[low, high]: the 95% bootstrap interval over images.") if wide else
                "±: half the 95% bootstrap interval over images (bounds: --wide).")
    if board["baseline"].any():
        caption += " *: an organizers' baseline (ranked only where the round ranks baselines)."
    if wide and track != "defense":
        caption += (" Unique counts misclassifications that no other attack caused (for targeted attacks too: "
                    "it is not a count of target hits).")
    shown = table(words.title, caption)
    add_columns(shown, headers, rows)
    return shown


def _wide_headers(track: str, epsilons: list[str]) -> list[str]:
    if track == "defense":
        extra = ["Clean %", "Worst case %", "Worst case over", *(f"Worst case ε {e.removeprefix('eps=')} %" for e in epsilons)]
    else:
        extra = ["Unique misclassifications"]
    return extra + ["Beats next %", "Non-deterministic %"]


def _wide_cells(row: pd.Series, track: str, epsilons: list[str]) -> list[str]:
    if track == "defense":
        cells = [_bounds(row["clean_accuracy"], row["clean_accuracy_low"], row["clean_accuracy_high"], rate=True),
                 _bounds(row["worst_case"], row["worst_case_low"], row["worst_case_high"], rate=True),
                 cell(row["worst_case_scored"] if pd.isna(row["worst_case_scored"]) else int(row["worst_case_scored"]))]
        cells += [_bounds(row[f"worst_case_{e}"], row[f"worst_case_{e}_low"], row[f"worst_case_{e}_high"], rate=True)
                  for e in epsilons if f"worst_case_{e}" in row]
    else:
        cells = [_bounds(row["unique"], row["unique_low"], row["unique_high"], rate=False)]
    return cells + [_percent(row["beats_next"]), _percent(row["nondeterministic"]) if row["nondeterministic"] else ""]


def figures(frame: pd.DataFrame, title: str, caption: str, columns: dict[str, str]) -> Table:
    """Submission and team, then each of ``columns`` (frame column: header). The first is the
    headline figure, with its interval in one cell; the others are shown plain (their bounds
    are in the exports). Whole-number columns are counts, the others shares (shown as %)."""
    counts = {column for column in columns if pd.api.types.is_integer_dtype(frame[column])}
    headline = next(iter(columns))
    rows = []
    for _, row in frame.iterrows():
        cells = [str(row["submission"]), str(row["team"])]
        for column in columns:
            rate = column not in counts
            if column == headline and f"{column}_low" in frame.columns:
                cells.append(_plus_minus(row[column], row[f"{column}_low"], row[f"{column}_high"], rate))
            else:
                cells.append(_percent(row[column]) if rate else cell(row[column]))
        rows.append(cells)
    shown = table(title, caption)
    add_columns(shown, ["Submission", "Team", *columns.values()], rows)
    return shown


def matrix(frame: pd.DataFrame, title: str, console: Console) -> Table:
    """An attack × defense matrix; turned the other way when that is what fits the console."""
    shown = _matrix(frame, title, "Attack")
    if natural_width(console, shown) > console.width and len(frame.columns) > len(frame.index):
        shown = _matrix(frame.T, title.replace("attack x defense", "defense x attack"), "Defense")
    return shown


def _matrix(frame: pd.DataFrame, title: str, rows_are: str) -> Table:
    shown = table(title)
    headers = [rows_are, *map(str, frame.columns)]
    rows = [[str(label), *(cell(v) for v in values)] for label, values in zip(frame.index, frame.to_numpy().tolist())]
    add_columns(shown, headers, rows, names={rows_are})
    for column in shown.columns[1:]:  # the other side's names head the columns: kept whole too
        column.no_wrap, column.min_width = True, len(str(column.header))
    return shown


def print_wide(console: Console, renderable) -> None:
    """Print at the renderable's own width, even past the console's: ``--wide`` is asked for."""
    Console(file=console.file, width=max(console.width, natural_width(console, renderable))).print(renderable)


def natural_width(console: Console, renderable) -> int:
    """The columns ``renderable`` takes when nothing narrows it."""
    return console.measure(renderable, options=console.options.update_width(10_000)).maximum
