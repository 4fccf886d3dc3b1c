"""Scores, matrices and leaderboards from the per-image classifications, with pandas.

The rules are the 2017 competition's (see docs/scoring.md):
- error(d, a, eps, image) = label != TrueLabel; hit = label == TargetClass. A missing or
  invalid answer is an error and never a hit.
- defense score = correct answers over every adversarial image of every attack (targeted
  ones included); attack score = errors over every defense; targeted-attack score = hits.
- normalised rate = score / number of (image, counterpart, eps) cells that were scored.
Only accepted submissions count: a disqualified one leaves every table.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.models import (
    AdversarialImage,
    AttackJob,
    Classification,
    Dataset,
    Image,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)

RESULT_COLUMNS = ["defense_id", "attack_id", "epsilon", "image_id", "image", "label", "true_label", "target_class"]


def _accepted_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Submission.id).where(Submission.status == SubmissionStatus.ACCEPTED)))


def load_results(session: Session, dataset: Dataset) -> pd.DataFrame:
    """One row per defense answer on an adversarial image, with the truth beside it."""
    accepted = _accepted_ids(session)
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
    return _judge(frame)


def load_clean_results(session: Session, dataset: Dataset) -> pd.DataFrame:
    query = (
        select(Classification.defense_id, Classification.image_id, Classification.label, Image.true_label)
        .join(Image, Classification.image_id == Image.id)
        .where(
            Image.dataset_id == dataset.id,
            Classification.adversarial_image_id.is_(None),
            Classification.defense_id.in_(_accepted_ids(session)),
        )
    )
    frame = pd.DataFrame(session.execute(query).all(), columns=["defense_id", "image_id", "label", "true_label"])
    frame["correct"] = frame["label"].eq(frame["true_label"])
    return frame


def _judge(frame: pd.DataFrame) -> pd.DataFrame:
    label = frame["label"].astype("Int64")
    frame["error"] = ~label.eq(frame["true_label"]).fillna(False).astype(bool)
    frame["hit"] = label.eq(frame["target_class"]).fillna(False).astype(bool)
    return frame


@dataclass
class Names:
    """Submission ids to names, teams and kinds, for readable tables."""

    frame: pd.DataFrame

    @classmethod
    def load(cls, session: Session) -> "Names":
        rows = session.execute(
            select(Submission.id, Submission.name, Team.name, Submission.kind)
            .join(Team)
            .where(Submission.status == SubmissionStatus.ACCEPTED)
            .order_by(Submission.id)
        ).all()
        frame = pd.DataFrame(rows, columns=["id", "submission", "team", "kind"]).set_index("id")
        frame["kind"] = frame["kind"].map(str)
        return cls(frame)

    def of_kind(self, *kinds: SubmissionKind) -> pd.DataFrame:
        return self.frame[self.frame["kind"].isin([str(k) for k in kinds])]


def matrix(results: pd.DataFrame, names: Names, value: str, epsilon: int | None = None) -> pd.DataFrame:
    """Attack rows x defense columns of summed ``value`` ("error", "correct" or "hit"), by name.

    Every accepted attack and defense gets its row and column, zero-filled when it has
    no results yet, so the shape never depends on how far the run has got."""
    if epsilon is not None:
        results = results[results["epsilon"] == epsilon]
    attacks = names.of_kind(SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)
    defenses = names.of_kind(SubmissionKind.DEFENSE)
    values = results.assign(correct=~results["error"]) if value == "correct" else results
    table = values.pivot_table(index="attack_id", columns="defense_id", values=value, aggfunc="sum", fill_value=0)
    table = table.reindex(index=attacks.index, columns=defenses.index, fill_value=0).astype(int)
    table.index = attacks.loc[table.index, "submission"].to_numpy()
    table.columns = defenses.loc[table.columns, "submission"].to_numpy()
    table.index.name, table.columns.name = "attack", "defense"
    return table


def _scores(frame: pd.DataFrame, by: str, value: str, epsilons: list[int]) -> pd.DataFrame:
    grouped = frame.groupby(by)[value]
    table = pd.DataFrame({"score": grouped.sum(), "scored": grouped.size()})
    table["normalized"] = table["score"] / table["scored"]
    for eps in epsilons:
        at_eps = frame[frame["epsilon"] == eps].groupby(by)[value]
        table[f"eps={eps}"] = at_eps.sum() / at_eps.size()
    return table


def _leaderboard(table: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    board = subjects[["submission", "team"]].join(table, how="left")
    board[["score", "scored"]] = board[["score", "scored"]].fillna(0).astype(int)
    board = board.sort_values(["score", "submission"], ascending=[False, True])
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board.reset_index(drop=True)


@dataclass
class Standings:
    """Everything the leaderboards, the matrix views and the exports show."""

    results: pd.DataFrame
    clean: pd.DataFrame
    names: Names
    epsilons: list[int]

    @classmethod
    def compute(cls, session: Session, dataset: Dataset) -> "Standings":
        results = load_results(session, dataset)
        epsilons = sorted(int(e) for e in results["epsilon"].unique())
        return cls(results, load_clean_results(session, dataset), Names.load(session), epsilons)

    def matrix(self, value: str, epsilon: int | None = None) -> pd.DataFrame:
        return matrix(self.results, self.names, value, epsilon)

    def error_rate_matrix(self, epsilon: int | None = None) -> pd.DataFrame:
        """Misclassified (%) per cell: errors over answers scored, for pictures and reports."""
        counts = self.matrix("error", epsilon) + self.matrix("correct", epsilon)
        return (self.matrix("error", epsilon) * 100 / counts.where(counts > 0)).fillna(0.0)

    def defense_error_by_epsilon(self) -> dict[str, pd.Series]:
        """Each defense's misclassified (%) over all attacks, by epsilon."""
        names = self.names.frame["submission"]
        by = self.results.groupby(["defense_id", "epsilon"])["error"].mean().mul(100)
        return {names[d]: by.loc[d] for d in by.index.get_level_values(0).unique()}

    def defense_leaderboard(self) -> pd.DataFrame:
        correct = self.results.assign(correct=~self.results["error"])
        table = _scores(correct, "defense_id", "correct", self.epsilons)
        clean = self.clean.groupby("defense_id")["correct"].mean().rename("clean_accuracy")
        return _leaderboard(table.join(clean, how="outer"), self.names.of_kind(SubmissionKind.DEFENSE))

    def attack_leaderboard(self) -> pd.DataFrame:
        attacks = self.results[self.results["attack_id"].isin(self.names.of_kind(SubmissionKind.ATTACK).index)]
        table = _scores(attacks, "attack_id", "error", self.epsilons)
        return _leaderboard(table, self.names.of_kind(SubmissionKind.ATTACK))

    def targeted_attack_leaderboard(self) -> pd.DataFrame:
        kinds = self.names.of_kind(SubmissionKind.TARGETED_ATTACK)
        table = _scores(self.results[self.results["attack_id"].isin(kinds.index)], "attack_id", "hit", self.epsilons)
        return _leaderboard(table, kinds)
