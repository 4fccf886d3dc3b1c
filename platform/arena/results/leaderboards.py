"""The leaderboards as every view shows them: the 2017 scores with their intervals, the worst
case and the unique contributions, and the chance that each rank beats the next.

The point figures are ``scoring.Standings``' (from the tallies); what needs images one by
one (intervals, worst case, unique contributions) comes from ``outcomes.ImageOutcomes``,
resampled by ``intervals``. The CLI, the API, the web pages, the exports and the study
report all take their rows from here, so they cannot disagree.

Columns beside each figure F: ``F_low`` and ``F_high``, its 95% bootstrap interval over
images; ``beats_next``: the share of resamples in which this row's score beats the next
row's (ties counted half), empty on the last row.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from arena.models import Dataset
from arena.results.intervals import Figure, Resampling, beats, resampling_weights
from arena.results.outcomes import ImageOutcomes
from arena.results.robustness import robust_accuracy, unique_contributions
from arena.results.scoring import Standings


@dataclass
class Leaderboards:
    defense: pd.DataFrame
    attack: pd.DataFrame
    targeted_attack: pd.DataFrame
    robust_accuracy: pd.DataFrame  # every defense's worst case, overall and per epsilon (robust_accuracy.csv)
    unique_contributions: pd.DataFrame  # every attack's, targeted ones included, overall and per epsilon

    @classmethod
    def load(cls, session: Session, dataset: Dataset, standings: Standings) -> "Leaderboards":
        return cls.compute(standings, ImageOutcomes.load(session, dataset, standings.names))

    @classmethod
    def compute(cls, standings: Standings, outcomes: ImageOutcomes) -> "Leaderboards":
        epsilons = standings.epsilons
        robust = robust_accuracy(outcomes, standings.names, epsilons)
        unique = unique_contributions(outcomes, standings.names, epsilons)
        figures = _resampled(outcomes, epsilons)
        ids = standings.names.frame.reset_index().set_index("submission")["id"]
        defense = _with_intervals(standings.defense_leaderboard(), ids, figures, "defense", outcomes.defense_rows,
                                  ["score", "normalized", *[f"eps={e}" for e in epsilons], "clean_accuracy"])
        worst = ["worst_case", "worst_case_low", "worst_case_high", "worst_case_scored"]
        worst += [f"worst_case_eps={e}{part}" for e in epsilons for part in ("", "_low", "_high")]
        defense = _joined(defense, ids, robust[worst])
        boards = {"defense": defense}
        for track, board in (("attack", standings.attack_leaderboard()),
                             ("targeted_attack", standings.targeted_attack_leaderboard())):
            board = _with_intervals(board, ids, figures, track, outcomes.attack_rows,
                                    ["score", "normalized", *[f"eps={e}" for e in epsilons]])
            boards[track] = _joined(board, ids, unique[["unique", "unique_low", "unique_high"]])
        for track, board in boards.items():
            board["beats_next"] = _beats_next(board, ids, figures[f"{track} score"],
                                              outcomes.defense_rows if track == "defense" else outcomes.attack_rows)
        return cls(**boards, robust_accuracy=robust, unique_contributions=unique)

    def track(self, name: str) -> pd.DataFrame:
        """The board of a track: "defense", "attack" or "targeted_attack"."""
        return getattr(self, name)

    def error_bands(self) -> dict[str, pd.DataFrame]:
        """Each defense's misclassified (%) by epsilon, with its interval: the epsilon curves'
        bands. The rate is 100 minus the defense's correct rate at that epsilon."""
        bands = {}
        for row in self.defense.to_dict("records"):
            by_epsilon = {int(key.removeprefix("eps=")): (100 * (1 - row[key]), 100 * (1 - row[f"{key}_high"]),
                                                          100 * (1 - row[f"{key}_low"]))
                          for key in row if key.startswith("eps=") and "_" not in key and not pd.isna(row[key])}
            if by_epsilon:
                bands[row["submission"]] = pd.DataFrame.from_dict(by_epsilon, orient="index",
                                                                  columns=["rate", "low", "high"]).sort_index()
        return bands


def _resampled(outcomes: ImageOutcomes, epsilons: list[int]) -> dict[str, Figure]:
    """Every interval of the three boards, from one resampling of the images."""
    resampling = Resampling(resampling_weights(len(outcomes.images)))
    at = {eps: outcomes.epsilons.index(eps) for eps in epsilons if eps in outcomes.epsilons}

    def views(array: np.ndarray) -> dict:
        """Over every epsilon, then at each: the same objects for every figure that uses them,
        so that the resampling does each once."""
        return {None: array.sum(axis=1), **{eps: array[:, position] for eps, position in at.items()}}

    answered, attack_answered = views(outcomes.answered), views(outcomes.attack_answered)
    sides = {"defense": (views(outcomes.answered - outcomes.errors), answered),
             "attack": (views(outcomes.attack_errors), attack_answered),
             "targeted_attack": (views(outcomes.attack_hits), attack_answered)}
    for track, (measure, scored) in sides.items():
        resampling.count(f"{track} score", measure[None])
        resampling.rate(f"{track} normalized", measure[None], scored[None])
        for eps in at:
            resampling.rate(f"{track} eps={eps}", measure[eps], scored[eps])
    resampling.rate("defense clean_accuracy", outcomes.clean_correct, outcomes.clean_answered)
    return resampling.run()


def _with_intervals(board: pd.DataFrame, ids: pd.Series, figures: dict[str, Figure], track: str, rows,
                    columns: list[str]) -> pd.DataFrame:
    """The board with ``C_low`` and ``C_high`` right after each of ``columns``."""
    positions = rows(ids.loc[board["submission"]].to_numpy())
    board = board.copy()
    for column in columns:
        figure = figures.get(f"{track} {column}")
        low, high = (figure.low[positions], figure.high[positions]) if figure is not None else (np.nan, np.nan)
        where = board.columns.get_loc(column) + 1
        board.insert(where, f"{column}_low", low)
        board.insert(where + 1, f"{column}_high", high)
    return board


def _joined(board: pd.DataFrame, ids: pd.Series, table: pd.DataFrame) -> pd.DataFrame:
    extra = table.reindex(ids.loc[board["submission"]].to_numpy())
    return pd.concat([board, extra.reset_index(drop=True)], axis=1)


def _beats_next(board: pd.DataFrame, ids: pd.Series, score: Figure, rows) -> list[float]:
    replicates = score.replicates[:, rows(ids.loc[board["submission"]].to_numpy())]
    return [beats(replicates[:, i], replicates[:, i + 1]) for i in range(len(board) - 1)] + [np.nan] * min(1, len(board))
