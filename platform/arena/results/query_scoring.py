"""The query track's scores, from its per-image results (docs/query-track.md, "Scoring").

One row per (attack, defense, image): the output's L-infinity and L2 distances, the queries
it cost, and the defense's labels for it as returned and clipped to each epsilon. Two rules:

- The 2017 rule at each epsilon: the output clipped into the epsilon ball (as the batch
  tracks clip it) and labelled by the defense; an attack scores its successes (a label
  other than the true one; targeted: the target class), a defense its correct labels. A
  missing label counts as misclassified, as a missing 2017 classification does.
- The AVC rule (NeurIPS 2018): an output the defense labels wrongly (targeted: as the
  target) is adversarial at its L2 distance, any other output a failure at the worst case,
  infinity. An attack scores the median over its (defense, image) cells, lower better; a
  defense the median over images of the smallest adversarial any attack found against it
  on that image, higher better.

Each AVC median of a leaderboard comes with its 95% bootstrap interval over images,
resampled with the weights every other interval uses (``results.intervals``): in each
resample, the weighted median of the cells, each weighted by how often its image was drawn
(the mean of the two middle values where the weights split evenly between them, so that
equal weights give the plain median). Each AVC cell of the matrix (one value per image)
comes with the sign test's interval instead (``intervals.median_rank``): two of its own
values, found by sorting, where a bootstrap per cell of a 100 x 100 matrix would cost a
resampling each.

Pure functions over a DataFrame, so the rules are tested against hand-computed values
(tests/test_query_scoring.py) without a database.
"""

import math
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from arena.models import Image, QueryJob, QueryResult, Round, Submission, SubmissionKind
from arena.results import csv_files
from arena.results.intervals import median_rank, percentile_interval, resampling_weights
from arena.results.plots import heatmap

WORST = math.inf
COLUMNS = ["attack", "attack_kind", "defense", "image", "true_label", "target_class", "queries", "refused",
           "linf", "l2", "missing", "label", "labels_at"]


def results_frame(session: Session, round_: Round) -> pd.DataFrame:
    """The round's query results, one row per (attack, defense, image), names for ids."""
    attack, defense = aliased(Submission), aliased(Submission)
    rows = session.execute(
        select(attack.name, attack.kind, defense.name, Image.name, Image.true_label, Image.target_class,
               QueryResult.queries, QueryResult.refused, QueryResult.linf, QueryResult.l2, QueryResult.missing,
               QueryResult.label, QueryResult.labels_at)
        .join(QueryJob, QueryJob.id == QueryResult.query_job_id)
        .join(attack, attack.id == QueryJob.attack_id).join(defense, defense.id == QueryJob.defense_id)
        .join(Image, Image.id == QueryResult.image_id)
        .where(Image.dataset_id == round_.dataset_id)
        .order_by(attack.name, defense.name, Image.name)
    )
    frame = pd.DataFrame([list(row) for row in rows], columns=COLUMNS)
    frame["attack_kind"] = frame["attack_kind"].map(lambda kind: SubmissionKind(kind).value)
    return frame


def _succeeded(label: int | None, true_label: int, target: int, targeted: bool) -> bool:
    if targeted:
        return label == target
    return label is None or label != true_label


def judged(frame: pd.DataFrame, epsilons: list[int]) -> pd.DataFrame:
    """``frame`` with, per row: ``adversarial`` (the output as returned), ``smallest`` (its L2
    when adversarial, else WORST) and, per epsilon, ``success@E`` and ``correct@E`` of the
    output clipped to E."""
    frame = frame.copy()
    targeted = frame["attack_kind"] == SubmissionKind.QUERY_TARGETED.value

    def succeeded(labels: pd.Series) -> pd.Series:
        return pd.Series([_succeeded(None if pd.isna(label) else int(label), true, target, aimed)
                          for label, true, target, aimed in zip(labels, frame["true_label"], frame["target_class"], targeted)],
                         index=frame.index, dtype=bool)

    frame["adversarial"] = succeeded(frame["label"].astype(object))
    frame["smallest"] = frame["l2"].where(frame["adversarial"], WORST)
    for epsilon in epsilons:
        labels = frame["labels_at"].map(lambda at, e=epsilon: at.get(str(e), at.get(e)))
        frame[f"success@{epsilon}"] = succeeded(labels.astype(object))
        frame[f"correct@{epsilon}"] = labels.astype(object).eq(frame["true_label"]) & labels.notna()
    return frame


def median_interval(values: pd.Series, images: pd.Series, every_image: list[str]) -> tuple[float, float]:
    """The 95% bootstrap interval of the median of ``values``, each belonging to the image
    named beside it, the images of ``every_image`` resampled."""
    column = {name: i for i, name in enumerate(every_image)}
    order = np.argsort(values.to_numpy(dtype=float), kind="stable")
    ordered = values.to_numpy(dtype=float)[order]
    weights = resampling_weights(len(every_image))[:, [column[name] for name in images.to_numpy()[order]]]
    cumulative = np.cumsum(weights, axis=1)
    half = cumulative[:, -1:] / 2
    lower, upper = np.argmax(cumulative >= half, axis=1), np.argmax(cumulative > half, axis=1)
    medians = (ordered[lower] + ordered[upper]) / 2  # the two middle values where they tie, as a plain median
    low, high = percentile_interval(medians[:, None])
    return float(low[0]), float(high[0])


def _with_intervals(scores: pd.DataFrame, groups, value: str, every_image: list[str]) -> pd.DataFrame:
    bounds = {name: median_interval(group[value], group["image"], every_image) for name, group in groups}
    scores.insert(scores.columns.get_loc("avc_median_l2") + 1, "avc_low", pd.Series({k: b[0] for k, b in bounds.items()}))
    scores.insert(scores.columns.get_loc("avc_low") + 1, "avc_high", pd.Series({k: b[1] for k, b in bounds.items()}))
    return scores


def attack_scores(frame: pd.DataFrame, epsilons: list[int], intervals: bool = True) -> pd.DataFrame:
    """Per attack, in rank order: the AVC median L2 (lower better), successes at each epsilon,
    queries used, and (unless ``intervals`` is False, for a ranking alone: the planner's) the
    median's bootstrap interval, most of the cost."""
    cells = judged(frame, epsilons)
    grouped = cells.groupby("attack")
    scores = pd.DataFrame({
        "cells": grouped.size(),
        "avc_median_l2": grouped["smallest"].median(),
        "adversarial": grouped["adversarial"].sum(),
        "median_queries": grouped["queries"].median(),
        "refused": grouped["refused"].sum(),
    })
    for epsilon in epsilons:
        scores[f"successes@{epsilon}"] = grouped[f"success@{epsilon}"].sum()
    if intervals:
        _with_intervals(scores, grouped, "smallest", sorted(cells["image"].unique()))
    return scores.sort_values(["avc_median_l2", "adversarial"], ascending=[True, False])


def defense_scores(frame: pd.DataFrame, epsilons: list[int]) -> pd.DataFrame:
    """Per defense: the AVC median over images of the smallest adversarial found (higher
    better), and correct labels at each epsilon."""
    cells = judged(frame, epsilons)
    smallest_per_image = cells.groupby(["defense", "image"])["smallest"].min()
    grouped = cells.groupby("defense")
    scores = pd.DataFrame({
        "cells": grouped.size(),
        "avc_median_l2": smallest_per_image.groupby("defense").median(),
        "fooled": grouped["adversarial"].sum(),
    })
    for epsilon in epsilons:
        scores[f"correct@{epsilon}"] = grouped[f"correct@{epsilon}"].sum()
    per_image = smallest_per_image.reset_index()
    _with_intervals(scores, per_image.groupby("defense"), "smallest", sorted(cells["image"].unique()))
    return scores.sort_values(["avc_median_l2", "fooled"], ascending=[False, True])


def _finite(value: float) -> float | None:
    """JSON has no infinity: a median at the worst case (more than half failed) is null."""
    return None if value == WORST or pd.isna(value) else round(float(value), 3)


def _board(scores: pd.DataFrame, teams: dict[str, str], epsilons: list[int], count: str, rate: str) -> list[dict]:
    rows = []
    for name, row in scores.iterrows():
        rows.append({
            "submission": name, "team": teams.get(name, ""), "cells": int(row["cells"]),
            "avc_median_l2": _finite(row["avc_median_l2"]), "avc_low": _finite(row["avc_low"]),
            "avc_high": _finite(row["avc_high"]), count: int(row[count]),
            "median_queries": None if "median_queries" not in row else float(row["median_queries"]),
            "at_epsilon": {str(e): round(float(row[f"{rate}@{e}"]) / max(int(row["cells"]), 1), 4) for e in epsilons},
        })
    return rows


def boards(frame: pd.DataFrame, epsilons: list[int], teams: dict[str, str]) -> dict[str, list[dict]]:
    """The two leaderboards as the web shows them, JSON-ready, in rank order (AVC first):
    per query attack its AVC median L2 with its interval (null: the worst case), adversarial
    outputs, median queries and, per epsilon, the 2017 rule's success rate over its cells;
    per served defense its AVC median, outputs that fooled it and its rate of correct labels."""
    if frame.empty:
        return {"attacks": [], "defenses": []}
    return {"attacks": _board(attack_scores(frame, epsilons), teams, epsilons, "adversarial", "successes"),
            "defenses": _board(defense_scores(frame, epsilons), teams, epsilons, "fooled", "correct")}


def cell_table(frame: pd.DataFrame, epsilons: list[int]) -> pd.DataFrame:
    """The export: one row per (attack, defense, image), the labels at each epsilon spread into columns."""
    cells = judged(frame, epsilons)
    for epsilon in epsilons:
        cells[f"label@{epsilon}"] = cells["labels_at"].map(lambda at, e=epsilon: at.get(str(e), at.get(e)))
    return cells.drop(columns=["labels_at"])


class QueryMatrixValue(StrEnum):
    """What a cell of the query track's attack x served-defense matrix shows."""

    SUCCESS = "success"  # the 2017 rule: outputs clipped to an epsilon that fool the defense (targeted: hit)
    AVC = "avc"  # the AVC rule: the median over images of the smallest adversarial's L2


def _pivot(cells: pd.DataFrame, column: str, aggregate: str) -> pd.DataFrame:
    """Attack rows x defense columns of ``column`` aggregated per pair, by name, sorted by
    name; a pair that has no cells is NaN."""
    table = cells.pivot_table(index="attack", columns="defense", values=column, aggfunc=aggregate, dropna=False)
    table = table.reindex(index=sorted(cells["attack"].unique()), columns=sorted(cells["defense"].unique()))
    table.index.name, table.columns.name = "attack", "defense"
    return table


def success_matrix(cells: pd.DataFrame, epsilons: list[int], epsilon: int | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 2017 rule per (attack, defense) of ``judged`` cells: successes and outputs scored,
    at ``epsilon`` or pooled over every epsilon (None), as the batch matrix pools them. A
    pair that never ran has 0 of 0."""
    chosen = epsilons if epsilon is None else [epsilon]
    pooled = cells.assign(successes=cells[[f"success@{e}" for e in chosen]].sum(axis=1), scored=len(chosen))
    counts, scored = _pivot(pooled, "successes", "sum"), _pivot(pooled, "scored", "sum")
    return counts.fillna(0).astype(int), scored.fillna(0).astype(int)


def defense_errors(cells: pd.DataFrame, epsilons: list[int]) -> tuple[pd.DataFrame, pd.Series]:
    """The 2017 rule per served defense of ``judged`` cells, over every query attack (targeted
    ones included): at each epsilon (columns), the outputs clipped to it that the defense
    labelled wrongly, that is any label but the true one, a missing label included (not
    ``correct@E``: a targeted attack's miss of its target still fooled the defense); and the
    outputs scored (the same at every epsilon). The query track's epsilon curves."""
    grouped = (~cells[[f"correct@{e}" for e in epsilons]]).groupby(cells["defense"])
    wrong = grouped.sum().astype(int).set_axis(epsilons, axis=1)
    return wrong, grouped.size()


def avc_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """The AVC rule per (attack, defense) of ``judged`` cells: the median over images of the
    smallest adversarial's L2, WORST when the attack failed on half the images or more (the
    middle value, or one of the two, is a failure); NaN for a pair that never ran."""
    return _pivot(cells, "smallest", "median")


def avc_interval_matrices(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 95% interval of each ``avc_matrix`` cell, as two matrices of the same shape (low,
    high): the j-th smallest and j-th largest of the pair's per-image values, j the sign
    test's rank for their number (``median_rank``); WORST where that value is a failure, and
    0 to WORST where the pair has too few images for any bound."""
    ordered = cells[["attack", "defense", "smallest"]].sort_values(["attack", "defense", "smallest"], kind="stable")
    grouped = ordered.groupby(["attack", "defense"], sort=False)["smallest"]
    size = grouped.transform("size").to_numpy()
    position = grouped.cumcount().to_numpy() + 1
    sizes, each = np.unique(size, return_inverse=True)  # a rank per pair size, not per row
    rank = np.array([median_rank(int(n)) for n in sizes], dtype=int)[each.ravel()]
    bounds = pd.DataFrame({"attack": ordered["attack"].to_numpy(), "defense": ordered["defense"].to_numpy(),
                           "low": np.where(rank == 0, 0.0, np.where(position == rank, ordered["smallest"], np.nan)),
                           "high": np.where(rank == 0, WORST, np.where(position == size + 1 - rank, ordered["smallest"],
                                                                         np.nan))})
    return _pivot(bounds, "low", "min"), _pivot(bounds, "high", "max")


#: The query track's member of a round's results bundle (``results.bundle``).
CELLS_FILE = "query_cells.csv"
#: Its matrices' files: successes per (attack, defense) pooled over every epsilon, then
#: ``_eps{E}`` at each (counts, as the 2017 matrices), and the AVC rule's median L2, with
#: ``_low`` and ``_high`` its interval's bounds (``avc_interval_matrices``).
SUCCESS_FILE, AVC_FILE = "query_success_matrix", "query_avc_matrix"
AVC_LOW_FILE, AVC_HIGH_FILE = f"{AVC_FILE}_low", f"{AVC_FILE}_high"


def export(session: Session, round_: Round, folder: Path) -> list[Path]:
    """The round's query track in ``folder``: its cells (``CELLS_FILE``), its matrices and the
    success-rate heatmap; nothing when it has no query results."""
    frame = results_frame(session, round_)
    if frame.empty:
        return []
    epsilons = list(round_.epsilons)
    cells = cell_table(frame, epsilons)
    written = [_write(cells, folder / CELLS_FILE)]
    counts, scored = success_matrix(cells, epsilons)
    written.append(_write(counts, folder / f"{SUCCESS_FILE}.csv", index=True))
    for epsilon in epsilons:
        written.append(_write(success_matrix(cells, epsilons, epsilon)[0], folder / f"{SUCCESS_FILE}_eps{epsilon}.csv",
                              index=True))
    written.append(_write(avc_matrix(cells), folder / f"{AVC_FILE}.csv", index=True))
    for name, matrix in zip((AVC_LOW_FILE, AVC_HIGH_FILE), avc_interval_matrices(cells)):
        written.append(_write(matrix, folder / f"{name}.csv", index=True))
    rates = (counts * 100 / scored.where(scored > 0)).fillna(0.0)
    written.append(heatmap(rates, folder / f"{SUCCESS_FILE}.png", "Query track: succeeded (%), all eps"))
    return written


def _write(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    csv_files.write(frame, path, index)
    return path
