"""Scores, matrices and leaderboards, with pandas, from the tallies of the classifications.

The rules are the 2017 competition's (see docs/scoring.md):
- error(d, a, eps, image) = label != TrueLabel; hit = label == TargetClass. A missing or
  invalid answer is an error and never a hit (``judging`` holds the rule, once).
- defense score = correct answers over every adversarial image of every attack (targeted
  ones included); attack score = errors over every defense; targeted-attack score = hits.
- normalized rate = score / number of (image, counterpart, eps) cells that were scored.
Only accepted submissions entered in the dataset's round count: a disqualified one leaves
every table. Leaderboards rank either every entry or, as teams see them, the one entry per
team and track that counts (``competition.entries.Scope``); baselines are shown but, unless
the round says otherwise, not ranked.

Every score is a sum over (attack, defense, epsilon) cells, so ``Standings`` reads the
tallies (``arena.tallies``: a few thousand rows kept in step with the results) and never
the per-image rows; ``load_results`` gives those for exports and drill-down.
"""

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.competition import entries, rounds
from arena.competition.entries import Scope
from arena.models import (
    AdversarialImage,
    AttackJob,
    CellTally,
    Classification,
    CleanTally,
    Dataset,
    Image,
    Submission,
    SubmissionKind,
    Team,
)
from arena.results.judging import ERROR, HIT, MatrixValue

CELL_COLUMNS = ["attack_id", "defense_id", "epsilon", "scored", MatrixValue.ERROR, MatrixValue.HIT]
RESULT_COLUMNS = ["defense_id", "attack_id", "epsilon", "image_id", "image", "label", "true_label", "target_class",
                  MatrixValue.ERROR, MatrixValue.HIT]


def load_results(session: Session, dataset: Dataset, scope: Scope = Scope.ALL) -> pd.DataFrame:
    """One row per defense answer on an adversarial image, with the truth beside it."""
    accepted = entries.in_scope(session, dataset.id, scope)
    query = (
        select(
            Classification.defense_id,
            AttackJob.submission_id.label("attack_id"),
            AttackJob.epsilon,
            Classification.image_id,
            Image.name,
            Classification.label,
            Image.true_label,
            Image.target_class,
            ERROR,
            HIT,
        )
        .join(AdversarialImage, Classification.adversarial_image_id == AdversarialImage.id)
        .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
        .join(Image, Classification.image_id == Image.id)
        .where(
            Image.dataset_id == dataset.id,
            Classification.defense_id.in_(accepted),
            AttackJob.submission_id.in_(accepted),
        )
    )
    frame = pd.DataFrame(session.execute(query).all(), columns=RESULT_COLUMNS)
    return frame.astype({"error": bool, "hit": bool})


def load_cells(session: Session, dataset: Dataset, accepted: list[int]) -> pd.DataFrame:
    """One row per (attack, defense, epsilon) with results: images scored and the sums of
    error, correct and hit, between accepted submissions only."""
    query = select(
        CellTally.attack_id, CellTally.defense_id, CellTally.epsilon, CellTally.scored, CellTally.errors, CellTally.hits
    ).where(CellTally.dataset_id == dataset.id, CellTally.attack_id.in_(accepted), CellTally.defense_id.in_(accepted))
    # Plain tuples through Core: the ORM's rows, handed to pandas as they are, cost 3x more
    # at 40k cells (a 100 x 100 tournament at 4 eps; bench/web.py).
    rows = [tuple(row) for row in session.connection().execute(query)]
    frame = pd.DataFrame.from_records(rows, columns=CELL_COLUMNS).astype("int64")
    frame[MatrixValue.CORRECT] = frame["scored"] - frame[MatrixValue.ERROR]
    return frame


def load_clean(session: Session, dataset: Dataset, accepted: list[int]) -> pd.DataFrame:
    """Each accepted defense's accuracy on the clean images."""
    query = select(CleanTally.defense_id, CleanTally.scored, CleanTally.errors).where(
        CleanTally.dataset_id == dataset.id, CleanTally.defense_id.in_(accepted)
    )
    frame = pd.DataFrame(session.execute(query).all(), columns=["defense_id", "scored", "error"]).set_index("defense_id")
    return ((frame["scored"] - frame["error"]) / frame["scored"]).astype(float).rename("clean_accuracy")


@dataclass
class Names:
    """Submission ids to names, teams and kinds, for readable tables."""

    frame: pd.DataFrame

    @classmethod
    def load(cls, session: Session, ids: list[int]) -> "Names":
        rows = session.execute(
            select(Submission.id, Submission.name, Team.name, Submission.kind, Submission.baseline,
                   Submission.nondeterministic_share)
            .join(Team)
            .where(Submission.id.in_(ids))
            .order_by(Submission.id)
        ).all()
        columns = ["id", "submission", "team", "kind", "baseline", "nondeterministic"]
        frame = pd.DataFrame(rows, columns=columns).set_index("id").astype({"nondeterministic": float})
        frame["kind"] = frame["kind"].map(str)
        frame["baseline"] = frame["baseline"].astype(bool)
        return cls(frame)

    def of_kind(self, *kinds: SubmissionKind) -> pd.DataFrame:
        return self.frame[self.frame["kind"].isin([str(k) for k in kinds])]


def matrix(cells: pd.DataFrame, names: Names, value: MatrixValue, epsilon: int | None = None) -> pd.DataFrame:
    """Attack rows x defense columns of summed ``value``, by name.

    Every accepted attack and defense gets its row and column, zero-filled when it has
    no results yet, so the shape never depends on how far the run has got."""
    if epsilon is not None:
        cells = cells[cells["epsilon"] == epsilon]
    attacks = names.of_kind(SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)
    defenses = names.of_kind(SubmissionKind.DEFENSE)
    table = cells.pivot_table(index="attack_id", columns="defense_id", values=value, aggfunc="sum", fill_value=0)
    table = table.reindex(index=attacks.index, columns=defenses.index, fill_value=0).astype(int)
    table.index = attacks.loc[table.index, "submission"].to_numpy()
    table.columns = defenses.loc[table.columns, "submission"].to_numpy()
    table.index.name, table.columns.name = "attack", "defense"
    return table


def _scores(cells: pd.DataFrame, by: str, value: MatrixValue, epsilons: list[int]) -> pd.DataFrame:
    grouped = cells.groupby(by)[[value, "scored"]].sum()
    table = pd.DataFrame({"score": grouped[value], "scored": grouped["scored"]})
    table["normalized"] = table["score"] / table["scored"]
    for eps in epsilons:
        at_eps = cells[cells["epsilon"] == eps].groupby(by)[[value, "scored"]].sum()
        table[f"eps={eps}"] = at_eps[value] / at_eps["scored"]
    return table


def _leaderboard(table: pd.DataFrame, subjects: pd.DataFrame, rank_baselines: bool) -> pd.DataFrame:
    """Best first, by name among equals. The one ranking rule: equal scores share a rank (1,
    1, 3: one more than the entries scoring higher); an entry with nothing scored yet has no
    rank; baselines keep their place in the order but take no rank unless the round ranks
    them, so a team's rank counts teams only."""
    board = subjects[["submission", "team", "baseline"]].join(table, how="left")
    board[["score", "scored"]] = board[["score", "scored"]].fillna(0).astype(int)
    board["nondeterministic"] = subjects["nondeterministic"]  # the determinism probe's share, a flag above 0
    board = board.sort_values(["score", "submission"], ascending=[False, True])
    ranked = (~board["baseline"] | rank_baselines) & (board["scored"] > 0)
    board.insert(0, "rank", board["score"].where(ranked).rank(method="min", ascending=False).astype("Int64"))
    return board.reset_index(drop=True)


@dataclass
class Standings:
    """Everything the leaderboards and the matrix views show, from the tallies."""

    cells: pd.DataFrame  # CELL_COLUMNS + "correct", accepted submissions only
    clean: pd.Series  # clean accuracy by defense id
    names: Names
    epsilons: list[int]
    rank_baselines: bool = False

    @classmethod
    def compute(cls, session: Session, dataset: Dataset, scope: Scope = Scope.ALL) -> "Standings":
        """The dataset's round, among every entry or only the counting ones; cells at an
        epsilon the round does not use (left from an earlier setting) are not shown."""
        accepted = entries.in_scope(session, dataset.id, scope)
        cells = load_cells(session, dataset, accepted)
        round_ = rounds.of_dataset(session, dataset.id)
        if round_ is not None:
            cells = cells[cells["epsilon"].isin(round_.epsilons)]
        epsilons = sorted(int(e) for e in cells["epsilon"].unique())
        clean = load_clean(session, dataset, accepted)
        return cls(cells, clean, Names.load(session, accepted), epsilons, bool(round_ and round_.rank_baselines))

    @property
    def empty(self) -> bool:
        """No adversarial image has been classified yet."""
        return self.cells.empty

    def matrix(self, value: MatrixValue, epsilon: int | None = None) -> pd.DataFrame:
        return matrix(self.cells, self.names, value, epsilon)

    def error_rate_matrix(self, epsilon: int | None = None) -> pd.DataFrame:
        """Misclassified (%) per cell: errors over answers scored, for pictures and reports."""
        counts = self.matrix(MatrixValue.ERROR, epsilon) + self.matrix(MatrixValue.CORRECT, epsilon)
        return (self.matrix(MatrixValue.ERROR, epsilon) * 100 / counts.where(counts > 0)).fillna(0.0)

    def defense_error_by_epsilon(self) -> dict[str, pd.Series]:
        """Each defense's misclassified (%) over all attacks, by epsilon."""
        names = self.names.frame["submission"]
        sums = self.cells.groupby(["defense_id", "epsilon"])[["error", "scored"]].sum()
        by = (sums["error"] / sums["scored"]).mul(100).rename("error")
        return {names[d]: by.loc[d] for d in by.index.get_level_values(0).unique()}

    def defense_leaderboard(self) -> pd.DataFrame:
        table = _scores(self.cells, "defense_id", MatrixValue.CORRECT, self.epsilons)
        return _leaderboard(table.join(self.clean, how="outer"), self.names.of_kind(SubmissionKind.DEFENSE),
                            self.rank_baselines)

    def attack_leaderboard(self) -> pd.DataFrame:
        attacks = self.cells[self.cells["attack_id"].isin(self.names.of_kind(SubmissionKind.ATTACK).index)]
        table = _scores(attacks, "attack_id", MatrixValue.ERROR, self.epsilons)
        return _leaderboard(table, self.names.of_kind(SubmissionKind.ATTACK), self.rank_baselines)

    def targeted_attack_leaderboard(self) -> pd.DataFrame:
        kinds = self.names.of_kind(SubmissionKind.TARGETED_ATTACK)
        table = _scores(self.cells[self.cells["attack_id"].isin(kinds.index)], "attack_id", MatrixValue.HIT, self.epsilons)
        return _leaderboard(table, kinds, self.rank_baselines)
